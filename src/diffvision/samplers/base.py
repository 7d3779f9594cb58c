"""What every sampler shares: the calling convention, noise draws and per-step callbacks.

A sampler is a plain function::

    sampler(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> x

- ``denoiser(x, sigma) -> x0 estimate`` with ``x`` shaped ``N x ...`` and ``sigma`` a tensor of
  shape ``(N,)``;
- ``x``: the starting point at noise level ``sigmas[0]``, in sigma space
  (``x = x0 + sigma * noise``), any shape ``N x ...`` (images or vectors);
- ``sigmas``: strictly decreasing, finite noise levels (a 1-D tensor or sequence, usually from
  :func:`~diffvision.samplers.steps.sigma_steps`); the sampler integrates from ``sigmas[0]`` to
  ``sigmas[-1]``, which is 0 for a full sampling run;
- ``generator``: the only source of randomness (``torch.Generator``), for stochastic samplers;
- ``callback``: called after each step with a dict ``{i, sigma, sigma_next, x, denoised}``.

It returns ``x`` at ``sigmas[-1]``, same shape and dtype as the input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..denoiser import ClassMixture, class_count, image_channels, takes_cond

Callback = Callable[[dict], None]
DenoiserFn = Callable[[Tensor, Tensor], Tensor]
#: ``noise_filter(z, s, s_next)``: an ancestral step's standard-normal draw, reshaped.
NoiseFilter = Callable[[Tensor, float, float], Tensor]


def as_floats(sigmas: Tensor | Sequence[float]) -> list[float]:
    """Noise levels as Python floats (float64), checked to be finite, non-negative and strictly
    decreasing (so only the last may be 0): a step between equal levels is no step, and
    multistep samplers divide by its length."""
    values = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]
    if len(values) < 2:
        raise ValueError("a sampler needs at least two noise levels")
    for i, s in enumerate(values):
        if not math.isfinite(s):
            raise ValueError(f"noise levels must be finite numbers: level {i} is {s}")
    if values[-1] < 0:
        raise ValueError(f"noise levels must be non-negative: the last is {values[-1]}")
    for i, (a, b) in enumerate(itertools.pairwise(values)):
        if b >= a:
            raise ValueError(f"noise levels must be decreasing: level {i} is {a}, then {b}")
    return values


def denoise(denoiser: DenoiserFn, x: Tensor, sigma: float) -> Tensor:
    """Call the denoiser at one noise level for the whole batch."""
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))


def check_generator(generator) -> None:
    """Raise ValueError unless ``generator`` is a ``torch.Generator`` or None (a seed passed in
    its place was an AttributeError from the first draw, or, where nothing was drawn, no
    error at all)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, not {generator!r}")


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (on its own device)."""
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return noise.to(x.device)


def report(callback: Callback | None, i: int, sigma: float, sigma_next: float, x, denoised):
    if callback is not None:
        callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})


def check_shape(denoiser, shape: tuple[int, ...]) -> None:
    """Raise ValueError where ``shape`` cannot be that of samples of ``denoiser``: not ``N x ...``
    of positive integers, or, for a model of images (one that states its channels:
    :func:`~diffvision.denoiser.image_channels`), not ``N x C x H x W`` with its ``C``."""
    shape = tuple(shape)
    if len(shape) < 2 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"shape must be N x ... in positive integers, not {shape}")
    made = image_channels(denoiser)
    if made is not None and (len(shape) != 4 or shape[1] != made):
        raise ValueError(f"the model makes N x {made} x H x W images: not {shape}")


def check_cond(denoiser, cond, n: int, device: torch.device | str | None = None):
    """``cond`` for ``n`` samples of ``denoiser``, checked before any work (ValueError; a class
    given as an int was an AttributeError, labels of another length a RuntimeError, float
    labels were truncated). For a model that states its classes (:func:`class_count`): class
    labels, an int or an integer tensor of shape ``()`` or ``(n,)``, each in 0..K (K, the null
    class; 0..K-1 for a model that learnt none), returned as ``n`` labels on ``device``; a
    dict's ``"labels"`` likewise; an unconditional model takes none. For other denoisers
    ``cond`` is passed as it is."""
    if cond is not None and not takes_cond(denoiser):  # was a TypeError from inside the loop
        raise ValueError(
            f"this denoiser ({type(denoiser).__name__}) takes no condition (cond): it is called "
            "as D(x, sigma)"
            + (" (a ClassMixture mixes every class: give its model the class)"
               if isinstance(denoiser, ClassMixture) else "")
        )  # fmt: skip
    classes = class_count(denoiser)
    if cond is None or classes is None:
        return cond
    if isinstance(cond, dict):  # labels and/or a condition image: its labels checked
        if "labels" in cond:
            cond = {**cond, "labels": check_cond(denoiser, cond["labels"], n, device)}
        return cond
    if classes == 0:
        raise ValueError("the model is unconditional: it takes no class labels (cond)")
    if isinstance(cond, int) and not isinstance(cond, bool):
        cond = torch.tensor(cond)
    if not isinstance(cond, Tensor):
        raise ValueError(f"class labels (cond) are an int or an integer tensor, not {cond!r}")
    if cond.dtype.is_floating_point or cond.dtype.is_complex or cond.dtype == torch.bool:
        raise ValueError(
            f"class labels (cond) are an int or an integer tensor, not a {cond.dtype} tensor"
        )
    if cond.shape not in ((), (n,)):
        raise ValueError(f"class labels (cond) for {n} samples have shape () or ({n},), not "
                         f"{tuple(cond.shape)}")  # fmt: skip
    low, high = int(cond.min()), int(cond.max())
    model = getattr(denoiser, "denoiser", denoiser)  # inside a wrapper (ClassMixture, tiles)
    null = getattr(model, "null_cond", classes) is not None  # None: it learnt no null class
    if low < 0 or high > classes - (not null):
        span = f"0..{classes} ({classes}: none)" if null else f"0..{classes - 1} (no null class)"
        raise ValueError(f"class labels (cond) lie in {span}, not {low if low < 0 else high}")
    return cond.expand(n).to(device=device, dtype=torch.long)
