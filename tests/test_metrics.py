import math
import re
from functools import partial

import numpy as np
import pytest
import torch

from diffvision.metrics import (
    frechet_distance,
    frechet_from_moments,
    kernel_distance,
    precision_recall,
    psnr,
    random_patches,
    sliced_wasserstein,
    ssim,
    uncertainty_calibration,
)
from diffvision.metrics.calibration import _mixed_within


def gaussian(n, mean, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return mean + torch.randn(n, len(mean), generator=g, dtype=torch.float64) @ scale.T


def test_frechet_distance_converges_to_closed_form():
    d = 6
    g = torch.Generator().manual_seed(0)
    mean_a, mean_b = torch.zeros(d, dtype=torch.float64), 0.5 * torch.ones(d, dtype=torch.float64)
    scale_a = torch.eye(d, dtype=torch.float64)
    scale_b = (
        torch.eye(d, dtype=torch.float64) * 0.5 + 0.1 * torch.randn(d, d, generator=g).double()
    )
    exact = frechet_from_moments(mean_a, scale_a @ scale_a.T, mean_b, scale_b @ scale_b.T)
    errors = []
    for n in (500, 5000, 50000):
        est = frechet_distance(gaussian(n, mean_a, scale_a, 1), gaussian(n, mean_b, scale_b, 2))
        errors.append(abs(est - exact))
    # The estimator's error falls like 1/sqrt(n) (bias ~ d/n is smaller): 100x more samples,
    # error at least 3x smaller; at n = 50000 within 2% of the closed form.
    assert errors[2] < errors[0] / 3 and errors[2] < 0.02 * exact
    # Closed form of the 1-D case: (m1 - m2)^2 + (s1 - s2)^2.
    one = frechet_from_moments(
        torch.tensor([1.0]).double(),
        torch.tensor([[4.0]]).double(),
        torch.tensor([0.0]).double(),
        torch.tensor([[1.0]]).double(),
    )
    assert one == pytest.approx(1 + 1)


def test_kernel_distance_is_unbiased_and_detects_shift():
    d = 8
    scale = torch.eye(d, dtype=torch.float64)
    zero = torch.zeros(d, dtype=torch.float64)
    trials = [
        kernel_distance(
            gaussian(400, zero, scale, 2 * s),
            gaussian(400, zero, scale, 2 * s + 1),
            subsets=1,
            subset_size=400,
        )[0]
        for s in range(40)
    ]
    mean, se = float(np.mean(trials)), float(np.std(trials, ddof=1) / math.sqrt(len(trials)))
    assert abs(mean) < 4 * se
    shifted, spread = kernel_distance(
        gaussian(1000, zero, scale, 5),
        gaussian(1000, zero + 0.5, scale, 6),
        subsets=20,
        subset_size=500,
        generator=torch.Generator().manual_seed(0),
    )
    assert shifted > 10 * max(se, spread / math.sqrt(20))


def mixture(n, modes, seed):
    g = torch.Generator().manual_seed(seed)
    centres = (
        torch.tensor(
            [[math.cos(2 * math.pi * k / 10), math.sin(2 * math.pi * k / 10)] for k in range(10)],
            dtype=torch.float64,
        )
        * 5
    )
    labels = torch.tensor(modes)[torch.randint(0, len(modes), (n,), generator=g)]
    return centres[labels] + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_precision_recall_on_mode_dropping():
    real = mixture(2000, list(range(10)), 0)
    full = precision_recall(real, mixture(2000, list(range(10)), 1))
    half = precision_recall(real, mixture(2000, list(range(5)), 2))
    assert full["precision"] > 0.9 and full["recall"] > 0.9
    assert half["precision"] > 0.9  # every generated sample is realistic
    assert abs(half["recall"] - 0.5) < 0.06  # dropping half the modes halves recall
    assert abs(half["coverage"] - 0.5) < 0.06
    assert 0.7 < full["density"] < 1.3


def test_sliced_wasserstein_of_shifted_sets():
    a = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # A shift by v: every projection shifts by v.dir; E[(v.dir)^2] = |v|^2 / d.
    v = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    sw = sliced_wasserstein(a, a + v, directions=2000, generator=torch.Generator().manual_seed(1))
    assert sw == pytest.approx(3 / math.sqrt(3), rel=0.05)
    unequal = sliced_wasserstein(a, a[:1000], generator=torch.Generator().manual_seed(2))
    assert unequal < 0.1
    patches = random_patches(torch.zeros(2, 3, 9, 9), patch=4, per_image=5)
    assert patches.shape == (10, 48)


def test_distances_check_their_arguments():
    """Counts are integers >= their least (0 subsets gave a NaN distance, k = 0 an infinite
    density, patch 0 empty features, 1.5 TypeErrors from torch) and two sets share their
    dimension (kernel and sliced distances failed inside a matrix product)."""
    a, b = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    images = torch.zeros(2, 1, 8, 8)
    for call, message in [
        (lambda: kernel_distance(a, a, subsets=0), "subsets must be an integer >= 1, not 0"),
        (lambda: kernel_distance(a, a, subset_size=1.5), "subset_size must be an integer >= 2"),
        (lambda: precision_recall(a, a, k=0), "k must be an integer >= 1, not 0"),
        (lambda: precision_recall(a, a, k=1.5), "k must be an integer >= 1, not 1.5"),
        (lambda: sliced_wasserstein(a, a, directions=0), "directions must be an integer >= 1"),
        (lambda: random_patches(images, 0), "patch must be an integer >= 1, not 0"),
        (lambda: random_patches(images, 3, 1.5), "per_image must be an integer >= 1, not 1.5"),
        (lambda: random_patches(images[0], 3), "images must be N x C x H x W, not of shape"),
    ] + [
        (lambda f=f: f(a, b), "feature sets must have the same dimension, not 4 and 3")
        for f in (frechet_distance, kernel_distance, precision_recall, sliced_wasserstein)
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_psnr_ssim_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    ours_psnr, ours_ssim = psnr(x, y), ssim(x, y)
    for i in range(3):
        a, b = x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy()
        ref_psnr = peak_signal_noise_ratio(a, b, data_range=2.0)
        ref_ssim = structural_similarity(
            a,
            b,
            data_range=2.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert float(ours_psnr[i]) == pytest.approx(ref_psnr, abs=1e-9)
        assert float(ours_ssim[i]) == pytest.approx(ref_ssim, abs=1e-9)
    # [0, 255] images with data_range 255: PSNR is unchanged; SSIM is not shift invariant (its
    # luminance term sees the means), so it is checked against scikit-image on those values.
    x255, y255 = (x + 1) * 127.5, (y + 1) * 127.5
    assert torch.allclose(psnr(x255, y255, 255.0), ours_psnr)
    ref = structural_similarity(
        x255[0].permute(1, 2, 0).numpy(),
        y255[0].permute(1, 2, 0).numpy(),
        data_range=255.0,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(ssim(x255, y255, 255.0)[0]) == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ValueError):
        psnr(x, y[:2])
    for metric in (psnr, ssim):  # a range of 0 made NaN scores
        for bad in (0.0, -2.0, math.nan):
            with pytest.raises(
                ValueError, match=f"data_range must be a positive number, not {bad}"
            ):
                metric(x, y, bad)
    with pytest.raises(ValueError, match="window must be an integer >= 1, not 0"):
        ssim(x, y, window=0)
    with pytest.raises(ValueError, match="sigma must be a positive number, not 0"):
        ssim(x, y, sigma=0)


def test_agrees_with_torchmetrics():
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    kid_mod = pytest.importorskip("torchmetrics.image.kid")

    class Identity(torch.nn.Module):  # features in, features out
        num_features = 6

        def forward(self, x):
            return x

    a = gaussian(400, torch.zeros(6, dtype=torch.float64), torch.eye(6, dtype=torch.float64), 0)
    b = 0.3 + 0.7 * gaussian(400, torch.zeros(6, dtype=torch.float64), torch.eye(6).double(), 1)
    fid = fid_mod.FrechetInceptionDistance(feature=Identity(), normalize=True).double()
    fid.update(a, real=True)
    fid.update(b, real=False)
    assert frechet_distance(a, b) == pytest.approx(float(fid.compute()), rel=1e-9)
    # One subset holding every sample: both estimators are the same deterministic number.
    kid = kid_mod.KernelInceptionDistance(
        feature=Identity(), subsets=1, subset_size=400, normalize=True
    ).double()
    kid.update(a, real=True)
    kid.update(b, real=False)
    ours, _ = kernel_distance(a, b, subsets=1, subset_size=400)
    assert ours == pytest.approx(float(kid.compute()[0]), rel=1e-9)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_uncertainty_calibration_of_an_exact_gaussian_posterior(k):
    """Truth and K samples drawn from the same Gaussian posterior per value: the measured
    coverage and RMS ratio equal their calibrated values within 5 standard errors; a map that
    claims half the true std (overconfident) is caught; values with zero std are left out."""
    n = 200_000
    g = torch.Generator().manual_seed(k)
    centre = torch.randn(n, generator=g)
    x = centre + torch.randn(n, generator=g)
    samples = centre + torch.randn(k, n, generator=g)
    mean, std = samples.mean(0), samples.std(0)
    c = uncertainty_calibration(mean, std, x, k)
    p = c["within_2std_calibrated"]
    assert abs(c["within_2std"] - p) < 5 * math.sqrt(p * (1 - p) / n)
    # RMS ratio: relative SE of mean(err^2) is sqrt(2 / n), of mean(s^2) sqrt(2 / ((K - 1) n));
    # the square root halves their combination.
    rel = 0.5 * math.sqrt(2 / n + 2 / ((k - 1) * n))
    ratio = c["rms_error_over_std_calibrated"]
    assert abs(c["rms_error_over_std"] - ratio) < 5 * rel * ratio
    over = uncertainty_calibration(mean, 0.5 * std, x, k)
    assert over["within_2std"] < p - 0.1 and over["rms_error_over_std"] > 1.9 * ratio
    known = uncertainty_calibration(
        torch.cat([mean, torch.zeros(1000)]),
        torch.cat([std, torch.zeros(1000)]),
        torch.cat([x, torch.full((1000,), 50.0)]),  # huge errors where std is 0: not counted
        k,
    )
    assert known == c
    with pytest.raises(ValueError, match="k >= 2"):
        uncertainty_calibration(mean, std, x, 1)
    with pytest.raises(ValueError, match=r"k >= 2 samples, not 2\.5"):  # was taken
        uncertainty_calibration(mean, std, x, 2.5)
    with pytest.raises(ValueError, match=r"must have one shape, not \[\(1, 100\), \(200000,\)\]"):
        uncertainty_calibration(mean, std, x[None, :100], k)  # was broadcast, or an IndexError
    with pytest.raises(ValueError, match="std must be >= 0 everywhere"):
        uncertainty_calibration(mean, -std, x, k)  # was "std is zero everywhere"
    # A stated std (k=None): the exact posterior mean and std give 95.4% and 1 (same SEs).
    exact = uncertainty_calibration(centre, torch.ones(n), x, None)
    assert exact["within_2std_calibrated"] == pytest.approx(0.9545, abs=1e-4)
    assert exact["rms_error_over_std_calibrated"] == 1.0
    q = exact["within_2std_calibrated"]
    assert abs(exact["within_2std"] - q) < 5 * math.sqrt(q * (1 - q) / n)
    assert abs(exact["rms_error_over_std"] - 1) < 5 * math.sqrt(2 / n) / 2
    with pytest.raises(ValueError, match="nothing is uncertain"):
        uncertainty_calibration(mean, torch.zeros(n), x, k)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_uncertainty_calibration_with_a_stated_part(k):
    """K draws that share a start's error of std e (their spread s estimates sigma), the map
    std^2 = s^2 + e^2 as solve(start_std=...) makes it, e / sigma spread over 0.1-10: the share
    within 2 std equals the exact calibrated value (its formula at the true e^2 / sigma^2)
    within 5 SE; the reference returned, with e^2 / s^2 for it, is within its documented bias
    of that (2.9, 0.5, 0.1 points for K = 2, 4, 8: 3.5, 1 and 0.5 allowed); the RMS ratio
    equals its calibrated value within 5 SE (delta method on the two means, SEs from the data).
    With e = 0 the values are the K-sample ones."""
    n = 200_000
    g = torch.Generator().manual_seed(k)
    draw = partial(torch.randn, generator=g, dtype=torch.float64)
    sigma = torch.exp(0.5 * draw(n))
    e = sigma * 10 ** (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1)
    centre = draw(n)
    x = centre + sigma * draw(n)
    samples = centre + e * draw(n) + sigma * draw(k, n)  # e * draw(n): one error for all K
    mean, s = samples.mean(0), samples.std(0)
    std = (s.square() + e.square()).sqrt()
    c = uncertainty_calibration(mean, std, x, k, stated=e)
    exact = _mixed_within(e.square() / sigma.square(), k)
    assert abs(c["within_2std"] - exact) < 5 * math.sqrt(exact * (1 - exact) / n)
    assert 0 <= c["within_2std_calibrated"] - exact < {2: 0.035, 4: 0.01, 8: 0.005}[k]
    assert 0.95 > exact > uncertainty_calibration(mean, s, x, k)["within_2std_calibrated"]
    err2, std2 = (mean - x).square(), std.square()
    rel = math.sqrt((err2.std() / err2.mean()) ** 2 + (std2.std() / std2.mean()) ** 2) / n**0.5
    ratio = c["rms_error_over_std_calibrated"]
    assert abs(c["rms_error_over_std"] - ratio) < 5 * 0.5 * rel * ratio
    plain = uncertainty_calibration(mean, s, x, k)
    zero = uncertainty_calibration(mean, s, x, k, stated=torch.zeros(n))  # 256 quantiles of W
    assert zero == pytest.approx(plain, abs=1e-4)  # for Student-t's cdf: 4e-6 off (K = 2)
    with pytest.raises(ValueError, match="give k"):
        uncertainty_calibration(mean, std, x, None, stated=e)
