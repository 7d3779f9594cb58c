"""Is a restoration's uncertainty map to be trusted? Calibration of the per-pixel standard
deviation of K posterior samples against the true image."""

from __future__ import annotations

import math

from torch import Tensor

#: A per-pixel std at or below this is taken as certain (e.g. the known pixels of noise-free
#: inpainting, whose samples agree to round-off).
CERTAIN_STD = 1e-6


def uncertainty_calibration(
    mean: Tensor, std: Tensor, x: Tensor, k: int | None
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

    Returns, over the values the measurement leaves uncertain (std > ``CERTAIN_STD``; for noise-free
    inpainting, the hole): ``within_2std``, the fraction of errors ``|x - mean|`` at most 2 std,
    and ``rms_error_over_std``, RMS error / RMS std; each with its value for a calibrated Gaussian
    posterior sampled K times (``..._calibrated``). There ``(x - mean) / s`` is Student-t with
    K - 1 degrees of freedom times ``sqrt(1 + 1/K)``, and ``E[(x - mean)^2] / E[s^2] = 1 + 1/K``.
    Below the calibrated values the map is overconfident, above them underconfident.
    """
    from scipy.stats import t

    if k is not None and k < 2:
        raise ValueError("calibration needs k >= 2 samples")
    free = std > CERTAIN_STD
    if not bool(free.any()):
        raise ValueError("std is zero everywhere: nothing is uncertain")
    err, s = (mean.double() - x.double())[free], std.double()[free]
    inflate = 1.0 if k is None else math.sqrt(1 + 1 / k)
    within = math.erf(2 / math.sqrt(2)) if k is None else float(2 * t.cdf(2 / inflate, k - 1) - 1)
    return {
        "within_2std": float((err.abs() <= 2 * s).double().mean()),
        "within_2std_calibrated": within,
        "rms_error_over_std": float(err.pow(2).mean().sqrt() / s.pow(2).mean().sqrt()),
        "rms_error_over_std_calibrated": inflate,
    }
