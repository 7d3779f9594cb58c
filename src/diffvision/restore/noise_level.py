"""The noise level of an image, estimated from the image alone.

Donoho & Johnstone (1994), "Ideal spatial adaptation by wavelet shrinkage", Sec. 4.2: the
finest diagonal wavelet coefficients of a noisy image are mostly noise, so the median of their
absolute values over 0.6745 (the median of |z| for a standard normal z) estimates the noise's
standard deviation; the median ignores the few large coefficients that edges and texture make.
Here the wavelet is Haar's, whose finest diagonal coefficient of each 2 x 2 block is
``(a - b - c + d) / 2``: orthonormal, so white noise of std sigma gives coefficients of std
sigma, and exactly 0 on an image that is affine in x and y. Blocks with a pixel at the end of
the range [-1, 1] are left out: a clipped pixel's noise is cut off.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The median of |z| for a standard normal z: Phi^-1(3/4).
MEDIAN_ABS_NORMAL = 0.6744897501960817


def estimate_sigma(images: Tensor) -> Tensor:
    """The std of white Gaussian noise in ``images`` (``N x C x H x W``, at least 2 x 2 px), in
    their own units (for images in [-1, 1], the model's sigma: times 127.5 for the 0-255
    scale): one estimate per image, shape ``(N,)``, pooling its channels. It errs high where
    fine texture fills much of the image, and low where much of it is near the range's ends
    (noise cut off by clipping) or the noise is not white (already smoothed, or
    JPEG-compressed). Measured on photographs: ``bench/results/noise_level.md``."""
    if not (isinstance(images, Tensor) and images.ndim == 4 and min(images.shape[-2:]) >= 2):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"images must be an N x C x H x W tensor of at least 2 x 2 px, not {shape}"
        )
    h, w = images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
    x = images[..., :h, :w].double()
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    diagonal = ((a - b - c + d) / 2).abs().flatten(1)
    # A pixel at the range's end was clipped, its noise cut off: its blocks are left out (all
    # kept for an image of nothing else)
    unclipped = (torch.stack([a, b, c, d]).abs() < 1).all(0).flatten(1)
    sigmas = [
        (row[kept] if kept.any() else row).median()
        for row, kept in zip(diagonal, unclipped, strict=True)
    ]
    return torch.stack(sigmas) / MEDIAN_ABS_NORMAL
