"""Is a restoration's uncertainty map to be trusted? Calibration of the per-pixel standard
deviation of K posterior samples against the true image."""

from __future__ import annotations

import math

from torch import Tensor

from ..process import is_int

#: A per-pixel std at or below this is taken as certain (e.g. the known pixels of noise-free
#: inpainting, whose samples agree to round-off).
CERTAIN_STD = 1e-6


def uncertainty_calibration(
    mean: Tensor, std: Tensor, x: Tensor, k: int | None, stated: Tensor | None = None
) -> dict[str, float]:
    """How well the per-pixel std of K posterior samples predicts the error of their mean.

    Args:
        mean, std: the samples' mean and unbiased (Bessel-corrected) standard deviation, any
            shape (e.g. ``N x C x H x W`` in [-1, 1], as :class:`~diffvision.restore.Restoration`
            holds them).
        x: the true images, same shape.
        k: the number of samples (>= 2); None where the std is not estimated from samples
            but stated (e.g. it holds a warm start's estimated error): the reference is then a
            Gaussian error of exactly that std, 95.4% within 2 std and an RMS ratio of 1.
        stated: with k, the part of ``std`` that is stated, not drawn (same shape): where a
            start's error std ``e`` is added in quadrature to the samples' spread ``s``
            (``std^2 = s^2 + e^2``, as ``solve(..., start_std=...)`` does). A calibrated mean
            then errs by a Gaussian of variance ``e^2 + (1 + 1/K) sigma^2``, ``s^2`` estimating
            ``sigma^2`` with K - 1 degrees of freedom; the calibrated values follow per value
            with ``sigma^2 = s^2`` (the RMS ratio's is then unbiased; the share within 2 std is
            a little high for K < 4, :func:`_mixed_within`) and are averaged. Between
            the K-sample values (e = 0) and the Gaussian ones (s = 0).

    Returns, over the values the measurement leaves uncertain (std > ``CERTAIN_STD``; for noise-free
    inpainting, the hole): ``within_2std``, the fraction of errors ``|x - mean|`` at most 2 std,
    and ``rms_error_over_std``, RMS error / RMS std; each with its value for a calibrated Gaussian
    posterior sampled K times (``..._calibrated``). There ``(x - mean) / s`` is Student-t with
    K - 1 degrees of freedom times ``sqrt(1 + 1/K)``, and ``E[(x - mean)^2] / E[s^2] = 1 + 1/K``.
    Below the calibrated values the map is overconfident, above them underconfident.
    """
    from scipy.stats import t

    if k is not None and not (is_int(k) and k >= 2):
        raise ValueError(f"calibration needs k >= 2 samples, not {k!r}")
    given = (mean, std, x, *([] if stated is None else [stated]))
    shapes = {tuple(a.shape) for a in given}  # (t is scipy's Student t here)
    if len(shapes) > 1:  # a broadcast would compare the wrong pixels
        raise ValueError(f"mean, std, x (and stated) must have one shape, not {sorted(shapes)}")
    if not bool((std >= 0).all()):  # NaN too
        raise ValueError("std must be >= 0 everywhere")
    free = std > CERTAIN_STD
    if not bool(free.any()):
        raise ValueError("std is zero everywhere: nothing is uncertain")
    if stated is not None and k is None:
        raise ValueError("stated is the stated part of a K-sample std: give k")
    err, s = (mean.double() - x.double())[free], std.double()[free]
    inflate = 1.0 if k is None else math.sqrt(1 + 1 / k)
    within = math.erf(2 / math.sqrt(2)) if k is None else float(2 * t.cdf(2 / inflate, k - 1) - 1)
    if stated is not None:
        e2 = stated.double().expand_as(std)[free].square()
        s2 = (s.square() - e2).clamp(min=0)
        inflate = math.sqrt(float(mixed_error_ratio(e2, s2, k)))
        within = _mixed_within(e2 / s2.clamp(min=1e-300), k)
    return {
        "within_2std": float((err.abs() <= 2 * s).double().mean()),
        "within_2std_calibrated": within,
        "rms_error_over_std": float(err.pow(2).mean().sqrt() / s.pow(2).mean().sqrt()),
        "rms_error_over_std_calibrated": inflate,
    }


def mixed_error_ratio(e2: Tensor, s2: Tensor, k: int, dim: int | None = None) -> Tensor:
    """E[error^2] / E[std^2] of a calibrated mean whose ``std^2 = s^2 + e^2`` adds a stated
    variance ``e2`` to a K-sample spread ``s2``: ``sum(e^2 + (1 + 1/K) s^2) / sum(e^2 + s^2)``
    (over ``dim``, or all values); ``1 + 1/K`` where e = 0, 1 where s = 0."""
    return (e2 + (1 + 1 / k) * s2).sum(dim) / (e2 + s2).sum(dim).clamp(min=1e-300)


def _mixed_within(ratio: Tensor, k: int) -> float:
    """Mean over values of P(|error| <= 2 std) for a calibrated mean whose ``std^2 = s^2 + e^2``
    adds a stated variance ``e^2 = ratio sigma^2`` to a K-sample spread ``s^2`` estimating
    sigma^2: the error over sigma is N(0, r + 1 + 1/K) with ``r = ratio``, independent of s (a
    normal sample's mean and variance are independent), and the std over sigma is
    ``sqrt(W / (K - 1) + r)``, W ~ chi^2(K - 1), so the probability is
    ``E_W[erf(2 sqrt(W / (K - 1) + r) / sqrt(2 (r + 1 + 1/K)))]``: the Student-t value at
    r = 0, the Gaussian's as r grows. It depends on r alone: computed on a log grid of r (the
    expectation over 256 quantiles of W) and interpolated. ``uncertainty_calibration`` passes
    ``e^2 / s^2`` for r, which a noisy s biases upwards: by +0.1, +0.5 and +2.9 percentage
    points for K = 8, 4, 2 where r spreads over 0.01-100 (``tests/test_metrics.py``)."""
    import numpy as np
    from scipy.special import erf
    from scipy.stats import chi2

    w = chi2.ppf((np.arange(256) + 0.5) / 256, k - 1)[None, :] / (k - 1)
    grid = np.geomspace(1e-6, 1e6, 241)[:, None]
    p = erf(2 * np.sqrt(w + grid) / np.sqrt(2 * (grid + 1 + 1 / k))).mean(1)
    r = np.clip(ratio.numpy(), grid[0, 0], grid[-1, 0])
    return float(np.interp(np.log(r), np.log(grid[:, 0]), p).mean())
