"""The denoising score-matching loss, written in terms of D (Karras et al. 2022, eq. 2 and 8)."""

from __future__ import annotations

from torch import Tensor

from ..process import _per_sample, loss_weight

#: The usual weighting for each parametrisation: it makes the loss the plain MSE of the
#: network's own output (eps-MSE, x0-MSE, v-MSE, EDM's F-MSE).
DEFAULT_WEIGHTING = {"eps": "simple", "x0": "snr", "v": "snr+1", "edm": "edm"}


def denoising_loss(
    denoiser, x0: Tensor, sigma: Tensor, noise: Tensor, *, weighting: str, cond=None
) -> Tensor:
    """Per-sample loss ``lambda(sigma) * mean_pixels (D(x0 + sigma n, sigma) - x0)^2``.

    Args:
        denoiser: ``D(x, sigma, cond)``.
        x0: clean images ``N x C x H x W`` in [-1, 1]; sigma: ``(N,)`` noise levels;
        noise: standard normal noise like ``x0``.
        weighting: a name from :data:`diffvision.process.LOSS_WEIGHTS`.
    Returns:
        ``(N,)`` float32 losses.
    """
    x = x0 + _per_sample(sigma, x0) * noise
    denoised = denoiser(x, sigma, cond)
    weight = loss_weight(sigma.float(), weighting, sigma_data=getattr(denoiser, "sigma_data", 0.5))
    return weight * (denoised.float() - x0.float()).pow(2).flatten(1).mean(1)
