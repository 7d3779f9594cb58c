"""Restoration against an exact Gaussian prior (image-shaped, smooth covariance), whose posterior
for a linear operator with Gaussian noise is Gaussian and known in closed form.

Tolerances: sample means over K draws carry Monte-Carlo error sqrt(tr Sigma_post / K); we state
errors relative to ||m_post - m_prior|| (how far y moves the estimate), where that MC error is
< 0.6% at K = 1000. ddnm, repaint and dps are approximate posterior samplers: on this prior
their error falls with steps and then levels off at a bias of 4-11% (measured at 160 steps:
ddnm 8.6% inpainting / 3.7% 2x super-resolution, repaint 10.8%, dps 8.4% inpainting); the
tests require the fall from 10 to 40 steps and an error below 13% at 40 steps.
"""

import pytest
import torch

from diffvision.analytic import GaussianDenoiser
from diffvision.restore import (
    Colorize,
    Deblur,
    Denoise,
    Inpaint,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    motion_kernel,
    random_mask,
    solve,
    stroke_mask,
)

H, C = 8, 1
D = C * H * H


@pytest.fixture(scope="module")
def prior():
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    p = torch.stack([yy.flatten(), xx.flatten()], 1).double()
    cov = 0.25 * torch.exp(-(torch.cdist(p, p) ** 2) / 8.0) + 1e-3 * torch.eye(
        D, dtype=torch.float64
    )
    mean = torch.full((C, H, H), 0.1, dtype=torch.float64)
    return GaussianDenoiser(mean, cov)


def matrix(op, shape=(C, H, H)):
    basis = torch.eye(D, dtype=torch.float64).view(D, *shape)
    return op.forward(basis).reshape(D, -1).T


def exact_posterior(prior, op, y):
    """Mean (image-shaped) and covariance of p(x | y) for y = A x + sigma n."""
    a, cov, mean = matrix(op), prior.covariance(), prior.mean
    yv = y.reshape(-1)
    if op.sigma > 0:
        post = torch.linalg.inv(torch.linalg.inv(cov) + a.T @ a / op.sigma**2)
        m = post @ (torch.linalg.solve(cov, mean) + a.T @ yv / op.sigma**2)
    else:
        gain = cov @ a.T @ torch.linalg.pinv(a @ cov @ a.T)
        m = mean + gain @ (yv - a @ mean)
        post = cov - gain @ a @ cov
    return m.view(1, C, H, H), post


def truth_and_y(prior, op, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = prior.sample(1, generator=g)
    return x, op.measure(x, g)


def relative_error(prior, estimate, exact):
    return float((estimate - exact).norm() / (exact - prior.mean.view(exact.shape)).norm())


@pytest.mark.parametrize(
    "op",
    [
        Inpaint(box_mask(H, H, (2, 2, 4, 4))),
        Inpaint(random_mask(H, H, 0.5, torch.Generator().manual_seed(0))),
        SuperResolution(2, "pool"),
        SuperResolution(2, "bicubic"),
        Deblur(gaussian_kernel(3, 1.0)),
        Deblur(motion_kernel(5, 30.0)),
    ],
    ids=["box", "random", "pool", "bicubic", "gauss-blur", "motion-blur"],
)
def test_transpose_and_pseudo_inverse(op):
    a = matrix(op)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, C, H, H, generator=g, dtype=torch.float64)
    y = op.forward(x)
    v = torch.randn(y.shape, generator=g, dtype=torch.float64)
    # <A x, v> = <x, A^T v> (the transpose is the adjoint), to float64 round-off.
    assert torch.allclose((y * v).sum(), (x * op.transpose(v)).sum(), rtol=1e-9)
    # A^+ agrees with the Moore-Penrose pseudo-inverse of the explicit matrix.
    rcond = getattr(op, "rcond", 1e-10)
    ref = (torch.linalg.pinv(a, rtol=rcond) @ v.reshape(2, -1).T).T.reshape(x.shape)
    assert torch.allclose(op.pinv(v), ref, atol=1e-6)


@pytest.mark.parametrize(
    "op", [Deblur(gaussian_kernel(3, 1.0)), Deblur(motion_kernel(5, 30.0))], ids=["gauss", "motion"]
)
def test_regularized_inverse_is_tikhonov(op):
    a = matrix(op)
    y = torch.randn(1, C, H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lam = 0.01
    ref = torch.linalg.solve(a.T @ a + lam * torch.eye(D, dtype=torch.float64), a.T @ y.flatten())
    assert torch.allclose(op.regularized_inverse(y, lam).flatten(), ref, atol=1e-10)
    with pytest.raises(ValueError, match="lam"):
        op.regularized_inverse(y, 0.0)


def test_colorize_operator():
    op = Colorize()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = op.forward(x)
    assert y.shape == (2, 1, 4, 4) and torch.allclose(op.forward(op.pinv(y)), y)
    v = torch.randn_like(y)
    assert torch.allclose((y * v).sum(), (x * op.transpose(v)).sum())


def test_masks():
    assert box_mask(8, 8, (1, 2, 3, 4)).sum() == 64 - 12
    with pytest.raises(ValueError, match="does not fit"):
        box_mask(8, 8, (6, 0, 4, 4))
    m = stroke_mask(32, 32, generator=torch.Generator().manual_seed(0))
    assert 0 < (m == 0).sum() < 32 * 32
    with pytest.raises(ValueError, match="only 0"):
        Inpaint(torch.full((4, 4), 0.5))


def test_mmse_is_the_exact_posterior_mean(prior):
    op = Denoise(0.3)
    _, y = truth_and_y(prior, op)
    m, _ = exact_posterior(prior, op, y)
    assert torch.allclose(solve(prior, op, y, solver="mmse"), m, atol=1e-10)


def test_posterior_samples_match_the_exact_posterior(prior):
    op = Denoise(0.2)
    _, y = truth_and_y(prior, op)
    m, post = exact_posterior(prior, op, y)
    k = 1000
    ratio = {}
    for steps in (40, 160):
        r = solve(
            prior,
            op,
            y,
            solver="posterior",
            steps=steps,
            n_samples=k,
            generator=torch.Generator().manual_seed(2),
        )
        # Sample mean within 5 Monte-Carlo standard errors of the exact mean (per pixel).
        se = (post.diagonal() / k).sqrt().view(1, C, H, H)
        assert ((r.mean - m).abs() / se).max() < 5
        ratio[steps] = float(r.std.pow(2).sum() / post.diagonal().sum())
    # Total variance: the ancestral sampler's first-order discretisation error shrinks about 4x
    # from 40 to 160 steps (measured 0.84 -> 0.96); its Monte-Carlo error at K = 1000 is ~3%.
    assert abs(1 - ratio[160]) < 0.5 * abs(1 - ratio[40]) and abs(1 - ratio[160]) < 0.08, ratio


@pytest.mark.parametrize(
    ("solver", "op"),
    [
        ("ddnm", Inpaint(box_mask(H, H, (2, 2, 4, 4)))),
        ("repaint", Inpaint(box_mask(H, H, (2, 2, 4, 4)))),
        ("dps", Inpaint(box_mask(H, H, (2, 2, 4, 4)))),
        ("ddnm", SuperResolution(2, "pool")),
    ],
    ids=["ddnm-inpaint", "repaint-inpaint", "dps-inpaint", "ddnm-superres"],
)
def test_approximate_solvers_approach_the_posterior_mean(prior, solver, op):
    _, y = truth_and_y(prior, op)
    m, _ = exact_posterior(prior, op, y)
    opts = {"jump_length": 5, "jump_n_sample": 2} if solver == "repaint" else {}
    errors = {}
    for steps in (10, 40):
        r = solve(
            prior,
            op,
            y,
            solver=solver,
            steps=steps,
            n_samples=1000,
            generator=torch.Generator().manual_seed(3),
            **opts,
        )
        errors[steps] = relative_error(prior, r.mean, m)
        # Noise-free: the known part is kept exactly, and it has no uncertainty.
        assert torch.allclose(
            op.forward(r.samples.flatten(0, 1)), y.expand(1000, -1, -1, -1), atol=1e-9
        )
        if isinstance(op, Inpaint):
            assert float((r.std * op.mask).abs().max()) < 1e-9
    assert errors[40] < errors[10] and errors[40] < 0.13, errors
    # Filling the unseen part with the prior mean ignores the prior's correlations; the
    # solvers must do much better than that.
    naive = op.project(prior.mean.view(1, C, H, H), y)
    assert errors[40] < 0.5 * relative_error(prior, naive, m)


@pytest.mark.parametrize(
    ("solver", "op"),
    [
        ("ddnm", Denoise(0.2)),
        ("dps", Denoise(0.2)),
        ("ddnm", Deblur(gaussian_kernel(3, 1.0), sigma=0.05)),
        ("posterior", Denoise(0.2)),
    ],
    ids=["ddnm-denoise", "dps-denoise", "ddnm-deblur", "posterior-denoise"],
)
def test_noisy_solutions_are_consistent_with_y(prior, solver, op):
    _, y = truth_and_y(prior, op)
    m, _ = exact_posterior(prior, op, y)
    r = solve(
        prior,
        op,
        y,
        solver=solver,
        steps=40,
        n_samples=200,
        generator=torch.Generator().manual_seed(4),
    )
    # ||A x - y|| per measurement within 1.5 sigma_y for each sample: an exact posterior sample
    # has E||A x - y||^2 <= 2 m sigma_y^2 (y's noise plus the posterior spread in A's range).
    rms = (op.forward(r.samples.flatten(0, 1)) - y).flatten(1).norm(dim=1) / y.numel() ** 0.5
    assert float(rms.max()) < 1.5 * op.sigma
    # And better than the measurement itself as an estimate of the posterior mean.
    assert relative_error(prior, r.mean, m) < relative_error(prior, op.pinv(y), m)


def test_sdedit_and_errors(prior):
    op = Denoise(0.1)
    _, y = truth_and_y(prior, op)
    low = solve(
        prior,
        op,
        y,
        solver="sdedit",
        strength=0.1,
        steps=10,
        generator=torch.Generator().manual_seed(5),
    )
    high = solve(
        prior,
        op,
        y,
        solver="sdedit",
        strength=0.9,
        steps=10,
        generator=torch.Generator().manual_seed(5),
    )
    # Low strength stays near y; high strength is free to move far from it.
    assert (low - y).norm() < (high - y).norm()
    with pytest.raises(ValueError, match="unknown solver"):
        solve(prior, op, y, solver="magic")
    with pytest.raises(ValueError, match="inpainting only"):
        solve(prior, op, y, solver="repaint")
    with pytest.raises(ValueError, match="denoising"):
        solve(prior, Inpaint(box_mask(H, H, (0, 0, 2, 2))), y, solver="mmse")


def test_warm_start_forgets_a_bad_start_from_high_noise_and_keeps_a_good_one_from_low(prior):
    op = Inpaint(box_mask(H, H, (2, 2, 4, 4)))
    x, y = truth_and_y(prior, op)
    m, _ = exact_posterior(prior, op, y)
    naive = op.project(prior.mean.view(1, C, H, H), y)  # a poor start: the prior mean in the hole

    def run(start, start_sigma):
        return solve(
            prior,
            op,
            y,
            solver="ddnm",
            steps=40,
            n_samples=1000,
            generator=torch.Generator().manual_seed(6),
            start=start,
            start_sigma=start_sigma,
        )

    # From sigma 10 (20 x the prior's std) the start's offset survives in E[x0 | x_sigma] with
    # weight ~ 0.25 / (0.25 + 100) < 0.3%: the result is the cold start's, within its bias.
    high = run(naive, 10.0)
    assert relative_error(prior, high.mean, m) < 0.13
    assert relative_error(prior, high.mean, m) < 0.5 * relative_error(prior, naive, m)
    assert torch.allclose(op.forward(high.samples.flatten(0, 1)), y.expand(1000, -1, -1, -1))
    # From sigma 0.05 the start's content survives: started from the truth, the result is much
    # closer to it than the exact posterior mean (what a cold start aims at) is.
    low = run(x, 0.05)
    assert (low.mean - x).norm() < 0.5 * (m - x).norm()
    with pytest.raises(ValueError, match="start must be"):
        run(x[..., :4], 0.5)
    with pytest.raises(ValueError, match="start_sigma"):
        run(x, 100.0)


@pytest.mark.parametrize("solver", ["repaint", "dps"])
def test_warm_start_reaches_repaint_and_dps(prior, solver):
    op = Inpaint(box_mask(H, H, (2, 2, 4, 4)))
    x, y = truth_and_y(prior, op)
    m, _ = exact_posterior(prior, op, y)
    r = solve(
        prior,
        op,
        y,
        solver=solver,
        steps=10,
        n_samples=200,
        generator=torch.Generator().manual_seed(7),
        start=x,
        start_sigma=0.05,
    )
    # As in the ddnm test above: from the truth at sigma 0.05 the truth's content survives.
    assert (r.mean - x).norm() < 0.5 * (m - x).norm()
