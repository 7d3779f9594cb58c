"""PF-ODE likelihood against exact log-densities.

Two error sources, checked separately: the ODE integration (fourth-order Runge-Kutta in
log sigma; isolated by passing the exact prior at sigma_max) and the N(0, sigma_max^2 I) prior.
Criteria: the data-set mean log-likelihood within 1% of the exact one (the issue's bar), each
sample within 0.01 nats per dimension, and the integration error falling at least 8x when the
steps double (fourth order gives 16x; 8x leaves room for the pre-asymptotic range)."""

import math
import re

import pytest
import torch

from diffvision import likelihood
from diffvision.samplers import dequantize
from tests.conftest import make_gaussian

SIGMA_MIN = 1e-3


@pytest.mark.parametrize("d", [1, 2, 16])
def test_gaussian_likelihood_matches_log_prob(d):
    exact = make_gaussian(d, seed=d)
    x = exact.sample(32, torch.Generator().manual_seed(0))
    ref = exact.log_prob(x, SIGMA_MIN)
    res = likelihood(exact, x, sigma_min=SIGMA_MIN)
    assert abs(float(res.log_prob.mean() - ref.mean())) < 0.01 * abs(float(ref.mean()))
    assert float((res.log_prob - ref).abs().max()) < 0.01 * d
    assert res.nfe == 4 * 32 and torch.allclose(
        res.prior_log_prob + res.delta_log_prob, res.log_prob
    )

    prior = lambda y: exact.log_prob(y, 80.0)  # noqa: E731
    err32 = (likelihood(exact, x, steps=32, prior_log_prob=prior).log_prob - ref).abs().max()
    err64 = (likelihood(exact, x, steps=64, prior_log_prob=prior).log_prob - ref).abs().max()
    assert float(err64) < float(err32) / 8


def test_mixture_likelihood(mixture2d):
    x, _ = mixture2d.sample(32, torch.Generator().manual_seed(1))
    ref = mixture2d.log_prob(x, SIGMA_MIN)
    res = likelihood(mixture2d, x, sigma_min=SIGMA_MIN, steps=48)
    assert float((res.log_prob - ref).abs().max()) < 0.01 * 2


def test_hutchinson_is_unbiased():
    exact = make_gaussian(16, seed=16)
    x = exact.sample(64, torch.Generator().manual_seed(2))
    ref = likelihood(exact, x).log_prob  # exact divergence, same ODE path
    est = likelihood(
        exact, x, exact=False, probes=2, generator=torch.Generator().manual_seed(3)
    ).log_prob
    err = est - ref
    # Mean error within 4 standard errors of zero, and the estimator is not trivially exact.
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(err))
    assert float(err.std()) > 0


def test_bits_per_dim_and_dequantisation():
    exact = make_gaussian(4, seed=4)
    x = exact.sample(8, torch.Generator().manual_seed(5))
    res = likelihood(exact, x, bins=256)
    assert torch.allclose(res.bits_per_dim, -res.log_prob / (4 * math.log(2)) + 7.0)
    pixels = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1
    deq = dequantize(pixels, torch.Generator().manual_seed(6))
    k = torch.arange(256, dtype=torch.float64)
    assert bool(((deq >= 2 * k / 256 - 1) & (deq < 2 * (k + 1) / 256 - 1)).all())


def test_image_shaped_input_uses_hutchinson():
    from diffvision.analytic import GaussianDenoiser

    exact = GaussianDenoiser(
        torch.zeros(1, 9, 9, dtype=torch.float64), torch.full((1, 9, 9), 0.2).double()
    )
    x = exact.sample(4, torch.Generator().manual_seed(7))
    res = likelihood(exact, x, steps=16, probes=1, generator=torch.Generator().manual_seed(8))
    # The divergence of this isotropic denoiser is the same along every probe: Hutchinson is exact.
    assert torch.allclose(res.log_prob, exact.log_prob(x, SIGMA_MIN), atol=0.01 * 81)


def test_bad_likelihood_requests_are_refused():
    """Zero or negative steps returned the prior's log-density as the answer (and nfe -4), a
    reversed sigma range integrated backwards; each is now a ValueError that names it."""
    exact = make_gaussian(2, seed=0)
    x = exact.sample(4, torch.Generator().manual_seed(0))
    for options, message in [
        ({"steps": 0}, "steps must be an integer >= 1, not 0"),
        ({"steps": 2.5}, "steps must be an integer >= 1, not 2.5"),
        ({"probes": 0, "exact": False}, "probes must be an integer >= 1, not 0"),
        ({"bins": 1}, "bins must be an integer >= 2, not 1"),
        ({"sigma_min": 80.0, "sigma_max": 1.0}, "need 0 < sigma_min < sigma_max < inf, got 80"),
        ({"sigma_max": math.inf}, "sigma_max < inf, got 0.001 and inf"),
        # a seed was taken without a word where the divergence is exact (no probes drawn)
        ({"generator": 3}, "generator must be a torch.Generator or None, not 3"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            likelihood(exact, x, **options)
