"""Restoration against an exact Gaussian prior (image-shaped, smooth covariance), whose posterior
for a linear operator with Gaussian noise is Gaussian and known in closed form.

Tolerances: sample means over K draws carry Monte-Carlo error sqrt(tr Sigma_post / K); we state
errors relative to ||m_post - m_prior|| (how far y moves the estimate), where that MC error is
< 0.6% at K = 1000. ddnm, repaint and dps are approximate posterior samplers: on this prior
their error falls with steps and then levels off at a bias of the method's own. That bias
differs a lot from one measurement to the next (5% to 36% for ddnm's box inpainting over 12
draws), so those tests pool 12 measurements (the prior draws them through its Cholesky
factor, so they are the same on every machine).
"""

import math
import re

import pytest
import torch

from diffvision.analytic import GaussianDenoiser
from diffvision.restore import (
    Colorize,
    Deblur,
    Denoise,
    Inpaint,
    Restoration,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    motion_kernel,
    random_mask,
    solve,
    stroke_mask,
)
from diffvision.restore.solvers import sampler_steps
from diffvision.restore.tiles import TiledDenoiser

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
    """Means (``N x C x H x W``, one per measurement) and the covariance of p(x | y) for
    y = A x + sigma n."""
    a, cov, mean = matrix(op), prior.covariance(), prior.mean.reshape(-1, 1)
    yv = y.reshape(len(y), -1).T  # one measurement per column
    if op.sigma > 0:
        post = torch.linalg.inv(torch.linalg.inv(cov) + a.T @ a / op.sigma**2)
        m = post @ (torch.linalg.solve(cov, mean) + a.T @ yv / op.sigma**2)
    else:
        gain = cov @ a.T @ torch.linalg.pinv(a @ cov @ a.T)
        m = mean + gain @ (yv - a @ mean)
        post = cov - gain @ a @ cov
    return m.T.reshape(len(y), C, H, H), post


def truth_and_y(prior, op, seed=0, n=1):
    """``n`` ground truths from the prior (the same draws on every machine) and their
    measurements."""
    g = torch.Generator().manual_seed(seed)
    x = prior.sample(n, generator=g)
    return x, op.measure(x, g)


def relative_error(prior, estimate, exact):
    """||estimate - exact|| / ||exact - prior mean||, pooled over the batch."""
    return float((estimate - exact).norm() / (exact - prior.mean.view(1, *exact.shape[1:])).norm())


def draws(prior, op, y, solver, steps, seed, **opts):
    """250 posterior draws per measurement from ``solver`` (a :class:`Restoration`)."""
    gen = torch.Generator().manual_seed(seed)
    return solve(prior, op, y, solver=solver, steps=steps, n_samples=250, generator=gen, **opts)


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
    # A^+ agrees with the Moore-Penrose pseudo-inverse of the explicit matrix, to float64
    # round-off (bicubic by its axes' matrices; conjugate gradients, used before, met 1e-6 only).
    rcond = getattr(op, "rcond", 1e-10)
    ref = (torch.linalg.pinv(a, rtol=rcond) @ v.reshape(2, -1).T).T.reshape(x.shape)
    assert torch.allclose(op.pinv(v), ref, atol=1e-9)


def test_operators_check_their_arguments():
    """Every operator and mask or kernel maker refuses what it cannot use with a ValueError that
    says why (no TypeError, OverflowError or wrong result from deep inside)."""
    for bad in (-0.1, math.nan, math.inf, "0.1", None):  # a string was a TypeError from >=
        with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
            Denoise(bad)
    assert Denoise(torch.tensor(0.25)).sigma == 0.25  # a number held in a tensor is a number
    for rcond in (math.nan, -1e-3, 1.0, "0.1"):  # NaN kept no frequency: A^+ was 0, silently
        with pytest.raises(ValueError, match=re.escape("rcond must be a number in [0, 1), no")):
            Deblur(torch.ones(3, 3), rcond=rcond)
    for lam in (0.0, math.nan):  # NaN passed the check of lam <= 0 and made NaN images
        with pytest.raises(ValueError, match=f"lam must be a positive number, not {lam}"):
            Deblur(torch.ones(3, 3)).regularized_inverse(torch.zeros(1, 1, 8, 8), lam)
    for size in (-5, 4, 2.5, True):
        with pytest.raises(ValueError, match=f"size must be a positive odd integer, not {size}"):
            motion_kernel(size)
        with pytest.raises(ValueError, match="size must be a positive odd integer"):
            gaussian_kernel(size, 1.0)
    with pytest.raises(ValueError, match="std must be a positive number, not nan"):
        gaussian_kernel(5, math.nan)
    with pytest.raises(ValueError, match="angle must be a finite number"):
        motion_kernel(5, math.inf)
    for factor in (0, 1.5, math.inf):  # inf was an OverflowError from int()
        with pytest.raises(ValueError, match="factor must be an integer >= 1"):
            SuperResolution(factor)
    with pytest.raises(ValueError, match="method must be pool or bicubic"):
        SuperResolution(2, "nearest")
    with pytest.raises(ValueError, match="multiple of the factor 2"):
        SuperResolution(2, "pool").forward(torch.zeros(1, 1, 8, 7))
    for kernel in (torch.ones(3, 5), torch.ones(4, 4), torch.ones(3)):
        with pytest.raises(ValueError, match="square k x k tensor with odd k"):
            Deblur(kernel)
    with pytest.raises(ValueError, match="positive sum"):
        Deblur(torch.zeros(3, 3))
    for value in (math.nan, math.inf):  # NaN passed the sum's check and made NaN images
        with pytest.raises(ValueError, match="kernel holds NaN or infinite values"):
            Deblur(torch.full((3, 3), value))
    with pytest.raises(ValueError, match=re.escape("kernel (5 px) larger than the image (4 x 8)")):
        Deblur(torch.ones(5, 5)).forward(torch.zeros(1, 1, 4, 8))
    with pytest.raises(ValueError, match="colorize needs RGB images"):
        Colorize().forward(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=re.escape("mask must be H x W or N x 1 x H x W")):
        Inpaint(torch.ones(2, 4, 4))
    for strokes, thickness, message in [
        (1.5, 3, "strokes must be an integer >= 0, not 1.5"),  # a TypeError from range()
        (math.inf, 3, "strokes must be an integer >= 0, not inf"),
        (2, 0, "thickness must be a positive number, not 0"),
        (2, math.nan, "thickness must be a positive number, not nan"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            stroke_mask(8, 8, strokes, thickness)
    for missing in (1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match=re.escape("missing fraction must be in [0, 1)")):
            random_mask(4, 4, missing)


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


def test_a_kernel_cropped_off_centre_deblurs_into_a_shifted_image():
    """Deblur takes a kernel's middle pixel as the point source's position: the true kernel
    cropped off-centre by d (``kernel_offset`` d, exactly) deblurs an image blurred by it into
    the image shifted by -d (the pseudo-inverse is exact here: the spectrum of a Gaussian of
    std 0.8 stays above rcond on 16 x 16 px, so the shift is the only difference)."""
    from diffvision.restore import kernel_offset

    true = gaussian_kernel(5, 0.8)
    cropped = torch.zeros(9, 9, dtype=torch.float64)
    cropped[1:6, 3:8] = true  # its centre at row 3, column 5: 1 px up and 1 px right of (4, 4)
    assert kernel_offset(true) == (0.0, 0.0)
    across, down = kernel_offset(cropped)
    assert abs(across - 1) < 1e-12 and abs(down + 1) < 1e-12
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = Deblur(true).forward(x)
    assert torch.allclose(Deblur(true).pinv(y), x, atol=1e-9)
    shifted = torch.roll(x, shifts=(round(-down), round(-across)), dims=(-2, -1))
    assert torch.allclose(Deblur(cropped).pinv(y), shifted, atol=1e-9)
    for bad, message in [
        (torch.ones(3, 5), "square k x k tensor with odd k, not (3, 5)"),
        (torch.ones(4, 4), "square k x k tensor with odd k, not (4, 4)"),
        (torch.zeros(3, 3), "kernel must have a positive sum, not 0"),
        (torch.full((3, 3), math.nan), "kernel holds NaN or infinite values"),
        (torch.full((3, 3), -1.0), "kernel must have a positive sum, not -9"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            kernel_offset(bad)


def matrix_of(fn, in_shape):
    """The explicit matrix of a linear map on tensors of shape ``in_shape`` (one column per
    basis vector)."""
    n = torch.Size(in_shape).numel()
    return fn(torch.eye(n, dtype=torch.float64).view(n, *in_shape)).reshape(n, -1).T


SPECTRAL_OPS = [
    Denoise(0.1),
    Inpaint(random_mask(H, H, 0.5, torch.Generator().manual_seed(0)), sigma=0.1),
    SuperResolution(2, "pool", sigma=0.1),
    Colorize(sigma=0.1),
    Deblur(gaussian_kernel(3, 1.0), sigma=0.1),
    Deblur(motion_kernel(5, 30.0), sigma=0.1),
]
SPECTRAL_IDS = ["denoise", "inpaint", "pool", "colorize", "gauss-blur", "motion-blur"]


def image_shape(op):
    return (3, H, H) if isinstance(op, Colorize) else (C, H, H)


@pytest.mark.parametrize("op", SPECTRAL_OPS, ids=SPECTRAL_IDS)
def test_spectral_matches_the_svd(op):
    # V diag(fn(s)) V^T from the explicit matrix's SVD (directions with s below A^+'s cut-off
    # count as null space); fn mixes a smooth and a thresholded function of s.
    shape = image_shape(op)
    a = matrix_of(op.forward, shape)
    _, sv, vh = torch.linalg.svd(a, full_matrices=True)
    s_all = torch.zeros(vh.shape[0], dtype=torch.float64)
    s_all[: len(sv)] = torch.where(sv > getattr(op, "rcond", 1e-10) * sv.max(), sv, 0.0)

    def fn(s):
        return torch.where(s > 0.4, 2.0, 0.5) + s**2

    ref = vh.T @ torch.diag(fn(s_all)) @ vh
    assert torch.allclose(matrix_of(lambda v: op.spectral(v, fn), shape), ref, atol=1e-9)


@pytest.mark.parametrize("op", SPECTRAL_OPS, ids=SPECTRAL_IDS)
@pytest.mark.parametrize("cap", [0.5, 1.5, 50.0])
def test_ddnm_plus_noise_adds_up_to_the_step_noise(op, cap):
    # DDNM+ (Wang et al. 2023, Eq. 19): y's noise passed on by pinv_capped, as a share of the
    # step's std (1 / cap per unit of gain), plus the fresh noise noise_left keeps, must give
    # white noise of the step's std again: P P^T / cap^2 + F F^T = I, exactly.
    shape = image_shape(op)
    y_shape = op.forward(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:]
    caps = torch.full((1,), cap, dtype=torch.float64)
    p = matrix_of(lambda r: op.pinv_capped(r, caps.expand(len(r))), y_shape)
    f = matrix_of(lambda z: op.noise_left(z, cap), shape)
    total = p @ p.T / cap**2 + f @ f.T
    assert torch.allclose(total, torch.eye(len(total), dtype=torch.float64), atol=1e-10)
    # The gain is capped: no direction passes more than cap times y's noise.
    assert float(torch.linalg.matrix_norm(p, ord=2)) <= cap * (1 + 1e-9)


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
    for bad in (1.5, math.nan):
        with pytest.raises(ValueError, match=r"must be x, y, w, h in whole pixels"):
            box_mask(8, 8, (bad, 0, 4, 4))
    for short in ((1, 2, 3), (1, 2, 3, 4, 5)):  # Python's "not enough values to unpack"
        with pytest.raises(ValueError, match=r"must be x, y, w, h in whole pixels"):
            box_mask(8, 8, short)
    m = stroke_mask(32, 32, generator=torch.Generator().manual_seed(0))
    assert 0 < (m == 0).sum() < 32 * 32
    # one stroke 46 px thick covers a 16 x 16 image (its diagonal is 22.6 px): drawing stops
    # there, after the stroke's four numbers, not after a hundred thousand strokes
    gen, same = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert not stroke_mask(16, 16, strokes=100_000, thickness=46, generator=gen).any()
    same.manual_seed(0), torch.rand(4, generator=same)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=same))
    with pytest.raises(ValueError, match="only 0"):
        Inpaint(torch.full((4, 4), 0.5))


def test_a_measurement_that_does_not_fit_is_refused_before_any_work(tiny_digits_model):
    """``solve`` checks y at the edge: a float ``N x C x H x W`` tensor of finite values, of the
    size the operator takes and of the shape it makes, restored to the model's channels, by an
    Operator (not its class), with a torch.Generator or none; each refusal a ValueError that
    says which, not an error from inside a network or an FFT (or NaN images returned)."""
    import diffvision

    model = diffvision.load(tiny_digits_model)  # 1 x 8 x 8 images
    y = torch.zeros(1, 1, 8, 8)
    for op, bad, message in [
        (Denoise(0.1), y[0], "y must be a float N x C x H x W tensor, not torch.float32 of sh"),
        (Denoise(0.1), y.long(), "not torch.int64 of shape (1, 1, 8, 8)"),
        (Denoise(0.1), y.clone().index_fill_(3, torch.tensor([2]), math.nan), "NaN or inf"),
        (Inpaint(box_mask(16, 16, (2, 2, 4, 4))), y, "mask (1 x 1 x 16 x 16) does not fit y of"),
        (Inpaint(torch.ones(1, 8)), y, "mask (1 x 1 x 1 x 8) does not fit y of shape (1, 1, 8, 8)"),
        (Inpaint(torch.ones(2, 1, 8, 8)), y, "it is H x W, or N x 1 x H x W with y's N"),
        (Denoise(0.1), torch.zeros(1, 3, 8, 8), "the Denoise restores 3-channel images from y"),
        (Colorize(), y, "the Colorize restores 3-channel images from y and the model makes 1-"),
        # a grey y is Colorize's; a 3-channel one was taken, each channel's mean "measured"
        (
            Colorize(),
            torch.zeros(1, 3, 8, 8),
            "y of shape (1, 3, 8, 8) is no measurement of the "
            "Colorize: it makes 1 x 8 x 8 from 3 x 8 x 8 images",
        ),
        (Denoise, y, "operator must be an Operator (e.g. Denoise(sigma)), not <class"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            solve(model, op, bad, solver="mmse" if isinstance(op, Denoise) else "ddnm", steps=2)
    tiled = TiledDenoiser(model, tile=8, overlap=2)
    with pytest.raises(ValueError, match="model makes 1-channel ones"):
        solve(tiled, Colorize(), torch.zeros(1, 1, 16, 16), solver="ddnm", steps=2)
    assert solve(model, Denoise(0.1), y, solver="mmse").shape == (1, 1, 8, 8)
    masks = torch.stack([box_mask(8, 8, (2, 2, 4, 4)), box_mask(8, 8, (0, 0, 3, 3))])[:, None]
    two = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kept = solve(model, Inpaint(masks), two * masks, solver="ddnm", steps=2)  # a mask each
    assert kept.shape == (2, 1, 8, 8) and torch.equal(kept * masks, two * masks)
    with pytest.raises(ValueError, match=r"generator must be a torch\.Generator or None, not 3"):
        solve(model, Denoise(0.1), y, solver="posterior", steps=2, generator=3)  # AttributeError
    for bad in (math.nan, -1.0, math.inf):  # NaN made NaN images
        with pytest.raises(ValueError, match=f"step_size must be a number >= 0, not {bad}"):
            solve(model, Inpaint(box_mask(8, 8, (2, 2, 4, 4))), y, solver="dps", step_size=bad)
    # posterior steps down from y's level, so it needs one above the model's floor (0.002)
    with pytest.raises(ValueError, match=r"noise level, 0.001, which must be above .* 0.002"):
        solve(model, Denoise(0.001), y, solver="posterior", steps=2)
    assert solve(model, Denoise(0.0021), y, solver="posterior", steps=2).isfinite().all()


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
    _, y = truth_and_y(prior, op, n=12)
    m, _ = exact_posterior(prior, op, y)
    opts = {"jump_length": 5, "jump_n_sample": 2} if solver == "repaint" else {}
    errors = {}
    for steps in (10, 40, 160):
        r = draws(prior, op, y, solver, steps, 3, **opts)
        # Pooled over the 12 measurements; the Monte-Carlo error of a mean of 250 (~1.2% of the
        # norm) adds to the method's bias in quadrature, below 0.1%.
        errors[steps] = relative_error(prior, r.mean, m)
        # Noise-free: the known part is kept exactly, and it has no uncertainty.
        assert torch.allclose(
            op.forward(r.samples.flatten(0, 1)), y.repeat(250, 1, 1, 1), atol=1e-9
        )
        if isinstance(op, Inpaint):
            assert float((r.std * op.mask).abs().max()) < 1e-9
    # The error falls towards the method's own bias (its value at 160 steps: measured 18.9% ddnm,
    # 12.8% repaint, 17.7% dps inpainting, 4.3% ddnm 2x super-resolution): for a first-order
    # method the gap shrinks ~4x from 10 to 40 steps (measured 3.6x-6.4x); we require 2x.
    gap10, gap40 = errors[10] - errors[160], errors[40] - errors[160]
    assert 0 < gap40 < 0.5 * gap10, errors
    # Filling the unseen part with the prior mean ignores the prior's correlations; the
    # solvers must do much better than that (measured: 0.13-0.41 of its error).
    naive = op.project(prior.mean.view(1, C, H, H), y)
    assert errors[160] < 0.5 * relative_error(prior, naive, m), errors


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


# Noisy measurements on which DDNM+ and repaint are compared with the exact posterior.
NOISY_OPS = [Denoise(0.2), Deblur(gaussian_kernel(3, 1.0), sigma=0.05)]
NOISY_IDS = ["denoise", "deblur"]


@pytest.mark.parametrize("op", NOISY_OPS, ids=NOISY_IDS)
def test_ddnm_plus_is_accurate_at_few_steps_and_drifts_with_many(prior, op):
    # DDNM+ cuts each step's fresh noise by what y's noise fills (Eq. 19). Measured errors of
    # the mean of 250 (pooled over 12 measurements; Monte-Carlo error ~1.2%): 10 steps 0.048
    # and 0.086; the same gain cap without that cut (fresh noise in full) 0.18 and 0.28. With
    # many steps the rule, which counts y's noise as fresh at every step, drifts towards y
    # (160 steps: 0.21 and 0.36), as the docstring states.
    _, y = truth_and_y(prior, op, n=12)
    m, _ = exact_posterior(prior, op, y)
    errors = {}
    for steps in (10, 160):
        errors[steps] = relative_error(prior, draws(prior, op, y, "ddnm", steps, 3).mean, m)
    assert errors[10] < 0.12 and errors[160] > 1.5 * errors[10], errors


@pytest.mark.parametrize("op", SPECTRAL_OPS, ids=SPECTRAL_IDS)
def test_observe_keeps_the_noise_at_the_level(op):
    # x = truth + level * noise is a draw of the forward process at `level`; so must be the
    # state after `observe` puts in what y = A truth + sigma_y * noise sees: error covariance
    # level^2 I. At level 0.3 with sigma_y 0.1 the blurs have directions on both sides of
    # rho = sigma_y / s = level. Tolerance: 5 standard errors of a covariance entry,
    # level^2 * sqrt(2 / n) at most.
    from diffvision.restore.solvers import observe

    n, level = 20000, 0.3
    g = torch.Generator().manual_seed(7)
    truth = torch.randn(1, *image_shape(op), generator=g, dtype=torch.float64)
    x = truth + level * torch.randn(n, *truth.shape[1:], generator=g, dtype=torch.float64)
    y = op.measure(truth.expand(n, -1, -1, -1), g)
    err = (observe(op, x, op.pinv(y), level, g) - truth).flatten(1)
    cov = err.T @ err / n / level**2
    assert float((cov - torch.eye(len(cov), dtype=torch.float64)).abs().max()) < 5 * (2 / n) ** 0.5


@pytest.mark.parametrize("op", NOISY_OPS, ids=NOISY_IDS)
def test_repaint_with_noise_converges_to_the_exact_posterior(prior, op):
    # repaint's replacement for noisy y (x's directions that y sees through noise rho below the
    # new level are set to A^+ y plus the missing sqrt(level^2 - rho^2) of noise) keeps the
    # noise of x at the sampler's level whatever the step count, so unlike DDNM+ it converges
    # as steps grow. For denoising it tends to the `posterior` solver, which is exact; for a
    # blur the prior couples seen and unseen directions and a small bias may stay.
    _, y = truth_and_y(prior, op, n=12)
    m, post = exact_posterior(prior, op, y)
    errors, spread = {}, {}
    for steps in (40, 160):
        r = draws(prior, op, y, "repaint", steps, 6, jump_n_sample=1)
        errors[steps] = relative_error(prior, r.mean, m)
        spread[steps] = float(r.std.pow(2).mean(0).sum() / post.diagonal().sum())
    # Measured: denoise 0.042 -> 0.013, deblur 0.046 -> 0.026 (a first-order method's error
    # falls ~4x from 40 to 160 steps; the Monte-Carlo error of a mean of 250, ~1.2%, adds in
    # quadrature). DDNM+ on the same problems: 0.14 -> 0.21 and 0.20 -> 0.36.
    assert errors[160] < 0.75 * errors[40] and errors[160] < 0.05, errors
    # Total posterior variance within 15% at 160 steps (measured 0.91 and 0.96; the
    # `posterior` sampler has 0.96 there), where DDNM+ keeps 0.5% and 1%.
    assert abs(1 - spread[160]) < 0.15, spread


def test_resampling_helps_noisy_inpainting(prior):
    # RePaint's replacement sets the seen pixels without regard to the unseen ones the sampler
    # drew beside them; resampling (going back up and down again) lets the two agree. For
    # noisy random-pixel inpainting this is why the restore command resamples twice. Measured
    # errors of the mean of 250 at 40 steps (jump length 10, pooled over 12 measurements):
    # 1 pass 0.283 and 0.274, 2 passes 0.242 and 0.244 (seeds 6 and 7); from seed to seed
    # these move by ~0.01, and the Monte-Carlo error of a mean of 250 adds < 0.001.
    op = Inpaint(random_mask(H, H, 0.5, torch.Generator().manual_seed(0)), sigma=0.3)
    _, y = truth_and_y(prior, op, n=12)
    m, _ = exact_posterior(prior, op, y)
    errors = {
        passes: relative_error(
            prior, draws(prior, op, y, "repaint", 40, 6, jump_n_sample=passes).mean, m
        )
        for passes in (1, 2)
    }
    assert errors[2] < 0.95 * errors[1], errors


def test_solvers_keep_float32_with_noisy_measurements(prior):
    # A network takes float32 only: no solver may hand its denoiser float64 (DDNM+'s caps and
    # the spectral filters are computed in float64).
    seen = set()

    def network(x, sigma):
        seen.add((x.dtype, sigma.dtype))
        return prior(x, sigma)

    truth = prior.sample(2, generator=torch.Generator().manual_seed(8)).float()
    for op in [
        Denoise(0.1),
        Inpaint(random_mask(H, H, 0.5, torch.Generator().manual_seed(0)), sigma=0.1),
        SuperResolution(2, "pool", sigma=0.1),
        SuperResolution(2, "bicubic", sigma=0.1),
        Deblur(gaussian_kernel(3, 1.0), sigma=0.1),
    ]:
        y = op.measure(truth, torch.Generator().manual_seed(9))
        for solver in ("ddnm", "repaint", "dps"):
            out = solve(network, op, y, solver=solver, steps=3, generator=torch.Generator())
            assert out.dtype == torch.float32, (type(op).__name__, solver)
    assert seen == {(torch.float32, torch.float32)}


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
    with pytest.raises(ValueError, match="ddpm, or ddim with eta > 0"):
        solve(prior, op, y, solver="ddnm", sampler="ddim")  # DDNM+ needs the step's noise
    with pytest.raises(ValueError, match="denoising"):
        solve(prior, Inpaint(box_mask(H, H, (0, 0, 2, 2))), y, solver="mmse")
    for n in (0, 1.5, math.inf):  # 1.5 and inf were TypeErrors from deep inside
        with pytest.raises(ValueError, match=f"n_samples must be an integer >= 1, not {n}"):
            solve(prior, op, y, solver="posterior", n_samples=n)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, not 2\.5"):
        solve(prior, op, y, solver="posterior", steps=2.5)
    with pytest.raises(
        ValueError, match=r"^1000000000000000000000000000000 draws of y \(.*\) needs at least"
    ):
        solve(prior, op, y, solver="posterior", n_samples=10**30)  # was an OverflowError
    with pytest.raises(ValueError, match=r"mmse gives one estimate.*use posterior"):
        solve(prior, op, y, solver="mmse", n_samples=2)
    for bad in (0, 1.5, True):  # counts: 1.5 was a TypeError from range(), True taken as 1
        with pytest.raises(ValueError, match=f"jump_length must be an integer >= 1, not {bad}"):
            solve(prior, op, y, solver="repaint", jump_length=bad)
    with pytest.raises(ValueError, match=r"jump_n_sample must be an integer >= 1, not 2\.5"):
        sampler_steps("repaint", 10, jump_n_sample=2.5)  # the progress bar's count too


def test_an_option_that_neither_the_solver_nor_its_sampler_takes_is_refused(prior):
    """``solve``'s options go to the method and through it to the sampler; a name neither takes
    is a ValueError before any work that names the solver, its sampler and what they take. It
    was the sampler's TypeError ("ddpm() got an unexpected keyword argument 'strength'"), and
    ``mmse`` dropped every option without a word."""
    noisy, clean = Denoise(0.1), Inpaint(box_mask(H, H, (2, 2, 3, 3)))
    _, y = truth_and_y(prior, noisy)
    calls = []
    for solver, op, options, message in [
        ("ddnm", noisy, {"strength": 0.5}, "solver ddnm (sampler ddpm) takes no option 'strength'"),
        (
            "mmse",
            noisy,
            {"sampler": "heun"},
            "solver mmse takes no option 'sampler'; it takes callback",
        ),
        ("sdedit", noisy, {"start": y}, "solver sdedit (sampler ddpm) takes no option 'start'"),
        ("dps", clean, {"sampler": "euler", "eta": 1.0}, "(sampler euler) takes no option 'eta'"),
        ("repaint", clean, {"jump_lenght": 2}, "takes no option 'jump_lenght'; it takes sampler,"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            solve(
                prior, op, y, solver=solver, steps=2, callback=lambda *a: calls.append(a), **options
            )
    assert calls == []  # refused before any step
    with pytest.raises(ValueError, match="sets the sampler's noise_filter itself"):
        solve(prior, noisy, y, solver="ddnm", noise_filter=lambda z, s, t: z)  # a duplicate
    # What the method or the chosen sampler takes still goes through.
    x = solve(prior, noisy, y, solver="posterior", steps=2, sampler="ddim", eta=1.0,
              callback=lambda *a: calls.append(a))  # fmt: skip
    assert x.shape == y.shape and len(calls) == 2
    assert torch.equal(
        solve(prior, noisy, y, solver="mmse", callback=print), solve(prior, noisy, y, solver="mmse")
    )


def test_warm_start_forgets_a_bad_start_from_high_noise_and_keeps_a_good_one_from_low(prior):
    op = Inpaint(box_mask(H, H, (2, 2, 4, 4)))
    x, y = truth_and_y(prior, op, n=12)
    m, _ = exact_posterior(prior, op, y)
    naive = op.project(prior.mean.view(1, C, H, H), y)  # a poor start: the prior mean in the hole

    def run(start, start_sigma=None):
        warm = {} if start is None else {"start": start, "start_sigma": start_sigma}
        return solve(
            prior,
            op,
            y,
            solver="ddnm",
            steps=40,
            n_samples=250,
            generator=torch.Generator().manual_seed(6),
            **warm,
        )

    # From sigma 10 (20 x the prior's std) the start's offset survives in E[x0 | x_sigma] with
    # weight ~ 0.25 / (0.25 + 100) < 0.3%, i.e. < 0.0014 of relative error (the start's is
    # 0.46): the result is the cold start's (error 0.204) or better (its 40 steps are finer),
    # up to Monte-Carlo error (< 0.001); measured 0.196.
    cold = relative_error(prior, run(None).mean, m)
    high = run(naive, 10.0)
    assert relative_error(prior, high.mean, m) < cold + 0.0025
    assert relative_error(prior, high.mean, m) < 0.5 * relative_error(prior, naive, m)
    assert torch.allclose(op.forward(high.samples.flatten(0, 1)), y.repeat(250, 1, 1, 1))
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


def test_sampler_steps_counts_the_callbacks_of_every_solver():
    # The restore command's progress bar has sampler_steps as its total: it must be the number
    # of sampler callbacks that solve makes, for every solver, K samples and a warm start.
    from diffvision.restore.solvers import SOLVERS

    pixelwise = GaussianDenoiser(torch.zeros(1, 4, 4).double(), torch.full((16,), 0.25))
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    cases = [(s, {}) for s in SOLVERS] + [
        ("repaint", {"jump_length": 3, "jump_n_sample": 4}),
        ("ddnm", {"start": torch.zeros_like(x), "start_sigma": 0.5}),
        ("repaint", {"start": torch.zeros_like(x), "jump_length": 2, "jump_n_sample": 2}),
    ]
    for solver, options in cases:
        noisy = solver in ("mmse", "posterior")
        op = Denoise(0.1) if noisy else Inpaint(box_mask(4, 4, (1, 1, 2, 2)))
        seen = []
        solve(pixelwise, op, op.forward(x), solver=solver, steps=7, n_samples=1 if noisy else 2,
              callback=seen.append, generator=torch.Generator().manual_seed(1),
              **options)  # fmt: skip
        assert len(seen) == sampler_steps(solver, 7, **options), (solver, options)
    # RePaint's defaults (jumps of 10, 10 passes): at 10 and 20 of 30 steps, 9 more passes of 10
    assert sampler_steps("repaint", 30) == 30 + 2 * 9 * 10


def test_the_noise_level_is_estimated_from_the_finest_diagonal_coefficients():
    """``estimate_sigma`` on an affine image plus white noise: Haar's finest diagonal
    coefficients are then the noise alone (0 on the affine part), so the estimate is the median
    of N = 3 * 64 * 64 absolute normals over 0.6745, whose relative standard error is
    1.167 / sqrt(N) = 1.05% (the sample median's asymptotic variance, 1 / (4 N f(m)^2) with
    f(m) = 2 phi(0.6745) the density of |z| at its median): within 4 standard errors for each
    of five draws. Blocks with a clipped pixel are left out, so an image half saturated gives
    the same estimate (all blocks pooled, it was near 0), as does an image whose other half is
    a hole under an inpainting mask; a noise-free affine image gives 0."""
    from diffvision.restore import estimate_sigma

    yy, xx = torch.meshgrid(
        torch.linspace(-0.5, 0.5, 128), torch.linspace(-0.3, 0.4, 128), indexing="ij"
    )
    ramp = (0.6 * xx - 0.4 * yy).double().expand(5, 3, 128, 128)
    assert float(estimate_sigma(ramp).abs().max()) < 1e-12
    sigma = 0.05
    noise = torch.randn(
        5, 3, 128, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    found = estimate_sigma(ramp + sigma * noise)
    tolerance = 4 * 1.167 / math.sqrt(3 * 64 * 64)
    assert found.shape == (5,) and ((found / sigma - 1).abs() < tolerance).all(), found
    saturated = (ramp + sigma * noise).clone()
    saturated[..., :, 64:] = 1.0  # the right half clipped at white: no noise left there
    assert torch.equal(estimate_sigma(saturated), estimate_sigma((ramp + sigma * noise)[..., :64]))
    for bad in (torch.zeros(3, 8, 8), torch.zeros(1, 1, 1, 8), "image"):
        with pytest.raises(ValueError, match="N x C x H x W tensor of at least 2 x 2 px"):
            estimate_sigma(bad)
    with pytest.raises(ValueError, match="images hold NaN or infinite values"):
        estimate_sigma(torch.full((1, 1, 4, 4), math.nan))
    # an inpainting mask: blocks with a pixel in the hole are left out (the hole's content
    # here is a checkerboard), so the estimate is that of the observed part alone
    holed = (ramp + sigma * noise).clone()
    holed[..., :, 64:] = torch.tensor([[0.5, -0.5], [-0.5, 0.5]], dtype=torch.float64).repeat(
        64, 32
    )
    observed = torch.ones(128, 128)
    observed[:, 64:] = 0
    assert torch.equal(estimate_sigma(holed, observed), estimate_sigma(holed[..., :64]))
    assert torch.equal(
        estimate_sigma(holed, observed.expand(5, 1, -1, -1)), estimate_sigma(holed, observed)
    )
    with pytest.raises(ValueError, match=re.escape("observed must be H x W or N x 1 x H x W")):
        estimate_sigma(holed, torch.ones(64, 64))
    with pytest.raises(ValueError, match="no 2 x 2 block of an image is observed whole"):
        estimate_sigma(holed, torch.zeros(128, 128))


def test_the_noise_level_of_8_bit_data_follows_the_noise_smoothly():
    """On 8-bit data every finest diagonal coefficient is a multiple of half a level, so the
    plain median moved in steps of 0.74 levels (2.22 for noise of sigma 2, 2.22 again for 2.5).
    The median of grouped data follows the noise: a flat 1024 x 1024 grey with white noise of
    sigma 1.5-10 levels, rounded, is estimated at the level of the same noise unrounded with
    rounding's own (1/12 level^2 per coefficient) added in quadrature, within 4 standard errors
    of a difference of two medians of N = 512^2 coefficients (sqrt(2) * 1.167 / sqrt(N)
    relative; an upper bound, as they share the noise), plus the even-spread assumption's
    error within a bin q = 0.5 level wide: at most q^2 |f'/f| / 32 in the median, with
    |f'/f| = m / sigma^2 at the median m = 0.6745 sigma (a normal's), i.e. 0.0078 / sigma^2
    relative. The estimate is the same from float32 pixels (their levels carry rounding), and
    grouped_median spreads the values tied at the median over their bin."""
    from diffvision.restore import estimate_sigma
    from diffvision.restore.noise_level import grouped_median

    n = 512**2
    noise = torch.randn(1, 1, 1024, 1024, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(3))  # fmt: skip
    for sigma in (1.5, 2, 2.5, 3, 4, 5, 7.3, 10):
        grey = 128 + sigma * noise
        unrounded = float(estimate_sigma(grey / 127.5 - 1)[0]) * 127.5
        rounded = estimate_sigma(grey.round() / 127.5 - 1) * 127.5
        expected = math.sqrt(unrounded**2 + 1 / 12)
        tolerance = (4 * math.sqrt(2) * 1.167 / math.sqrt(n) + 0.0078 / sigma**2) * expected
        assert abs(float(rounded[0]) - expected) < tolerance, (sigma, float(rounded[0]), expected)
        single = estimate_sigma((grey.round() / 127.5 - 1).float()) * 127.5
        assert abs(float(single[0] - rounded[0])) < 1e-4, (sigma, single, rounded)
    # bins [0.5, 1.5) and [1.5, 2.5) hold 2 and 3 of 6 values: the 3rd is a third into the second
    values = torch.tensor([2.0, 1, 3, 2, 1, 2], dtype=torch.float64)
    assert float(grouped_median(values)) == pytest.approx(1.5 + 1 / 3, abs=1e-12)
    assert float(grouped_median(torch.tensor([1.0, 2, 2, 2, 3]))) == pytest.approx(2.0)
    spread = torch.rand(101, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert grouped_median(spread) == spread.median()  # no ties: the median itself
    assert grouped_median(torch.tensor([0.0, 0, 0, 1])) == 0  # most of it no noise: none
    # an affine image's zeros made of float32 levels carry their rounding (6e-8): still none
    affine = torch.tensor([[178.0, 252], [58, 132]]).repeat(1, 3, 64, 64) / 127.5 - 1
    assert float(estimate_sigma(affine)[0]) == 0


def test_the_noise_level_is_taken_from_weak_texture_away_from_black_and_white():
    """Texture as fine as the noise, and noise cut short near white, no longer move the
    estimate: it is taken from the blocks whose neighbourhood holds no more across and down
    energy than noise does (Liu et al. 2013's selection, on Haar coefficients), of a level at
    least 2 sigma from black and white. Half an image with a texture of twice the noise's std
    on top of the noise (the plain median of all blocks: 1.43 sigma), and three quarters of one
    at 0.95, where noise of 0.1 is clipped at white in 31% of pixels and cut short in the rest
    (0.85 sigma): the estimate is the noise's sigma within 4 standard errors of a median of the
    flat part's coefficients (1.167 / sqrt(N), see the test above; its blocks next to the
    texture left out too)."""
    from diffvision.restore import estimate_sigma

    gen = torch.Generator().manual_seed(1)
    noise, texture = torch.randn(2, 1, 3, 256, 256, dtype=torch.float64, generator=gen)
    sigma = 0.04
    textured = sigma * noise
    textured[..., 128:] += 2 * sigma * texture[..., 128:]
    found = float(estimate_sigma(textured)[0]) / sigma
    assert abs(found - 1) < 4 * 1.167 / math.sqrt(3 * 128 * 62), found  # 128 - 2 block columns
    sigma = 0.1
    bright = sigma * noise
    bright[..., :192] += 0.95
    found = float(estimate_sigma(bright.clamp(-1, 1))[0]) / sigma
    assert abs(found - 1) < 4 * 1.167 / math.sqrt(3 * 128 * 30), found


def test_the_channel_mean_of_a_restoration_keeps_the_grey_spread_and_drops_the_colour():
    # Draws of a grey part g (the same in each channel) plus a colour part whose channels sum to
    # 0: each draw's channel mean is g exactly, so the grey's std is g's spread over the draws;
    # a stated part (a start's error, the same in each channel) is kept and added in quadrature.
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(6, 2, 1, 5, 7, generator=gen, dtype=torch.float64)
    colour = torch.randn(6, 2, 3, 5, 7, generator=gen, dtype=torch.float64)
    samples = g + colour - colour.mean(2, keepdim=True)
    stated = torch.full((2, 1, 5, 7), 0.3, dtype=torch.float64)  # as start_std broadcasts
    std = (samples.std(0).square() + stated.square()).sqrt()
    for given, added in ((stated, 0.09), (None, 0.0)):
        grey = Restoration(samples.mean(0), std if added else samples.std(0), samples, given)
        grey = grey.channel_mean()
        torch.testing.assert_close(grey.samples, g)
        torch.testing.assert_close(grey.mean, g.mean(0))
        torch.testing.assert_close(grey.std, (g.std(0).square() + added).sqrt())
        assert (grey.stated is None) == (given is None)
        if given is not None:
            torch.testing.assert_close(grey.stated, stated)
