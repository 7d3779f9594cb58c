"""Whole photos with a small model: restore overlapping tiles in batches and blend them with
smooth weights, so a model trained on 32 x 32 patches restores images of any size."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .operators import Inpaint, Operator
from .solvers import Restoration, solve


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering ``length`` pixels with at least ``overlap`` shared pixels."""
    if tile > length:
        raise ValueError(f"tile ({tile} px) larger than the image side ({length} px)")
    if not 0 <= overlap < tile:
        raise ValueError("overlap must be in [0, tile)")
    count = max(1, math.ceil((length - overlap) / (tile - overlap)))
    if count == 1:
        return [0]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_window(tile: int, overlap: int) -> Tensor:
    """``tile x tile`` weights: 1 in the middle, a raised-cosine ramp over the ``overlap`` border
    (never 0, so image borders covered by one tile keep their value)."""
    ramp = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        t = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
        edge = torch.sin(0.5 * math.pi * t) ** 2
        ramp[:overlap] = edge
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp[:, None] * ramp[None, :]


def _batched(operator: Operator, parts: list[tuple[Operator, Tensor]]) -> tuple[Operator, Tensor]:
    ops, ys = zip(*parts, strict=True)
    y = torch.cat(ys)
    if isinstance(operator, Inpaint):
        masks = [op.mask.expand(len(t), -1, -1, -1) for op, t in parts]
        return Inpaint(torch.cat(masks), operator.sigma), y
    return ops[0], y


def solve_tiled(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    tile: int = 32,
    overlap: int = 8,
    batch: int = 256,
    shape: tuple[int, int] | None = None,
    **options,
) -> Tensor | Restoration:
    """:func:`~diffvision.restore.solve` on overlapping ``tile`` x ``tile`` tiles of the output
    image (``shape`` = its H, W; default that of ``operator.pinv(y)``), ``batch`` tiles per call,
    blended with :func:`blend_window`. Same return type as ``solve``. Operators must be local
    (denoise, inpaint, super-resolution, colorize); deblurring runs per tile with circular
    boundaries, which the blending only partly hides."""
    n = len(y)
    if shape is None:
        shape = tuple(operator.pinv(y[:1]).shape[-2:])
    h, w = shape
    positions = [
        (t, l) for t in tile_starts(h, tile, overlap) for l in tile_starts(w, tile, overlap)
    ]
    weight = blend_window(tile, overlap).to(y)
    out_mean = out_std = None
    total = torch.zeros(1, 1, h, w, dtype=y.dtype, device=y.device)
    for lo in range(0, len(positions), max(1, batch // n)):
        chunk = positions[lo : lo + max(1, batch // n)]
        op, ys = _batched(operator, [operator.tile(y, t, l, tile) for t, l in chunk])
        result = solve(denoiser, op, ys, **options)
        mean, std = (result.mean, result.std) if isinstance(result, Restoration) else (result, None)
        if out_mean is None:
            out_mean = torch.zeros(n, mean.shape[1], h, w, dtype=y.dtype, device=y.device)
            out_std = torch.zeros_like(out_mean) if std is not None else None
        for k, (t, l) in enumerate(chunk):
            part = slice(k * n, (k + 1) * n)
            out_mean[..., t : t + tile, l : l + tile] += weight * mean[part]
            if std is not None:
                out_std[..., t : t + tile, l : l + tile] += weight * std[part]
            total[..., t : t + tile, l : l + tile] += weight
    out_mean = out_mean / total
    if out_std is None:
        return out_mean
    return Restoration(out_mean, out_std / total, out_mean[None])
