"""The noise level of an image, estimated from the image alone.

Donoho & Johnstone (1994), "Ideal spatial adaptation by wavelet shrinkage", Sec. 4.2: the
finest diagonal wavelet coefficients of a noisy image are mostly noise, so the median of their
absolute values over 0.6745 (the median of |z| for a standard normal z) estimates the noise's
standard deviation; the median ignores the few large coefficients that edges and texture make.
Here the wavelet is Haar's, whose finest coefficients of each 2 x 2 block ``[[a, b], [c, d]]``
are ``(a - b - c + d) / 2`` (diagonal), ``(a - b + c - d) / 2`` (across), ``(a + b - c - d) / 2``
(down) and ``(a + b + c + d) / 2`` (twice the block's mean): an orthonormal transform, so white
noise of std sigma gives each of them noise of std sigma, independent of the others, and the
diagonal one is exactly 0 on an image that is affine in x and y. Blocks with a clipped pixel
(black or white) are left out: its noise is cut off.

Texture as fine as the noise is taken for noise: at sigma 2-5 the median of a photo's diagonal
coefficients was 19-85% above the noise's. So the median is then taken again over the blocks of
weak texture alone (after Liu, Tanaka & Okutomi 2013, "Single-image noise level estimation for
blind denoising", who select patches whose gradients' energy a flat patch's noise would reach),
and of a level at least 2 sigma from black and white, whose noise clipping has not cut short:
a block counts where the across and down coefficients of the 5 x 5 blocks around it (over the
channels) hold no more energy than noise of the estimate's sigma does in 99% of cases (a
sigma^2 chi-square quantile of twice their count of degrees of freedom, by Wilson & Hilferty's
approximation), until the estimate settles. Since a white noise's diagonal coefficients are
independent of its other ones, choosing blocks by those leaves the diagonal noise as it was:
the estimate is still of its sigma, now from the flat parts of the image. Where fewer than 64
coefficients are so chosen, it is taken from all of them, as before.

On quantized data (8-bit: every coefficient a multiple of half a level) many coefficients share
the median's value, and the plain median, and with it the estimate, moves in steps of 0.74
levels (0.5 / 0.6745): 2.22 for noise of sigma 2, say. The median is then taken of the data as
grouped (:func:`grouped_median`): each value the middle of a bin one grid step wide, the median
placed within its bin by the count that falls short of half, as if the bin were filled
evenly. The estimate then follows the noise's level smoothly, with rounding's own noise (1/12
of a level squared per pixel, and so per coefficient) in it, since a saved image carries that
too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The median of |z| for a standard normal z: Phi^-1(3/4).
MEDIAN_ABS_NORMAL = 0.6744897501960817
#: The weak-texture blocks: the window of blocks whose across and down coefficients are counted
#: (blocks a side, odd: centred), the standard normal quantile of the chi-square bound's
#: probability (0.99), the distance from black and white in sigmas, the fewest diagonal
#: coefficients the estimate is taken from, and the most rounds until it settles.
WINDOW, Z_99, MARGIN, LEAST, ROUNDS = 5, 2.3263478740408408, 2.0, 64, 10


def estimate_sigma(images: Tensor, observed: Tensor | None = None) -> Tensor:
    """The std of white Gaussian noise in ``images`` (``N x C x H x W`` in [-1, 1], at least
    2 x 2 px), in the same units (the model's sigma: times 127.5 for the 0-255 scale): one
    estimate per image, shape ``(N,)``, pooling its channels, from its blocks of weak texture
    (see the module's note). ``observed``: an inpainting mask (``H x W`` or ``N x 1 x H x W``,
    1 where observed, as ``Inpaint`` takes it): only blocks whose four pixels are observed
    count. Blocks with a pixel at exactly -1 or 1, where clipping leaves black and white, are
    left out too (all kept for an image of nothing else). It errs high where texture as fine
    as the noise fills all of the image, and low where the noise is not white (already
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
    a, b, c, d = _blocks(images[..., :h, :w].double())
    diagonal = ((a - b - c + d) / 2).abs()
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
        whole = (_blocks(mask[..., :h, :w]) == 1).all(0).expand_as(diagonal)
        if not whole.flatten(1).any(1).all():
            raise ValueError("no 2 x 2 block of an image is observed whole: its noise cannot be "
                             "estimated")  # fmt: skip
    unclipped = (torch.stack([a, b, c, d]).abs() != 1).all(0) & whole
    # each block's window: the across and down coefficients' energy, and how many it pools
    energy = (((a - b + c - d) ** 2 + (a + b - c - d) ** 2) / 4 * unclipped).sum(1, keepdim=True)
    counted = unclipped.sum(1, keepdim=True).double()
    energy, counted = (
        F.avg_pool2d(t, WINDOW, 1, WINDOW // 2, divisor_override=1) for t in (energy, counted)
    )  # window sums
    level = (a + b + c + d) / 4  # the block's mean
    sigmas = []
    for i in range(n):
        kept = unclipped[i] if unclipped[i].any() else whole[i]
        sigma = grouped_median(diagonal[i][kept]) / MEDIAN_ABS_NORMAL
        if unclipped[i].any():
            sigma = _weak_texture(sigma, diagonal[i], unclipped[i], energy[i], counted[i], level[i])
        sigmas.append(sigma)
    return torch.stack(sigmas)


def _weak_texture(
    sigma: Tensor, diagonal: Tensor, kept: Tensor, energy: Tensor, counted: Tensor, level: Tensor
) -> Tensor:
    """The noise's sigma from the diagonal coefficients (``C x h x w``, absolute) of the blocks
    ``kept`` whose window holds no more across and down ``energy`` (``1 x h x w``, pooling
    ``counted`` coefficients of each kind) than noise of ``sigma`` holds in 99% of cases and
    whose ``level`` (block mean) is at least MARGIN sigma from -1 and 1, starting from
    ``sigma`` and taken again at each estimate until it settles; ``sigma`` as it is where it is
    0 (no noise) or fewer than LEAST coefficients are so chosen."""
    dof = 2 * counted.clamp(min=1)  # across and down: two degrees of freedom per coefficient
    # Wilson & Hilferty (1931): chi2_k's quantile ~ k (1 - 2/(9k) + z sqrt(2/(9k)))^3
    bound = dof * (1 - 2 / (9 * dof) + Z_99 * (2 / (9 * dof)).sqrt()) ** 3
    for _ in range(ROUNDS):
        if sigma == 0:
            break
        weak = (energy <= sigma**2 * bound) & (counted > 0)
        chosen = kept & weak & (level.abs() <= 1 - MARGIN * sigma)
        if int(chosen.sum()) < LEAST:
            break
        settled, sigma = sigma, grouped_median(diagonal[chosen]) / MEDIAN_ABS_NORMAL
        if abs(float(sigma / settled) - 1) < 1e-3:
            break
    return sigma


def grouped_median(values: Tensor, tied: float = 1e-6) -> Tensor:
    """The median of ``values`` (1-D, >= 0, not empty) as of grouped data, where values are
    tied at it: with ``m`` the (lower) median, ``q`` the step from the largest value below it,
    ``below`` the count of values under ``m`` and ``at`` the count equal to it, the median of
    values spread evenly over the bin ``[m - q/2, m + q/2]``::

        m - q/2 + q * (n/2 - below) / at

    which lies in that bin. Values within ``tied`` of ``m`` count as equal to it (the grid's
    values carry float rounding: a float32 image's 8-bit levels, about 1e-7 in [-1, 1] units,
    where 16-bit data's grid is 1.5e-5). Where no other value equals the median (continuous
    data) or no value is below it, the median itself; where it is within ``tied`` of 0, 0 (an
    image of no noise on the grid is as likely as one of a little: 0 says no noise)."""
    m = values.median()
    if m <= tied:  # 0, but for float rounding (a grid's zeros made of its values)
        return torch.zeros_like(m)
    at = int(((values - m).abs() <= tied).sum())
    lower = values[values < m - tied]
    if at < 2 or lower.numel() == 0:
        return m
    q = m - lower.max()
    return m - q / 2 + q * (len(values) / 2 - lower.numel()) / at


def _blocks(x: Tensor) -> Tensor:
    """The four pixels of each 2 x 2 block of ``x`` (``... x H x W``, H and W even), stacked:
    top left, top right, bottom left, bottom right."""
    return torch.stack(
        [x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]]
    )
