"""Stochastic samplers reproduce a 2-D Gaussian mixture within stated standard errors.

For each sampler we draw N = 20000 samples and compute z-scores of: the three mode weights
(component of largest responsibility at sigma -> 0; binomial SE sqrt(w(1-w)/N)), the two means
(SE std/sqrt(N)) and the three covariance entries (SE = std of the centred products / sqrt(N)).
Exact samples give |z| > 4.5 on one of these 8 statistics with probability < 8 * 6.8e-6 ~ 5e-5,
so the threshold 4.5 is a family-wise false-alarm rate, not a tuned number. Step counts are set
so the discretisation bias is below that resolution; the negative controls show the test does
catch a biased sampler (too few steps, too large a Langevin step).
"""

import itertools
import math
import re

import pytest
import torch

from diffvision.samplers import get, sigma_steps

N = 20000
Z_MAX = 4.5


def z_scores(mix, y):
    w = mix.weights
    labels = mix.responsibilities(y, 1e-3).argmax(1)
    freq = torch.bincount(labels, minlength=len(w)).double() / N
    z_w = (freq - w) / (w * (1 - w) / N).sqrt()
    means = torch.stack([c.mean for c in mix.components])
    m = (w[:, None] * means).sum(0)
    cov = sum(
        wk * (c.covariance() + torch.outer(c.mean, c.mean))
        for wk, c in zip(w, mix.components, strict=True)
    ) - torch.outer(m, m)
    mu = y.mean(0)
    z_m = (mu - m) / (y.var(0) / N).sqrt()
    yc = y - mu
    prods = torch.stack([yc[:, 0] ** 2, yc[:, 1] ** 2, yc[:, 0] * yc[:, 1]], 1)
    target = torch.stack([cov[0, 0], cov[1, 1], cov[0, 1]])
    z_c = (prods.mean(0) - target) / (prods.std(0) / math.sqrt(N))
    return torch.cat([z_w, z_m, z_c]).abs()


def run(mix, sampler, steps, seed=0, **options):
    g = torch.Generator().manual_seed(seed)
    x, _ = mix.sample(N, g, sigma=80.0)
    return get(sampler)(mix, x, sigma_steps("karras", steps, 0.002, 80.0), generator=g, **options)


@pytest.mark.parametrize(
    ("sampler", "steps", "options"),
    [
        ("ddpm", 200, {}),
        ("ddpm", 200, {"variance": "large"}),
        ("ddim", 200, {"eta": 1.0}),
        ("euler_maruyama", 200, {}),
        ("pc", 200, {}),
        ("heun", 100, {"s_churn": 40.0}),
    ],
)
def test_stochastic_sampler_matches_mixture(mixture2d, sampler, steps, options):
    z = z_scores(mixture2d, run(mixture2d, sampler, steps, **options))
    assert float(z.max()) < Z_MAX, z


def test_exact_samples_pass_the_same_check(mixture2d):
    y, _ = mixture2d.sample(N, torch.Generator().manual_seed(9))
    assert float(z_scores(mixture2d, y).max()) < Z_MAX


@pytest.mark.parametrize(
    ("sampler", "steps", "options"),
    [("euler_maruyama", 25, {}), ("pc", 200, {"snr": 0.6})],
)
def test_biased_samplers_are_caught(mixture2d, sampler, steps, options):
    z = z_scores(mixture2d, run(mixture2d, sampler, steps, **options))
    assert float(z.max()) > Z_MAX, z


def test_stochastic_samplers_are_seeded(mixture2d):
    x = torch.zeros(4, 2, dtype=torch.float64)
    sig = sigma_steps("karras", 10)
    a = get("pc")(mixture2d, x, sig, generator=torch.Generator().manual_seed(3))
    b = get("pc")(mixture2d, x, sig, generator=torch.Generator().manual_seed(3))
    c = get("pc")(mixture2d, x, sig, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for options, message in [
        ({"corrector_steps": 1.5}, "corrector_steps must be an integer >= 0, not 1.5"),  # was a
        ({"corrector_steps": -1}, "corrector_steps must be an integer >= 0, not -1"),  # TypeError
        ({"snr": 0.0}, "snr must be a positive number, not 0.0"),
        ({"snr": math.nan}, "snr must be a positive number, not nan"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            get("pc")(mixture2d, x, sig, **options)


@pytest.mark.parametrize(("eta", "variance"), [(1.0, "small"), (0.5, "small"), (1.0, "large")])
def test_ancestral_step_coefficients(eta, variance):
    from diffvision.samplers import ancestral_step

    s, s_next = 2.0, 0.5
    keep, std = ancestral_step(s, s_next, eta=eta, variance=variance)
    if variance == "small":  # DDIM (Song et al. 2021, eq. 12): the step keeps the level s_next
        up = eta * s_next * math.sqrt(s**2 - s_next**2) / s
        assert math.isclose(std, up) and math.isclose((keep * s) ** 2 + std**2, s_next**2)
    else:  # DDPM's beta in sigma space, with the posterior mean's weight (s_next / s)^2
        beta = (s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2)
        assert math.isclose(keep, (s_next / s) ** 2) and math.isclose(std, math.sqrt(beta))
    assert ancestral_step(s, 0.0, eta=eta, variance=variance) == (0.0, 0.0)
    with pytest.raises(ValueError, match="variance"):
        ancestral_step(s, s_next, variance="huge")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_noise_filter_shapes_the_fresh_noise(mixture2d, sampler):
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 80
    sig = sigma_steps("karras", 8)
    opts = {"eta": 1.0} if sampler == "ddim" else {}

    def run_with(seed, noise_filter=None):
        g = torch.Generator().manual_seed(seed)
        return get(sampler)(mixture2d, x, sig, generator=g, noise_filter=noise_filter, **opts)

    calls = []

    def identity(z, s, s_next):
        calls.append((s, s_next))
        return z

    # The identity filter is the default; it sees every step that adds noise (not the last).
    assert torch.equal(run_with(3, identity), run_with(3))
    levels = sig.tolist()
    assert calls == list(itertools.pairwise(levels[:-1]))
    # A filter that removes the noise makes the result independent of the random draws.
    silent = run_with(3, lambda z, s, s_next: 0 * z)
    assert torch.equal(silent, run_with(4, lambda z, s, s_next: 0 * z))
    assert not torch.equal(silent, run_with(3))
