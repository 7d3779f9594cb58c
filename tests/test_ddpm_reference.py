"""`ddpm` and `ddim` in sigma space against direct implementations of the papers' update
equations in x_t space (Ho et al. 2020, Algorithm 2 / eq. 11; Song et al. 2021, DDIM eq. 12), on
the discrete linear schedule with an exact eps-model. Same generator, same draws: the results
must agree to 1e-5 (float64 arithmetic; observed differences are ~1e-12)."""

import math

import pytest
import torch

from diffvision import Denoiser, sigma_steps
from diffvision.process import DiscreteVP
from diffvision.samplers import ddim, ddpm, ddpm_timesteps

SCHEDULE = DiscreteVP.linear()
ABAR = SCHEDULE.alphas_cumprod


def exact_eps_fn(gauss):
    """eps(x_t, t) of an exact Gaussian model, checking that t arrives as an integer timestep."""

    def eps_fn(x_t, t):
        assert float((t - t.round()).abs().max()) < 1e-6, "timesteps must map to integers"
        abar = ABAR[t.round().long()][:, None]
        sigma = ((1 - abar) / abar).sqrt()[:, 0]
        x0 = gauss(x_t / abar.sqrt(), sigma)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    return eps_fn


def ho_ddpm(eps_fn, x_T, timesteps, generator, variance):
    """Ho et al. 2020 Algorithm 2 with eq. 11, for a (possibly strided) timestep sequence:
    beta_t = 1 - abar_t / abar_prev, abar_prev = 1 after the last timestep."""
    x = x_T
    ts = timesteps.tolist()
    for i, t in enumerate(ts):
        abar_t = ABAR[t]
        abar_prev = ABAR[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - abar_t / abar_prev
        eps = eps_fn(x, torch.full((len(x),), float(t), dtype=torch.float64))
        mean = (x - beta / (1 - abar_t).sqrt() * eps) / (1 - beta).sqrt()
        if i + 1 < len(ts):
            var = beta if variance == "large" else (1 - abar_prev) / (1 - abar_t) * beta
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = mean + var.sqrt() * z
        else:
            x = mean
    return x


def song_ddim(eps_fn, x_T, timesteps, generator, eta):
    """DDIM eq. 12: x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - s_t^2) eps + s_t z."""
    x = x_T
    ts = timesteps.tolist()
    for i, t in enumerate(ts):
        abar_t = ABAR[t]
        abar_prev = ABAR[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        eps = eps_fn(x, torch.full((len(x),), float(t), dtype=torch.float64))
        x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
        s_t = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
        x = abar_prev.sqrt() * x0 + (1 - abar_prev - s_t**2).clamp(min=0).sqrt() * eps
        if float(s_t) > 0:
            x = x + s_t * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


def start(seed, n=32, d=16):
    g = torch.Generator().manual_seed(seed)
    return g, torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    ("steps", "spacing"), [(1000, "leading"), (50, "leading"), (20, "trailing")]
)
@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_matches_ho_et_al(gaussian16, steps, spacing, variance):
    eps_fn = exact_eps_fn(gaussian16)
    ts = ddpm_timesteps(steps, 1000, spacing)
    g_ref, x_T = start(steps)
    ref = ho_ddpm(eps_fn, x_T, ts, g_ref, variance)

    g, x_T = start(steps)
    sigmas = sigma_steps("ddpm", steps, schedule=SCHEDULE, spacing=spacing)
    x = x_T * math.sqrt(1 + float(sigmas[0]) ** 2)  # x = x_T / sqrt(abar_T)
    out = ddpm(Denoiser.from_eps_fn(eps_fn, SCHEDULE), x, sigmas, generator=g, variance=variance)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(
    ("steps", "spacing"), [(50, "leading"), (10, "trailing"), (25, "linspace")]
)
def test_ddim_matches_song_et_al(gaussian16, eta, steps, spacing):
    eps_fn = exact_eps_fn(gaussian16)
    ts = ddpm_timesteps(steps, 1000, spacing)
    g_ref, x_T = start(steps)
    ref = song_ddim(eps_fn, x_T, ts, g_ref, eta)

    g, x_T = start(steps)
    sigmas = sigma_steps("ddpm", steps, schedule=SCHEDULE, spacing=spacing)
    x = x_T * math.sqrt(1 + float(sigmas[0]) ** 2)
    out = ddim(Denoiser.from_eps_fn(eps_fn, SCHEDULE), x, sigmas, generator=g, eta=eta)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
