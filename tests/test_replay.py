"""replay_factor against exact answers.

1. White Gaussian pixels under average pooling: ``y = pool(x)`` is again white, with variance
   ``v / f^2``, so the problem looks the same one measurement down (what the replay assumes).
   Given y, the exact posterior is ``A^+ y + (I - P) r`` with ``r ~ N(0, v I)`` (``P = A^+ A``,
   the block average). A sampler that scales that residual by ``c`` has, per pixel of the null
   space, error variance ``u (1 + c^2 / K)`` for its K-sample mean and sample variance ``c^2 u``
   (``u = v (1 - 1 / f^2)``). The factor that brings the RMS ratio to a calibrated K-sample
   posterior's ``sqrt(1 + 1/K)`` is then ``sqrt((1 / c^2 + 1 / K) / (1 + 1 / K))``, the same at
   every scale, and replay_factor must find it.
2. An oracle restoration of known error on a noisy deblurring problem: the replay's truth (y
   pooled) carries y's noise, pooled too, which replay_factor must take off.
3. Denoising white Gaussian pixels (variance v) at noise sigma: the exact posterior is
   ``N(v / (v + s^2) y, u)`` with ``u = v s^2 / (v + s^2)`` at noise s. A sampler that scales
   its spread by c is off by the same factor as in 1 at every noise level, so the recorrupted
   replay (at ``s = sigma sqrt(1 + a^2)``, against a truth with noise of variance
   ``sigma^2 (1 + 1 / a^2)``) must find it too.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
    stroke_mask,
)
from diffvision.restore.replay import (
    REPLAY_COPIES,
    REPLAY_DIRECTIONS,
    SHARPEN_FLOOR,
    NoReplayError,
    kernel_spread,
    pooled_blur_spectrum,
    replay_factor,
    replay_holes,
    replay_problem,
    replay_thins,
    replay_truth,
    scattered,
)
from diffvision.restore.starts import hole_copies

SIDE, VARIANCE = 64, 0.25  # the true images' side and per-pixel variance


def shrunk_posterior(c: float, k: int, generator: torch.Generator):
    """The exact white-prior posterior sampler with its spread scaled by c. The prior's variance
    at the restored side H is ``VARIANCE (H / SIDE)^2``: pooling by f divides it by f^2."""

    def run(operator, y):
        up = operator.pinv(y)
        v = VARIANCE * (up.shape[-1] / SIDE) ** 2
        z = torch.randn(k, *up.shape, generator=generator, dtype=up.dtype)
        many = operator.repeat(k)  # z's k copies of the batch (an inpainting replay's masks)
        residual = (z - many.pinv(many.forward(z.flatten(0, 1))).view_as(z)) * math.sqrt(v)
        samples = up + c * residual
        return Restoration(samples.mean(0), samples.std(0), samples)

    return run


BOX = Inpaint(box_mask(SIDE, SIDE, (24, 24, 16, 16)))  # replayed on 2 copies, 24 px left and right


@pytest.mark.parametrize("op", [SuperResolution(2, "pool"), BOX], ids=["superres", "inpaint"])
@pytest.mark.parametrize("c,k", [(1.0, 4), (0.5, 4), (0.5, 2), (2.0, 8)])
def test_replay_finds_the_known_overconfidence(c, k, op):
    gen = torch.Generator().manual_seed(0)
    images = 200
    x = torch.randn(images, 1, SIDE, SIDE, generator=gen, dtype=torch.float64) * VARIANCE**0.5
    factors = replay_factor(op, op.forward(x), shrunk_posterior(c, k, gen), k, gen).double()
    # One factor per image; their mean within 3 standard errors of the exact factor (the ratio
    # estimator's O(1 / pixels) bias is far below: 1024 pixels per image).
    exact = math.sqrt((1 / c**2 + 1 / k) / (1 + 1 / k))
    se = float(factors.std()) / math.sqrt(images)
    assert abs(float(factors.mean()) - exact) < 3 * se, (float(factors.mean()), exact, se)


@pytest.mark.parametrize("c,d", [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)])
def test_replay_with_a_stated_part_finds_the_known_overconfidence(c, d):
    # The mean errs by an extra N(0, e^2) beside its draws' (spread scaled by c), and the std
    # adds e / d in quadrature as its stated part (as a warm start's kept fill error is): the
    # factor that brings the map to the mixed reference of uncertainty_calibration(stated=) is
    # sqrt((e^2 + (1 + c^2/K) sigma^2) / (e^2 / d^2 + (1 + 1/K) c^2 sigma^2)), 1 for c = d = 1.
    gen = torch.Generator().manual_seed(6)
    k, e, images = 4, 0.3, 200
    op = SuperResolution(2, "pool")
    x = torch.randn(images, 1, SIDE, SIDE, generator=gen, dtype=torch.float64) * VARIANCE**0.5
    draws = shrunk_posterior(c, k, gen)

    def run(operator, y):
        out = draws(operator, y)
        extra = torch.randn(out.mean.shape, generator=gen, dtype=out.mean.dtype) * e
        stated = torch.full_like(out.std, e / d)
        std = (out.std.square() + stated.square()).sqrt()
        return Restoration(out.mean + extra, std, out.samples, stated)

    factors = replay_factor(op, op.forward(x), run, k, gen).double()
    sigma2 = VARIANCE / 4 * (1 - 1 / 4)  # the replay restores side SIDE / 2 from 2x2 means
    exact = math.sqrt(
        (e**2 + (1 + c**2 / k) * sigma2) / (e**2 / d**2 + (1 + 1 / k) * c**2 * sigma2)
    )
    se = float(factors.std()) / math.sqrt(images)
    assert abs(float(factors.mean()) - exact) < 3 * se, (float(factors.mean()), exact, se)


@pytest.mark.parametrize("c,k,a", [(1.0, 4, 0.5), (0.5, 4, 2.0), (0.5, 2, 1.0), (2.0, 8, 0.25)])
def test_denoising_replay_finds_the_known_overconfidence(c, k, a):
    gen = torch.Generator().manual_seed(5)
    images, sigma = 200, 0.3
    x = torch.randn(images, 1, 32, 32, generator=gen, dtype=torch.float64) * VARIANCE**0.5
    op = Denoise(sigma)

    def run(operator, y):  # the exact posterior at the operator's noise, spread scaled by c
        s2 = operator.sigma**2
        u = VARIANCE * s2 / (VARIANCE + s2)
        z = torch.randn(k, *y.shape, generator=gen, dtype=y.dtype)
        samples = VARIANCE / (VARIANCE + s2) * y + c * math.sqrt(u) * z
        return Restoration(samples.mean(0), samples.std(0), samples)

    y = op.measure(x, gen)
    factors = replay_factor(op, y, run, k, gen, recorrupt=a).double()
    exact = math.sqrt((1 / c**2 + 1 / k) / (1 + 1 / k))
    se = float(factors.std()) / math.sqrt(images)
    assert abs(float(factors.mean()) - exact) < 3 * se, (float(factors.mean()), exact, se)


@pytest.mark.parametrize("c,k,a", [(1.0, 4, 0.5), (0.5, 2, 1.0), (2.0, 8, 2.0)])
def test_grey_denoising_replay_finds_the_known_overconfidence(c, k, a):
    # A grey image (white pixels of variance v) in all three channels with one noise of sigma,
    # restored, as the command restores a grey input with a colour model, at sqrt(3) sigma per
    # channel into the channels' mean: here the exact posterior of the grey given y's channel
    # mean (noise variance operator.sigma^2 / 3, in the replay too: its noise is drawn per
    # channel), spread scaled by c. replay_factor(grey=True) compares channel means, whose
    # truth's noise is a third of a channel's, and must find the factor of the white case.
    gen = torch.Generator().manual_seed(7)
    images, sigma = 200, 0.3
    x = torch.randn(images, 1, 32, 32, generator=gen, dtype=torch.float64) * VARIANCE**0.5
    y = (x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)).expand(-1, 3, -1, -1)
    op = Denoise(math.sqrt(3) * sigma)

    def run(operator, y):
        s2 = operator.sigma**2 / 3
        u = VARIANCE * s2 / (VARIANCE + s2)
        z = torch.randn(k, images, 1, 32, 32, generator=gen, dtype=y.dtype)
        samples = VARIANCE / (VARIANCE + s2) * y.mean(1, keepdim=True) + c * math.sqrt(u) * z
        return Restoration(samples.mean(0), samples.std(0), samples)

    factors = replay_factor(op, y, run, k, gen, recorrupt=a, grey=True).double()
    exact = math.sqrt((1 / c**2 + 1 / k) / (1 + 1 / k))
    se = float(factors.std()) / math.sqrt(images)
    assert abs(float(factors.mean()) - exact) < 3 * se, (float(factors.mean()), exact, se)


def test_denoising_replay_splits_the_noise_into_independent_parts():
    # y2 - x and truth - x: Gaussian, variances sigma^2 (1 + a^2) and sigma^2 (1 + 1 / a^2),
    # uncorrelated (each within 5 SE over 10^6 values); the operator's noise is y2's.
    gen = torch.Generator().manual_seed(6)
    sigma, a, n = 0.2, 0.5, 1_000_000
    x = torch.rand(1, 1, 1000, 1000, generator=gen, dtype=torch.float64)
    y = Denoise(sigma).measure(x, gen)
    again, y2, truth, noise = replay_problem(Denoise(sigma), y, gen, recorrupt=a)
    d2, dt = (y2 - x).flatten(), (truth - x).flatten()
    v2, vt = sigma**2 * (1 + a**2), sigma**2 * (1 + 1 / a**2)
    assert again.sigma**2 == pytest.approx(v2) and noise == pytest.approx(vt)
    for d, v in ((d2, v2), (dt, vt)):
        assert abs(float(d.var()) - v) < 5 * v * math.sqrt(2 / n)
    assert abs(float((d2 * dt).mean())) < 5 * math.sqrt(v2 * vt / n)
    with pytest.raises(ValueError, match="needs noise"):
        replay_problem(Denoise(0.0), y, gen)


@pytest.mark.parametrize("sharpen", [False, True])
def test_replay_takes_the_truths_noise_off(sharpen):
    gen = torch.Generator().manual_seed(1)
    sigma, tau, stated, k, pool = 0.1, 0.05, 0.02, 4, 2
    op = Deblur(gaussian_kernel(7, 1.0), sigma=sigma)
    x = torch.randn(8, 3, SIDE, SIDE, generator=gen, dtype=torch.float64) * 0.5
    clean = op.forward(x)
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)
    truth = replay_truth(op, clean, pool, sharpen)[0]  # its clean part: the filter is linear

    def oracle(operator, y2):  # knows the truth's clean part; errs by tau, states `stated`
        mean = truth + tau * torch.randn(truth.shape, generator=gen, dtype=truth.dtype)
        std = torch.full_like(mean, stated)
        return Restoration(mean, std, torch.stack([mean, mean]))

    factors = replay_factor(op, y, oracle, k, gen, pool, sharpen).double()
    expected = tau / stated / math.sqrt(1 + 1 / k)
    if not sharpen:
        # The replay's mean squared error is tau^2 plus the pooled noise's (sigma / pool)^2 =
        # tau^2, which replay_factor takes off. Relative SE of the difference: sqrt(2 / n) * 2
        # (tau^2 + (sigma / pool)^2 over tau^2), halved for the square root.
        tolerance = 3 * math.sqrt(2 / truth.numel()) * 2 / 2 * expected
    else:  # the sharpened noise is larger and correlated: the SE from the 8 images' spread
        tolerance = 3 * float(factors.std()) / math.sqrt(len(factors))
    factor = float(factors.mean())
    assert abs(factor - expected) < tolerance, (factor, expected, tolerance)


def test_replay_truth():
    y = torch.randn(2, 3, 33, 34)
    assert replay_truth(SuperResolution(4, sigma=0.1), y)[0].shape == (2, 3, 32, 32)
    assert replay_truth(SuperResolution(4, sigma=0.1), y)[1] == pytest.approx(0.01)
    # a 2 px Gaussian blur: pooled by 4 (at most half a pixel of blur left), noise / 16; by
    # default that blur is undone (the two tests below), the noise amplified
    wide = torch.randn(2, 3, 66, 68)
    blur = Deblur(gaussian_kernel(13, 2.0), sigma=0.1)
    truth, noise = replay_truth(blur, wide, sharpen=False)
    assert torch.equal(truth, F.avg_pool2d(wide, 4)) and noise == pytest.approx(0.01 / 16)
    sharp, more = replay_truth(blur, wide)
    assert sharp.shape == truth.shape and more > noise
    assert replay_truth(Deblur(torch.ones(1, 1)), y)[0].shape == y.shape  # no blur: y itself
    assert kernel_spread(gaussian_kernel(41, 2.0)) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="smaller than the factor"):
        replay_truth(SuperResolution(4), torch.zeros(1, 1, 3, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        replay_truth(Deblur(gaussian_kernel(13, 2.0)), torch.zeros(1, 1, 40, 40))
    with pytest.raises(ValueError, match="only SuperResolution and Deblur"):
        replay_truth(Inpaint(torch.ones(8, 8)), y)


def test_inpainting_replay_hides_copies_of_the_hole_where_y_is_the_truth():
    y = BOX.forward(torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3)))
    again, y2, truth, noise = replay_problem(BOX, y)
    hole = BOX.mask[0, 0] == 0
    copies = torch.from_numpy(replay_holes(hole.numpy()))
    assert int(copies.sum()) == REPLAY_COPIES * 16 * 16 and not bool((copies & hole).any())
    assert torch.equal(copies, hole.roll(24, 1) | hole.roll(-24, 1))  # left and right first
    assert int(torch.from_numpy(replay_holes(hole.numpy(), 8)).sum()) == 8 * 16 * 16
    assert torch.equal(again.mask[0, 0] == 0, hole | copies) and noise == 0
    assert torch.equal(y2, y * again.mask) and bool((y2[..., copies] == 0).all())
    assert bool(truth[..., hole].isnan().all()) and torch.equal(truth[..., ~hole], y[..., ~hole])
    # random pixels: the copies overlap, so only the first is hidden (y known on all of it)
    holes = random_mask(SIDE, SIDE, 0.5, torch.Generator().manual_seed(0)) == 0
    first = hole_copies(holes.numpy(), REPLAY_DIRECTIONS)[0]
    assert (replay_holes(holes.numpy()) == first).all()
    with pytest.raises(NoReplayError, match="noisy inpainting"):
        replay_problem(Inpaint(BOX.mask, sigma=0.1), y)
    with pytest.raises(NoReplayError, match="no room"):  # nothing observed to hide
        replay_problem(Inpaint(torch.zeros(SIDE, SIDE)), y)
    with pytest.raises(NoReplayError, match="no hole"):
        replay_problem(Inpaint(torch.ones(SIDE, SIDE)), y)


def _mean_gap(missing, where):
    """Mean over ``where`` of the distance to the nearest pixel not ``missing``, by brute force
    (the rule's own reference: no distance transform)."""
    seen = np.argwhere(~missing)
    points = np.argwhere(where)
    d2 = ((points[:, None, :] - seen[None, :, :]) ** 2).sum(-1).min(1)
    return float(np.sqrt(d2).mean())


def test_inpainting_replay_thins_a_scattered_hole_to_its_sparseness_and_keeps_a_box_whole():
    # 50% random pixels of a 128 px square: the one copy hides half the observed pixels (a
    # 75%-missing replay), so it is thinned until its mean gap is within 1% of the hole's;
    # a box's and strokes' copies are as sparse as the hole already and stay whole.
    side, gen = 128, torch.Generator().manual_seed(0)
    holes = {
        "random": random_mask(side, side, 0.5, gen) == 0,
        "box": box_mask(side, side, (48, 48, 32, 32)) == 0,
        "strokes": stroke_mask(side, side, generator=gen) == 0,
    }
    for name, hole in holes.items():
        hole = hole.numpy()
        whole = replay_holes(hole, min_pixels=hole.size)  # no thinning: too few would be left
        held = replay_holes(hole, min_pixels=256)
        assert not (held & ~whole).any() and (replay_holes(hole, min_pixels=256) == held).all()
        target = _mean_gap(hole, hole)
        if name == "random":
            assert _mean_gap(hole | whole, whole) > 1.1 * target  # exact: 1.19 vs 1.03
            assert abs(_mean_gap(hole | held, held) - target) <= 0.01 * target
            # halved 3 times: 1/2 and 1/4 are 4.1% and 1.6% off, 1/8 0.6%, so not to 1/16
            assert abs(held.sum() / whole.sum() - 1 / 8) < 0.02 and held.sum() >= 256
            assert (replay_holes(hole, min_pixels=held.sum() + 1) != held).any()  # the floor
        else:
            assert (held == whole).all() and whole.sum() > hole.sum() / 2
        assert replay_thins(Inpaint(~torch.from_numpy(hole))) == (name == "random")  # to 1/4
        assert scattered(Inpaint(~torch.from_numpy(hole))) == (name == "random")
    small = random_mask(16, 16, 0.5, gen)  # a copy of 64 px: below the floor
    assert replay_holes(small.numpy() == 0).any() and not replay_thins(Inpaint(small))
    assert scattered(Inpaint(small))  # but scattered all the same: no floor
    assert not scattered(Inpaint(box_mask(16, 16, (4, 4, 4, 4))))
    both = torch.stack([~holes["random"], ~holes["box"]])[:, None]  # a batch: every image's
    assert not replay_thins(Inpaint(both)) and replay_thins(Inpaint(both[:1]))
    assert not scattered(Inpaint(both)) and scattered(Inpaint(both[:1]))


def test_inpainting_replay_leaves_an_image_with_no_hole_as_it_is():
    # A batch of a boxed image and one with no hole: copies are hidden in the first only, and
    # the second, whose std is zero everywhere, gets the factor 1 (nothing to scale).
    masks = torch.stack([BOX.mask[0], torch.ones(1, SIDE, SIDE)])
    op = Inpaint(masks)
    gen = torch.Generator().manual_seed(4)
    y = op.forward(torch.randn(2, 1, SIDE, SIDE, generator=gen, dtype=torch.float64))
    again = replay_problem(op, y)[0]
    assert int((again.mask[0] == 0).sum()) == (1 + REPLAY_COPIES) * 16 * 16
    assert bool((again.mask[1] == 1).all())
    factors = replay_factor(op, y, shrunk_posterior(0.5, 4, gen), 4, gen)
    assert float(factors[1]) == 1.0 and float(factors[0]) > 1.2  # exact: 1.84, 512 pixels
    with pytest.raises(ValueError, match="zero everywhere"):  # nothing in any image
        replay_factor(op, y, lambda o, m: Restoration(m, torch.zeros_like(m), None), 4, gen)


def test_replay_needs_samples_and_room():
    with pytest.raises(ValueError, match="k >= 2"):
        replay_factor(SuperResolution(2), torch.zeros(1, 1, 8, 8), None, 1)
    # NoReplayError comes before the solver runs (run=None would fail): the truth, y, is 8 px
    with pytest.raises(NoReplayError, match=r"\(8 x 8\) is smaller than a tile \(9 px\)"):
        replay_factor(SuperResolution(2), torch.zeros(1, 1, 8, 8), None, 2, min_size=9)
    # sizes said width x height, as the command's report says them (they were height x width)
    with pytest.raises(NoReplayError, match=r"the replay's image \(12 x 8\) is smaller"):
        replay_factor(SuperResolution(2), torch.zeros(1, 1, 8, 12), None, 2, min_size=9)
    with pytest.raises(NoReplayError, match=r"y \(40 x 12\) pooled by 4 is smaller than the"):
        replay_problem(Deblur(gaussian_kernel(5, 1.0)), torch.zeros(1, 1, 12, 40), scale=4)
    with pytest.raises(ValueError, match=r"scale must be an integer >= 1, not 1\.5"):
        replay_problem(Deblur(gaussian_kernel(5, 1.0)), torch.zeros(1, 1, 32, 32), scale=1.5)
    with pytest.raises(ValueError, match=r"k >= 2 samples, not 2\.5"):  # was taken
        replay_factor(SuperResolution(2), torch.zeros(1, 1, 8, 8), None, 2.5)
    for operator in (Colorize(), Denoise(0.0)):  # no replay: NoReplayError too
        with pytest.raises(NoReplayError):
            replay_factor(operator, torch.zeros(1, 1, 8, 8), None, 2)


@pytest.mark.parametrize("kernel", [gaussian_kernel(13, 2.0), motion_kernel(9, 30.0)])
def test_pooled_blur_spectrum_is_the_kernel_spectrum_at_a_fraction_of_the_frequency(kernel):
    # Pooling by p maps the fine frequency j / (p H) to the coarse j / H: the blur left in the
    # pooled image is the kernel's spectrum on a grid p times finer, at its lowest H x W
    # frequencies (negative ones wrapped). Deblur's own FFT spectrum of the p-times larger image
    # is that grid, so the two agree to rounding; at p = 1 it is Deblur's spectrum itself.
    h, w, p = 24, 20, 4
    fine = torch.fft.fft2(torch.fft.irfft2(Deblur(kernel)._spectrum((h * p, w * p), "cpu"),
                                           s=(h * p, w * p)))  # fmt: skip
    rows = [j if j < h // 2 else h * p - (h - j) for j in range(h)]
    cols = [j if j < w // 2 else w * p - (w - j) for j in range(w)]
    expected = fine[rows][:, cols]
    torch.testing.assert_close(pooled_blur_spectrum(kernel, p, (h, w)), expected)
    same = torch.fft.fft2(torch.fft.irfft2(Deblur(kernel)._spectrum((h, w), "cpu"), s=(h, w)))
    torch.testing.assert_close(pooled_blur_spectrum(kernel, 1, (h, w)), same)


def test_sharpened_truth_undoes_the_blur_left_in_pooled_y():
    # A cosine of fine frequency f, blurred (circularly) by a symmetric kernel, is the cosine
    # times K(f), K the kernel's DTFT; pooling is linear and shift-invariant on the coarse grid,
    # so y pooled is K(f) times x pooled, exactly. The sharpening filter conj(K) / (|K|^2 + lam)
    # at the coarse frequency p f must then give K^2 / (K^2 + lam) times x pooled, lam =
    # SHARPEN_FLOOR without noise: what a filter aligned to the wrong frequency would miss.
    side, p = 64, 4
    kernel = gaussian_kernel(13, 2.0)
    op = Deblur(kernel)
    r = torch.arange(side, dtype=torch.float64)
    for a, b in [(1, 2), (3, 0), (2, -5)]:  # cycles per image along rows, columns
        x = torch.cos(2 * math.pi * (a * r[:, None] + b * r[None, :]) / side)[None, None]
        taps = torch.arange(13, dtype=torch.float64) - 6
        phase = 2 * math.pi * (a * taps[:, None] + b * taps[None, :]) / side
        gain = float((op.kernel * torch.cos(phase)).sum())  # K(f), real for a symmetric kernel
        ideal = F.avg_pool2d(x, p)
        torch.testing.assert_close(replay_truth(op, op.forward(x), p, False)[0], gain * ideal)
        sharp, noise = replay_truth(op, op.forward(x), p, sharpen=True)
        torch.testing.assert_close(sharp, gain**2 / (gain**2 + SHARPEN_FLOOR) * ideal)
        assert noise == 0


def test_sharpened_truth_states_the_noise_it_carries():
    # y pure noise of std sigma: pooled by p it is white with variance sigma^2 / p^2, and the
    # sharpening filter G leaves sigma^2 / p^2 mean |G|^2 per pixel (Parseval, circular). The
    # per-image mean squares average to it within 3 standard errors (over 64 images).
    sigma, p, n = 0.1, 4, 64
    op = Deblur(gaussian_kernel(13, 2.0), sigma=sigma)
    y = sigma * torch.randn(n, 1, 64, 64, generator=torch.Generator().manual_seed(3),
                            dtype=torch.float64)  # fmt: skip
    truth, noise = replay_truth(op, y, p, sharpen=True)
    per_image = truth.square().flatten(1).mean(1)
    se = float(per_image.std()) / math.sqrt(n)
    assert abs(float(per_image.mean()) - noise) < 3 * se, (float(per_image.mean()), noise, se)
    assert noise > sigma**2 / p**2  # the filter amplifies the noise it sharpens
