"""The exact references are checked against independent formulas: Tweedie's identity
D = x + sigma^2 grad log p (autograd through log_prob), direct matrix algebra and
torch.distributions."""

import math

import pytest
import torch

from diffvision.analytic import EmpiricalDenoiser, GaussianDenoiser, GaussianMixtureDenoiser


def tweedie(log_prob, x, sigma):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prob(x, sigma).sum(), x)
    return x.detach() + sigma**2 * grad


def test_gaussian_denoiser_matches_direct_formula(gaussian16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 16, generator=g, dtype=torch.float64) * 2
    cov = gaussian16.covariance()
    for sigma in (0.01, 0.5, 20.0):
        direct = gaussian16.mean + (x - gaussian16.mean) @ torch.linalg.solve(
            cov + sigma**2 * torch.eye(16, dtype=torch.float64), cov
        )
        assert torch.allclose(gaussian16(x, sigma), direct, atol=1e-10)
        assert torch.allclose(
            gaussian16(x, sigma), tweedie(gaussian16.log_prob, x, sigma), atol=1e-10
        )


def test_gaussian_log_prob_matches_torch_distributions(gaussian16):
    x = gaussian16.sample(7, torch.Generator().manual_seed(2), sigma=0.3)
    ref = torch.distributions.MultivariateNormal(
        gaussian16.mean, gaussian16.covariance() + 0.09 * torch.eye(16, dtype=torch.float64)
    )
    assert torch.allclose(gaussian16.log_prob(x, 0.3), ref.log_prob(x), atol=1e-9)


def test_ode_map_solves_the_probability_flow_ode(gaussian16):
    x = gaussian16.sample(4, torch.Generator().manual_seed(3), sigma=2.0)
    # Central difference of the map against the ODE right-hand side (x - D) / sigma; the
    # O(h^2) truncation with h = 1e-4 is far below the 1e-7 tolerance.
    h = 1e-4
    dx = (gaussian16.ode_map(x, 2.0, 2.0 + h) - gaussian16.ode_map(x, 2.0, 2.0 - h)) / (2 * h)
    assert torch.allclose(dx, (x - gaussian16(x, 2.0)) / 2.0, atol=1e-7)
    # Flow property: composing maps equals the direct map, and mapping back is the identity.
    via = gaussian16.ode_map(gaussian16.ode_map(x, 2.0, 0.7), 0.7, 0.05)
    assert torch.allclose(via, gaussian16.ode_map(x, 2.0, 0.05), atol=1e-12)
    assert torch.allclose(
        gaussian16.ode_map(gaussian16.ode_map(x, 2.0, 0.1), 0.1, 2.0), x, atol=1e-12
    )


def test_ode_map_pushes_marginals_forward(gaussian16):
    # The PF-ODE maps p(x; 5) onto p(x; 0.1): sample covariance of the image equals cov + 0.01 I
    # within the standard error of a sample covariance, sqrt((S_ii S_jj + S_ij^2) / n).
    n = 20000
    x = gaussian16.sample(n, torch.Generator().manual_seed(4), sigma=5.0)
    y = gaussian16.ode_map(x, 5.0, 0.1)
    target = gaussian16.covariance() + 0.01 * torch.eye(16, dtype=torch.float64)
    emp = torch.cov(y.T)
    se = ((torch.diag(target)[:, None] * torch.diag(target)[None] + target**2) / n).sqrt()
    assert ((emp - target).abs() < 5 * se).all()


def test_gaussian_samples_are_drawn_through_the_cholesky_factor(gaussian16):
    # mean + L eps with L = chol(cov + sigma^2 I): unique, so the same on every machine.
    eps = torch.randn(3, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cov = gaussian16.covariance() + 0.09 * torch.eye(16, dtype=torch.float64)
    expect = gaussian16.mean + eps @ torch.linalg.cholesky(cov).T
    got = gaussian16.sample(3, torch.Generator().manual_seed(5), sigma=0.3)
    assert torch.allclose(got.reshape(3, -1), expect, atol=1e-12)
    # A singular covariance has no Cholesky factor at sigma 0: drawn in its eigenbasis, the
    # samples stay in its range (third coordinate 0) with its covariance, within 5 standard
    # errors of a sample covariance, sqrt((S_ii S_jj + S_ij^2) / n).
    cov = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    n = 4000
    x = GaussianDenoiser(torch.zeros(3), cov).sample(n, torch.Generator().manual_seed(6))
    assert x[:, 2].abs().max() < 1e-12
    se = ((torch.diag(cov)[:, None] * torch.diag(cov)[None] + cov**2) / n).sqrt()
    assert ((torch.cov(x[:, :2].T) - cov[:2, :2]).abs() < 5 * se[:2, :2]).all()


def test_diagonal_and_image_shaped_gaussian():
    var = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    mean = torch.zeros(3, 4, 4, dtype=torch.float64)
    g = GaussianDenoiser(mean, var)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float32)
    out = g(x, torch.tensor([0.5, 1.0]))
    assert out.shape == x.shape and out.dtype == torch.float32
    expect0 = x[0].double() * var / (var + 0.25)
    assert torch.allclose(out[0].double(), expect0, atol=1e-6)
    assert g.sample(5).shape == (5, 3, 4, 4)


def test_mixture_denoiser_is_tweedie(mixture2d):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64) * 1.5
    for sigma in (0.05, 0.4, 3.0):
        assert torch.allclose(mixture2d(x, sigma), tweedie(mixture2d.log_prob, x, sigma), atol=1e-9)


def test_mixture_log_prob_matches_torch_distributions(mixture2d):
    x = torch.randn(20, 2, dtype=torch.float64)
    comps = torch.distributions.MultivariateNormal(
        torch.stack([c.mean for c in mixture2d.components]),
        torch.stack([c.covariance() for c in mixture2d.components])
        + 0.04 * torch.eye(2, dtype=torch.float64),
    )
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mixture2d.weights), comps
    )
    assert torch.allclose(mixture2d.log_prob(x, 0.2), ref.log_prob(x), atol=1e-10)


def test_mixture_sample_weights(mixture2d):
    n = 30000
    _, labels = mixture2d.sample(n, torch.Generator().manual_seed(6))
    freq = torch.bincount(labels, minlength=3).double() / n
    se = (mixture2d.weights * (1 - mixture2d.weights) / n).sqrt()
    assert ((freq - mixture2d.weights).abs() < 5 * se).all()


def test_empirical_denoiser_is_tweedie_and_memorises():
    pts = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    e = EmpiricalDenoiser(pts)
    x = torch.randn(9, 3, 2, 2, dtype=torch.float64)
    for sigma in (0.3, 2.0):
        assert torch.allclose(e(x, sigma), tweedie(e.log_prob, x, sigma), atol=1e-10)
    near = pts[2:3] + 1e-3
    assert torch.allclose(e(near, 1e-2), pts[2:3], atol=1e-12)
    with pytest.raises(ValueError):
        e(x, 0.0)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([1.0, -1.0]))
    g = GaussianDenoiser(torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="expected 4 values"):
        g(torch.zeros(2, 5), 1.0)
    with pytest.raises(ValueError):
        GaussianMixtureDenoiser(torch.tensor([1.0]), torch.zeros(2, 2), torch.ones(2, 2))
    assert math.isfinite(float(g.log_prob(torch.zeros(1, 4), 0.0)))


def test_empirical_denoiser_by_class():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(7, 2, 2, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2])
    e = EmpiricalDenoiser(pts, labels, null_cond=3)
    x = torch.randn(4, 2, 2, generator=g, dtype=torch.float64)
    cond = torch.tensor([2, 0, 3, 1])
    out = e(x, 0.8, cond)
    for row, c in enumerate(cond.tolist()):
        subset = pts if c == 3 else pts[labels == c]
        assert torch.allclose(out[row], EmpiricalDenoiser(subset)(x[row : row + 1], 0.8)[0])
    assert torch.allclose(e(x, 0.8), EmpiricalDenoiser(pts)(x, 0.8))  # no cond: all points
    with pytest.raises(ValueError, match="without points"):
        e(x, 0.8, torch.tensor([5, 0, 0, 0]))
    with pytest.raises(ValueError, match="labels"):
        EmpiricalDenoiser(pts)(x, 0.8, cond)
