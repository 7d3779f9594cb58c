"""The denoising score-matching loss, written in terms of D (Karras et al. 2022, eq. 2 and 8)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..analytic import EmpiricalDenoiser
from ..data import ImageData
from ..process import _per_sample, loss_weight

#: Largest training set (images x values per image) for empirical targets: the distances from a
#: batch to every training image cost about batch x this many multiply-adds per step.
MAX_REFERENCE_VALUES = 64_000_000

#: The usual weighting for each parametrisation: it makes the loss the plain MSE of the
#: network's own output (eps-MSE, x0-MSE, v-MSE, EDM's F-MSE).
DEFAULT_WEIGHTING = {"eps": "simple", "x0": "snr", "v": "snr+1", "edm": "edm"}


def denoising_loss(
    denoiser,
    x0: Tensor,
    sigma: Tensor,
    noise: Tensor,
    *,
    weighting: str,
    cond=None,
    reference=None,
) -> Tensor:
    """Per-sample loss ``lambda(sigma) * mean_pixels (D(x0 + sigma n, sigma) - target)^2``,
    where the target is ``x0``, or ``reference(x0 + sigma n, sigma, cond)`` when given.

    Args:
        denoiser: ``D(x, sigma, cond)``.
        x0: clean images ``N x C x H x W`` in [-1, 1]; sigma: ``(N,)`` noise levels;
        noise: standard normal noise like ``x0``.
        weighting: a name from :data:`diffvision.process.LOSS_WEIGHTS`.
        reference: optional ``R(x, sigma, cond)`` whose output is the target. Any target with
            ``E[target | x] = E[x0 | x]`` gives the same expected gradient (the loss differs by a
            constant in expectation); the posterior mean itself (the training set's, from
            :func:`empirical_reference`) has the least variance. Run without autocast.
    Returns:
        ``(N,)`` float32 losses.
    """
    x = x0 + _per_sample(sigma, x0) * noise
    denoised = denoiser(x, sigma, cond)
    weight = loss_weight(sigma.float(), weighting, sigma_data=getattr(denoiser, "sigma_data", 0.5))
    target = x0
    if reference is not None:
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            target = reference(x, sigma, cond)
    return weight * (denoised.float() - target.float()).pow(2).flatten(1).mean(1)


def empirical_reference(
    data: ImageData, *, hflip: bool, null_cond: int | None, device="cpu"
) -> EmpiricalDenoiser:
    """The exact denoiser of the training distribution: every image of ``data`` (and its mirror
    image when training flips them), with labels when ``null_cond`` is given.

    Used as the training target (``TrainConfig.target = "empirical"``): the network's expected
    gradient is the same as with ``x0`` as the target, because the loss minimised is the same
    up to a constant (Rao-Blackwell; Xu et al. 2023, "Stable target field", eq. 4 with the
    whole data set as reference batch), while the target's variance at mid and high noise, where
    many images are plausible, drops to zero."""
    if len(data) * data.channels * data.size**2 * (2 if hflip else 1) > MAX_REFERENCE_VALUES:
        raise ValueError(
            f"empirical targets need the whole data set in each step; {len(data)} images of "
            f"{data.channels}x{data.size}x{data.size} is too many (use target 'sample')"
        )
    images, labels = data.batch(torch.arange(len(data)))
    images, labels = images.to(device), labels.to(device)
    if hflip:
        images, labels = torch.cat([images, images.flip(-1)]), torch.cat([labels, labels])
    return EmpiricalDenoiser(images, labels if null_cond is not None else None, null_cond)
