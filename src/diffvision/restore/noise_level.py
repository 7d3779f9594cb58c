"""The noise level of an image, estimated from the image alone.

Donoho & Johnstone (1994), "Ideal spatial adaptation by wavelet shrinkage", Sec. 4.2: the
finest diagonal wavelet coefficients of a noisy image are mostly noise, so the median of their
absolute values over 0.6745 (the median of |z| for a standard normal z) estimates the noise's
standard deviation; the median ignores the few large coefficients that edges and texture make.
Here the wavelet is Haar's, whose finest diagonal coefficient of each 2 x 2 block is
``(a - b - c + d) / 2``: orthonormal, so white noise of std sigma gives coefficients of std
sigma, and exactly 0 on an image that is affine in x and y. Blocks with a clipped pixel (black
or white) are left out: its noise is cut off.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The median of |z| for a standard normal z: Phi^-1(3/4).
MEDIAN_ABS_NORMAL = 0.6744897501960817


def estimate_sigma(images: Tensor, observed: Tensor | None = None) -> Tensor:
    """The std of white Gaussian noise in ``images`` (``N x C x H x W`` in [-1, 1], at least
    2 x 2 px), in the same units (the model's sigma: times 127.5 for the 0-255 scale): one
    estimate per image, shape ``(N,)``, pooling its channels. ``observed``: an inpainting mask
    (``H x W`` or ``N x 1 x H x W``, 1 where observed, as ``Inpaint`` takes it): only blocks
    whose four pixels are observed count. Blocks with a pixel at exactly -1 or 1, where
    clipping leaves black and white, are left out too (all kept for an image of nothing
    else). It errs high where fine texture fills much of the image, and low where much of it is
    near black or white (noise cut short by clipping) or the noise is not white (already
    smoothed, or JPEG-compressed). Measured on photographs: ``bench/results/noise_level.md``.
    Raises ValueError where an image has no block observed whole."""
    if not (isinstance(images, Tensor) and images.ndim == 4 and min(images.shape[-2:]) >= 2):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"images must be an N x C x H x W tensor of at least 2 x 2 px, not {shape}"
        )
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or infinite values")
    n, h, w = len(images), images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
    blocks = _blocks(images[..., :h, :w].double())
    diagonal = ((blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2).abs().flatten(1)
    whole = torch.ones_like(diagonal, dtype=torch.bool)
    if observed is not None:
        mask = torch.as_tensor(observed).to(images.device)
        mask = mask[None, None] if mask.ndim == 2 else mask
        if (
            mask.ndim != 4
            or mask.shape[1] != 1
            or mask.shape[-2:] != images.shape[-2:]
            or (len(mask) not in (1, n))
        ):
            raise ValueError(f"observed must be H x W or N x 1 x H x W for images of "
                             f"{tuple(images.shape)}, not {tuple(mask.shape)}")  # fmt: skip
        seen = (_blocks(mask[..., :h, :w]) == 1).all(0).expand(n, *images.shape[1:2], -1, -1)
        whole = seen.flatten(1)
        if not whole.any(1).all():
            raise ValueError("no 2 x 2 block of an image is observed whole: its noise cannot be "
                             "estimated")  # fmt: skip
    unclipped = (blocks.abs() != 1).all(0).flatten(1) & whole
    sigmas = [
        (row[kept] if kept.any() else row[counted]).median()
        for row, kept, counted in zip(diagonal, unclipped, whole, strict=True)
    ]
    return torch.stack(sigmas) / MEDIAN_ABS_NORMAL


def _blocks(x: Tensor) -> Tensor:
    """The four pixels of each 2 x 2 block of ``x`` (``... x H x W``, H and W even), stacked:
    top left, top right, bottom left, bottom right."""
    return torch.stack(
        [x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]]
    )
