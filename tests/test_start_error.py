"""The inpainting fill's own error (``restore.starts.start_error_std``), against the error it
really makes on a stationary Gaussian random field, and how ``solve`` adds it to the spread of
warm-started draws."""

from functools import partial

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from diffvision.analytic import GaussianDenoiser
from diffvision.restore import (
    Deblur,
    Inpaint,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    random_mask,
    solve,
    stroke_mask,
)
from diffvision.restore.solvers import Restoration
from diffvision.restore.starts import (
    _kept_error2,
    classical_start,
    hole_copies,
    inpaint_start,
    kept_gain,
    start_error_std,
)
from diffvision.restore.tiles import solve_tiled


def stationary_field(n: int, size: int, length: float, seed: int) -> torch.Tensor:
    """``n x 1 x size x size`` draws of a periodic Gaussian random field, std 0.5: white noise
    blurred by a Gaussian of std ``length`` px, circularly, so every pixel has the same
    statistics."""
    white = torch.randn(n, 1, size, size, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    blur = torch.exp(-2 * (torch.pi * length) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    x = torch.fft.ifft2(torch.fft.fft2(white) * blur).real
    return (0.5 * x / blur.square().mean().sqrt()).float()


@pytest.mark.parametrize("fill", ["blend", "biharmonic"])
@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_start_error_matches_the_fill_error_on_a_stationary_field(sigma, fill):
    # On a stationary field the copies of the hole see the same statistics as the hole, so the
    # estimated variance must match the fill's mean squared error, at the border of the hole
    # (~0.0012 with sigma 0) and at its centre (~0.019) alike. With noise, the held-out pixels
    # of y carry it on top of the fill's error, which the estimate takes off. 400 fields; the
    # per-field differences give the standard error; 3 of them allowed (measured for the
    # biharmonic fill: 1.7 at sigma 0, and -1.3 with 1600 fields: no bias to see). The blend's
    # weights are fitted on the same copies its error is measured on; with 2 free weights over
    # ~500 pixels that optimism is far below the standard error.
    n = 400
    x = stationary_field(n, 48, 3.0, seed=0)
    op = Inpaint(box_mask(48, 48, (20, 20, 8, 8)), sigma)  # copies 12 px away: inside, apart
    y = op.measure(x, torch.Generator().manual_seed(1))
    std = start_error_std(op, y, fill)
    assert std.shape == (n, 1, 48, 48) and std[op.mask.expand_as(std) == 1].abs().max() == 0
    hole = op.mask[0, 0] == 0
    estimated = std[:, 0][:, hole].double().square()
    true = (classical_start(op, y, fill) - x)[:, 0][:, hole].double().square()
    distance = torch.from_numpy(distance_transform_edt(hole.numpy()))[hole]
    for where in (distance < 1.5, distance >= 2.5, distance > 0):
        diff = estimated[:, where].mean(1) - true[:, where].mean(1)
        assert abs(float(diff.mean())) < 3 * float(diff.std()) / n**0.5
    ratio = float(true[:, distance >= 2.5].mean() / true[:, distance < 1.5].mean())
    assert ratio > 2  # the profile the estimate had to follow is far from flat (2.8-15)


def test_start_error_needs_a_hole_with_room_around_it():
    y = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="no estimate"):
        start_error_std(Deblur(gaussian_kernel(3, 1.0)), y)
    everything = Inpaint(torch.zeros(16, 16))
    with pytest.raises(ValueError, match="no observed pixels"):
        start_error_std(everything, y)
    for fill in ("biharmonic", "telea"):  # the fill alone, too (scikit-image's error was cryptic)
        with pytest.raises(ValueError, match="covers the whole image"):
            classical_start(everything, y, fill)
    assert start_error_std(Inpaint(torch.ones(16, 16)), y).abs().max() == 0  # no hole


def test_solve_adds_the_start_error_to_the_draws_spread():
    pixelwise = GaussianDenoiser(torch.zeros(1, 4, 4).double(), torch.full((16,), 0.25))
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    op = Inpaint(box_mask(4, 4, (1, 1, 2, 2)))
    y, start = op.forward(x), torch.zeros_like(x)
    extra = torch.rand(1, 1, 4, 4, dtype=torch.float64) * (op.mask == 0)

    def run(**more):
        gen = torch.Generator().manual_seed(2)
        return solve(pixelwise, op, y, solver="ddnm", steps=5, n_samples=8, start=start,
                     start_sigma=0.3, generator=gen, **more)  # fmt: skip

    spread, both = run(), run(start_std=extra)
    assert torch.equal(both.mean, spread.mean)
    assert torch.allclose(both.std.square(), spread.std.square() + extra.square())
    assert spread.stated is None and torch.equal(both.stated, extra)  # what the std added
    with pytest.raises(ValueError, match="pass start too"):
        solve(pixelwise, op, y, n_samples=2, start_std=extra)
    # Whole images by tiles: the estimate is cut to the window around the hole with the start.
    big = Inpaint(box_mask(24, 24, (10, 10, 3, 2)))
    xb = torch.randn(1, 1, 24, 24, dtype=torch.float64)
    extra = torch.rand(1, 1, 24, 24, dtype=torch.float64) * (big.mask == 0)
    tiled = solve_tiled(pixelwise, big, big.forward(xb), tile=4, overlap=2, solver="ddnm",
                        steps=5, n_samples=4, start=torch.zeros_like(xb), start_sigma=0.3,
                        start_std=extra)  # fmt: skip
    assert torch.all(tiled.std >= extra) and torch.all(tiled.std[big.mask == 1] == 0)
    assert torch.equal(tiled.stated, extra)  # pasted back whole: zero outside the window


def test_named_starts_are_made_from_the_whole_measurement():
    # solve(start="classical" | a fill, start_std="estimate") gives exactly what passing the
    # tensors made by restore.starts gives; solve_tiled makes them from the whole of y before it
    # cuts the window around the hole, so the copies of the hole lie outside that window.
    pixelwise = GaussianDenoiser(torch.zeros(1, 8, 8).double(), torch.full((64,), 0.25))
    x = stationary_field(1, 48, 3.0, seed=5).double()
    op = Inpaint(box_mask(48, 48, (20, 20, 8, 8)))
    y = op.forward(x)

    def run(how, **start):
        gen = torch.Generator().manual_seed(3)
        return how(pixelwise, op, y, solver="ddnm", steps=4, n_samples=3, start_sigma=0.3,
                   generator=gen, **start)  # fmt: skip

    tiled = partial(solve_tiled, tile=8, overlap=2)
    fill, std = inpaint_start(op, y, "blend")  # a box: the fill's whole error
    named = run(tiled, start="blend", start_std="estimate")
    given = run(tiled, start=fill, start_std=std)
    assert torch.equal(named.mean, given.mean) and torch.equal(named.std, given.std)
    assert bool((named.std[op.mask.expand_as(named.std) == 0] > 0).all())
    plain = run(tiled, start="classical")
    assert torch.equal(plain.mean, run(tiled, start=classical_start(op, y)).mean)
    sr = SuperResolution(2)  # "classical": the operator's own start, here bicubic upscaling
    ys = sr.forward(x)
    gen = torch.Generator().manual_seed(4)
    a = tiled(pixelwise, sr, ys, steps=3, start="classical", generator=gen)
    gen = torch.Generator().manual_seed(4)
    b = tiled(pixelwise, sr, ys, steps=3, start=classical_start(sr, ys), generator=gen)
    assert torch.equal(a, b)
    for bad, match in [
        ({"start": "median"}, "start must be a tensor"),
        ({"start": "telea", "operator": sr}, "start must be a tensor"),  # fills: inpainting
        ({"start": fill, "start_std": "estimate"}, "named start of inpainting"),
        ({"start": "classical", "start_std": "guess"}, "named start of inpainting"),
        ({"start": "classical", "start_std": "estimate", "operator": sr}, "named start"),
    ]:
        where = bad.pop("operator", op)
        with pytest.raises(ValueError, match=match):
            solve(pixelwise, where, where.forward(x), steps=2, n_samples=2, **bad)


def test_the_estimate_keeps_the_whole_error_of_a_box_and_strokes_but_not_of_random_pixels():
    # solve(start_std="estimate") states the fill's whole error where the hole is a box or
    # strokes, and the part a start at start_sigma keeps where it is scattered (random pixels,
    # `scattered`): what the photos' maps measured (bench/results/inpaint_map_*). The two
    # differ on each of these holes (the test fails if either is used for both).
    pixelwise = GaussianDenoiser(torch.zeros(1, 8, 8).double(), torch.full((64,), 0.25))
    x = stationary_field(1, 48, 3.0, seed=5).double()
    gen = torch.Generator().manual_seed(1)
    for mask, only_kept in [
        (box_mask(48, 48, (20, 20, 8, 8)), False),
        (stroke_mask(48, 48, 2, 3, generator=gen), False),
        (random_mask(48, 48, 0.5, gen), True),
    ]:
        op = Inpaint(mask)
        y = op.forward(x)
        out = solve_tiled(pixelwise, op, y, tile=8, overlap=2, solver="ddnm", steps=2,
                          n_samples=2, start="biharmonic", start_sigma=0.2,
                          start_std="estimate")  # fmt: skip
        whole, kept = start_error_std(op, y), start_error_std(op, y, kept=0.2)
        assert not torch.allclose(whole, kept)
        assert torch.equal(out.stated, (kept if only_kept else whole).expand_as(out.stated))


def test_kept_gain_of_white_noise_is_its_wiener_gain():
    # White noise of variance v has the flat spectrum P = v, and the Hann-windowed periodogram,
    # divided by the window's energy, has expectation exactly v at every frequency; so the gain
    # is v / (v + level^2) up to the ring averages' sampling error. Each ring averages `count`
    # frequencies of 3 channels, each an exponential variate of SD v; under Hann's window the
    # periodograms one and two bins apart correlate by 4/9 and 1/36 per axis, which inflates a
    # mean's variance by (1 + 8/9 + 2/36)^2 = 3.78: SE v / sqrt(3 count / 3.78). The gain read
    # between two rings mixes them, so the largest SE of the three nearest counts; 5 SE allowed.
    # Noise of std s taken off leaves P = v - s^2. Frequency 0 (the mean) is kept whole.
    v, level, size = 0.04, 0.3, 96
    x = torch.randn(3, size, size, generator=torch.Generator().manual_seed(0)).double()
    for noise in (0.0, 0.1):
        gain = kept_gain((v**0.5 * x).numpy(), level, noise)
        assert gain.shape == (size, size) and gain[0, 0] == 1
        f = np.fft.fftfreq(size)
        radius = np.hypot(f[:, None], f[None, :])
        p = level**2 * gain / (1 - np.where(radius > 0, gain, 0))  # the spectrum behind it
        ring = np.minimum((radius / radius.max() * 32).astype(int), 31)
        count = np.bincount(ring[radius > 0], minlength=32)
        se = v / np.sqrt(3 * np.maximum(count, 1) / 3.78)
        worst = np.maximum(se[ring], se[np.minimum(ring + 1, 31)])
        worst = np.maximum(worst, se[np.maximum(ring - 1, 0)])
        off = np.abs(p - (v - noise**2))[radius > 0] / worst[radius > 0]
        assert off.max() < 5, off.max()  # measured 3.3


def test_kept_error_is_the_filtered_error_less_the_filtered_noise():
    # _kept_error2 filters each copy's error image by the gain. With a gain of 1 it is the error
    # itself; with any gain, an error that is y's white noise alone (an exact fill) must come
    # out at 0 on average: the filtered noise's variance at a pixel is noise^2 times the
    # copy's indicator convolved with the squared impulse response. Random-pixel copies make
    # that far from noise^2 sum(g^2) (a copy covers ~1/4 of the pixels). 3 SE over the pixels,
    # taken as independent: the filter correlates neighbours, so the true SE is larger.
    size, noise = 64, 0.1
    hole = random_mask(size, size, 0.5, torch.Generator().manual_seed(0)).numpy() == 0
    copies = hole_copies(hole)
    pixels = sum(int(c.sum()) for c in copies)
    rng = np.random.default_rng(1)
    err = rng.normal(0, noise, (3, pixels))
    assert np.allclose(_kept_error2(err, copies, np.ones((size, size)), 0.0), (err**2).mean(0))
    field = stationary_field(3, size, 2.0, seed=2)[:, 0].double().numpy()
    gain = kept_gain(field, 0.3)
    left = _kept_error2(err, copies, gain, noise)
    scale = _kept_error2(err, copies, gain, 0.0)  # the filtered noise's squares alone
    assert abs(left.mean()) < 3 * scale.std() / np.sqrt(len(scale))
    assert scale.mean() < 0.5 * noise**2 * (gain**2).mean()  # not noise^2 sum(g^2)


def test_a_warm_start_keeps_a_box_fills_error_but_redraws_scattered_pixels():
    # The estimate solve(start_std="estimate") adds: on a field with 3 px correlations, a
    # start at 0.3 keeps most of an 8 px box fill's error (its scales are the field's, whose
    # spectrum is far above 0.09 there) and little of the error of 50% scattered pixels
    # (single pixels: the fine scales a start at 0.3 redraws). Measured: RMS 0.083 of 0.093,
    # and 0.006 of 0.026.
    x = stationary_field(8, 48, 3.0, seed=0)
    for mask, low, high in [
        (box_mask(48, 48, (20, 20, 8, 8)), 0.7, 1.0),
        (random_mask(48, 48, 0.5, torch.Generator().manual_seed(0)), 0.0, 0.5),
    ]:
        op = Inpaint(mask)
        y = op.forward(x)
        whole, kept = start_error_std(op, y), start_error_std(op, y, kept=0.3)
        hole = op.mask.expand_as(whole) == 0
        ratio = float(kept[hole].square().mean().sqrt() / whole[hole].square().mean().sqrt())
        assert low < ratio <= high, ratio


def test_one_sample_spares_the_error_estimate(monkeypatch):
    # With n_samples=1 there is no std map to add the fill's error to: start_std="estimate" is
    # still checked, but the copies of the hole are not filled, and the draw is the one made
    # without it.
    import diffvision.restore.starts as starts

    pixelwise = GaussianDenoiser(torch.zeros(1, 8, 8).double(), torch.full((64,), 0.25))

    def run(how, op, x, **more):
        gen = torch.Generator().manual_seed(5)
        return how(pixelwise, op, op.forward(x), solver="ddnm", steps=3, start="classical",
                   generator=gen, **more)  # fmt: skip

    tiled = partial(solve_tiled, tile=8, overlap=2)
    for how, size, box in ((solve, 8, (3, 3, 2, 2)), (tiled, 24, (8, 8, 6, 6))):
        x = stationary_field(1, size, 3.0, seed=6).double()
        problem = how, Inpaint(box_mask(size, size, box)), x
        plain = run(*problem)
        with monkeypatch.context() as patch:
            patch.setattr(starts, "held_out_fills", lambda *a: pytest.fail("copies filled"))
            assert torch.equal(run(*problem, start_std="estimate"), plain)
        with pytest.raises(ValueError, match="named start of inpainting"):
            run(*problem, start_std="guess")
        made = run(*problem, start_std="estimate", n_samples=2)  # made then
        assert isinstance(made, Restoration)
