"""Will a training step fit in memory? Checked before the first step, so that a batch or an image
size far too large is refused with a message, not ended by the kernel's out-of-memory kill minutes
later (seen: ``--batch 100000`` on digits, killed after 90 s of swapping, no word said)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .. import memory as shared
from ..memory import batch_bytes, saved_bytes

#: Image sizes up to this are measured as they are; larger ones are extrapolated (see
#: :func:`kept_bytes`), since a forward pass at, say, 1000 x 1000 takes minutes on the CPU.
MEASURED_UP_TO = 64


def _quadratic_through(xs: list[float], ys: list[float], x: float) -> float:
    """The value at ``x`` of the polynomial of degree 2 through the three points (Lagrange)."""
    total = 0.0
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        term = yi
        for j, xj in enumerate(xs):
            if j != i:
                term *= (x - xj) / (xi - xj)
        total += term
    return total


def kept_bytes(
    loss_on: Callable[[int, int], Tensor],
    model: nn.Module,
    size: int,
    factor: int,
    measured_up_to: int = MEASURED_UP_TO,
) -> tuple[float, float]:
    """The bytes that a training step keeps for its backward pass at image size ``size``: for
    one image, and for each further image (``loss_on(n, s)``: the loss on ``n`` images of
    ``s x s`` pixels). Both are linear in the batch, so measured on 1 and 2 images. Sizes above
    ``measured_up_to`` are extrapolated from three sizes ``16 k``, k = 1, 2, 3 (multiples of the
    network's downsampling ``factor``), by the polynomial of degree 2 in the pixel count through
    them. For the U-Nets here the kept bytes are affine in the pixels (measured: PyTorch's fused
    attention keeps no attention matrix), which the polynomial reproduces exactly at sizes that
    ``factor`` divides (tested); its square term covers an attention that keeps its matrix."""

    def at(s: int) -> tuple[float, float]:
        return batch_bytes(lambda n: loss_on(n, s), lambda fn: saved_bytes(fn, exclude=model))

    if size <= measured_up_to:
        return at(size)
    sizes = [k * max(16, factor) for k in (1, 2, 3)]
    measured = [at(s) for s in sizes]
    pixels = [s * s for s in sizes]
    return tuple(_quadratic_through(pixels, [m[i] for m in measured], size * size) for i in (0, 1))


def step_bytes(
    loss_on: Callable[[int, int], Tensor], model: nn.Module, micro: int, size: int, factor: int
) -> tuple[float, float]:
    """The bytes that training steps of ``micro`` images of ``size`` pixels allocate beyond what
    exists when the check runs (the weights, their EMA copy, the data): the activations kept
    for the backward pass (:func:`kept_bytes`) and AdamW's two moments, which the first step
    allocates and keep. All are alive together at the end of the second step's forward pass,
    so this is a lower bound of the steps' peak (gradients and the forward's temporaries come
    on top; tested against CUDA's peak). Returned with the kept bytes per image."""
    one, each = kept_bytes(loss_on, model, size, factor)
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters())
    return one + (micro - 1) * each + moments, each


def check_step_fits(
    loss_on: Callable[[int, int], Tensor],
    model: nn.Module,
    micro: int,
    size: int,
    factor: int,
    device: torch.device,
) -> None:
    """Raise ValueError when one training step surely does not fit: its new allocations
    (:func:`step_bytes`, a lower bound) exceed the memory available, shared by the processes of
    this machine on the CPU (``LOCAL_WORLD_SIZE``). So a refused step would not have fit."""
    if shared.available_bytes(device) is None:  # unknown: nothing to measure against
        return
    need, each = step_bytes(loss_on, model, micro, size, factor)
    if device.type == "cpu":
        need *= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    shared.check_fits(
        need,
        device,
        f"a training step at {micro} images of {size} x {size} per process",
        "lower --batch, add --accumulation, or lower --size",
        f"{each / 2**20:.1f} MiB of activations per image",
    )
