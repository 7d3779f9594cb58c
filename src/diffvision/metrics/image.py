"""Full-reference image metrics: PSNR and SSIM.

Images are ``N x C x H x W`` tensors. ``data_range`` is the span of the value range: 2.0 for
images in [-1, 1] (the library's convention, the default) and 255.0 for images in [0, 255].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..process import check_int, check_positive


def _pair(x: Tensor, y: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    check_positive(data_range=data_range)  # 0 made NaN scores
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"need two N x C x H x W tensors of one shape, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    return x.to(torch.float64), y.to(torch.float64)


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)`` in dB; shape
    ``(N,)`` (inf for identical images)."""
    x, y = _pair(x, y, data_range)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 2.0,
    *,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13): Gaussian window of size 11
    and sigma 1.5, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``, averaged over
    the valid (unpadded) window positions and the channels; shape ``(N,)``."""
    x, y = _pair(x, y, data_range)
    check_int("window", window, 1)
    check_positive(sigma=sigma, k1=k1, k2=k2)
    c = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images must be at least {window}x{window} for SSIM")
    g = _gaussian_window(window, sigma)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return s.flatten(1).mean(1)
