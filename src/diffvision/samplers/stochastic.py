"""Stochastic samplers: ancestral (DDPM, DDIM with eta > 0), reverse-time SDE and
predictor-corrector. All work in sigma space (``x = x0 + sigma * noise``); for a VP model this is
exact, not an approximation: ``x = x_t / sqrt(abar)`` (see :mod:`diffvision.process`).

Each step ending at sigma = 0 returns the denoised estimate without adding noise (Ho et al. 2020,
Algorithm 2, ``z = 0`` at the last step; Song et al. 2021, final "denoising" step).
"""

from __future__ import annotations

import itertools
import math

from torch import Tensor

from ..process import check_int, check_nonnegative, check_positive
from .base import Callback, DenoiserFn, NoiseFilter, as_floats, denoise, randn_like, report

__all__ = ["ancestral_step", "ddim", "ddpm", "euler_maruyama", "pc"]


def _posterior(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """Deterministic and random parts of the DDIM step, in sigma space.

    DDIM (Song, Meng & Ermon 2021, eq. 12) with noise ``sigma_t(eta)`` translates to
    ``x_next = D + sigma_down * (x - D)/s + sigma_up * z`` with
    ``sigma_up = eta * s_next * sqrt(s^2 - s_next^2) / s`` and
    ``sigma_down = sqrt(s_next^2 - sigma_up^2)``. eta = 1 is the DDPM posterior
    ``q(x_next | x, x0 = D)``."""
    sigma_up = min(s_next, eta * s_next * math.sqrt(max(s**2 - s_next**2, 0.0)) / s)
    sigma_down = math.sqrt(max(s_next**2 - sigma_up**2, 0.0))
    return sigma_down, sigma_up


def ancestral_step(
    s: float, s_next: float, *, eta: float = 1.0, variance: str = "small"
) -> tuple[float, float]:
    """``(keep, std)`` of one ancestral step from ``s`` to ``s_next``:
    ``x_next = D + keep * (x - D) + std * z``.

    ``variance="small"``: the DDIM step with ``eta`` (eta = 1: the DDPM posterior, whose
    ``keep`` is ``(s_next / s)^2``); ``"large"``: DDPM's beta variance in sigma space,
    ``(s^2 - s_next^2)(1 + s_next^2) / (1 + s^2)`` (a VP notion), with the same ``keep``. A step
    to ``s_next = 0`` returns the estimate: ``(0, 0)``."""
    if variance not in ("small", "large"):
        raise ValueError("variance must be 'small' or 'large'")
    if s_next == 0:
        return 0.0, 0.0
    if variance == "large":
        return (s_next / s) ** 2, math.sqrt((s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2))
    sigma_down, sigma_up = _posterior(s, s_next, eta)
    return sigma_down / s, sigma_up


def _add_noise(x, std, s, s_next, generator, noise_filter):
    if std <= 0:
        return x
    z = randn_like(x, generator)
    return x + std * (noise_filter(z, s, s_next) if noise_filter is not None else z)


def ddim(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    eta: float = 0.0,
    noise_filter: NoiseFilter | None = None,
) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021). ``eta = 0``: deterministic (identical to :func:`euler`);
    ``eta = 1``: the DDPM posterior with the "small" variance. NFE = number of steps.
    ``noise_filter``: see :func:`ddpm`."""
    check_nonnegative(eta=eta)  # NaN was taken as all fresh noise
    sig = as_floats(sigmas)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        keep, std = ancestral_step(s, s_next, eta=eta)
        x = denoised + keep * (x - denoised)
        x = _add_noise(x, std, s, s_next, generator, noise_filter)
        report(callback, i, s, s_next, x, denoised)
    return x


def ddpm(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    variance: str = "small",
    noise_filter: NoiseFilter | None = None,
) -> Tensor:
    """Ancestral sampling of DDPM's Markov chain (Ho et al. 2020, Algorithm 2, eq. 11).

    Between consecutive levels the step is the Gaussian posterior ``q(x_next | x, x0 = D)`` with
    ``beta = 1 - abar_t / abar_next``; its mean in sigma space is
    ``D + (s_next/s)^2 (x - D)``. ``variance``: ``small`` (posterior variance beta-tilde, in
    sigma space ``s_next^2 (s^2 - s_next^2) / s^2``) or ``large`` (beta, in sigma space
    ``(s^2 - s_next^2)(1 + s_next^2)/(1 + s^2)``; a VP notion); see :func:`ancestral_step`.
    NFE = number of steps.

    ``noise_filter(z, s, s_next)``: maps each step's standard-normal draw ``z`` to the noise
    added (times the step's std); by default ``z`` itself. DDNM+ uses it to leave room for the
    measurement noise that its denoiser passes on (:func:`diffvision.restore.solvers.ddnm`).
    """
    sig = as_floats(sigmas)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        keep, std = ancestral_step(s, s_next, variance=variance)
        denoised = denoise(denoiser, x, s)
        x = denoised + keep * (x - denoised)
        x = _add_noise(x, std, s, s_next, generator, noise_filter)
        report(callback, i, s, s_next, x, denoised)
    return x


def euler_maruyama(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021, eq. 6) of ``x = x0 + sigma n``
    (the VE SDE ``dx = sqrt(d[sigma^2]/dt) dw``; a VP SDE maps onto it by the scaling):
    ``x_next = x + (s^2 - s_next^2) * score + sqrt(s^2 - s_next^2) z`` with
    ``score = (D - x)/s^2``. NFE = number of steps."""
    sig = as_floats(sigmas)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        x, denoised = _reverse_sde_step(denoiser, x, s, s_next, generator)
        report(callback, i, s, s_next, x, denoised)
    return x


def _reverse_sde_step(denoiser, x, s, s_next, generator):
    denoised = denoise(denoiser, x, s)
    dvar = s**2 - s_next**2
    x = x + (dvar / s**2) * (denoised - x)
    if s_next > 0:
        x = x + math.sqrt(dvar) * randn_like(x, generator)
    return x, denoised


def pc(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    snr: float = 0.16,
    corrector_steps: int = 1,
) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2-3): at each noise level
    ``corrector_steps`` Langevin MCMC steps targeting p(x; sigma) with step size
    ``eps = 2 (snr ||z|| / ||score||)^2`` (the norms averaged over the batch, as in the
    paper's reference code: a per-sample step explodes where the score vanishes, e.g. at a mode
    centre in low dimension), then one Euler-Maruyama reverse-SDE step to the next level.
    ``snr`` is the "signal-to-noise ratio" r of Algorithm 4 (0.16 for VE CIFAR-10 in the paper).
    NFE = (1 + corrector_steps) * steps."""
    check_int("corrector_steps", corrector_steps, 0)
    check_positive(snr=snr)
    sig = as_floats(sigmas)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        for _ in range(corrector_steps):
            score = (denoise(denoiser, x, s) - x) / s**2
            z = randn_like(x, generator)
            z_norm = float(z.flatten(1).norm(dim=1).mean())
            score_norm = max(float(score.flatten(1).norm(dim=1).mean()), 1e-30)
            step = 2 * (snr * z_norm / score_norm) ** 2
            x = x + step * score + math.sqrt(2 * step) * z
        x, denoised = _reverse_sde_step(denoiser, x, s, s_next, generator)
        report(callback, i, s, s_next, x, denoised)
    return x
