"""Solvers of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM eq. 4 with
``s(t) = 1``, ``sigma(t) = t``).

The multistep solvers use two classical building blocks:

- *Adams-Bashforth in sigma* (:func:`ipndm`): integrate the polynomial through the last few
  slopes ``d = (x - D) / sigma``.
- *Exponential integrators in lambda = -log sigma* (:func:`dpmpp_2m`, :func:`dpmpp_3m`,
  :func:`unipc`): with ``y = x / sigma`` the ODE becomes ``dy/dlambda = e^lambda D`` exactly
  (Lu et al. 2022, "DPM-Solver++", eq. 9), so a step from sigma_s to sigma_t with
  ``h = lambda_t - lambda_s`` is ::

      x_t = (sigma_t / sigma_s) x_s + integral_0^h e^(u - h) D(lambda_s + u) du

  and only ``D`` along the path is approximated, by a polynomial in ``lambda`` through previous
  denoiser outputs. A step to ``sigma = 0`` (h infinite) is taken at first order: ``x_t = D``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from torch import Tensor

from ..process import check_nonnegative
from .base import Callback, DenoiserFn, as_floats, denoise, randn_like, report

__all__ = ["dpmpp_2m", "dpmpp_3m", "euler", "heun", "ipndm", "unipc"]


def euler(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler's method on the PF-ODE (first order; DDIM with eta = 0 is the same update).
    NFE = number of steps."""
    sig = as_floats(sigmas)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        x = x + (s_next - s) * (x - denoised) / s
        report(callback, i, s, s_next, x, denoised)
    return x


def heun(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """Heun's second-order method, Karras et al. 2022 Algorithm 2 (the EDM sampler).

    With ``s_churn > 0`` each step in ``[s_tmin, s_tmax]`` first raises the noise level from
    sigma to ``sigma_hat = sigma (1 + gamma)``, ``gamma = min(s_churn / n, sqrt(2) - 1)``, by
    adding fresh noise of standard deviation ``s_noise * sqrt(sigma_hat^2 - sigma^2)``; it is
    then a stochastic sampler. The last step (to sigma = 0) is an Euler step.
    NFE = 2 n - 1 for n steps ending at 0.
    """
    check_nonnegative(s_churn=s_churn, s_noise=s_noise)  # NaN made NaN samples
    if not s_tmin <= s_tmax:  # NaN too: churn would silently never apply
        raise ValueError(f"need s_tmin <= s_tmax, got {s_tmin} and {s_tmax}")
    sig = as_floats(sigmas)
    n = len(sig) - 1
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + s_noise * math.sqrt(s_hat**2 - s**2) * randn_like(x, generator)
        denoised = denoise(denoiser, x, s_hat)
        d = (x - denoised) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:
            d_next = (x_next - denoise(denoiser, x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
        x = x_next
        report(callback, i, s, s_next, x, denoised)
    return x


def _quadrature_weights(nodes: list[float], moments: list[float]) -> np.ndarray:
    """Weights ``w`` with ``sum_j w_j p(u_j) = sum_k moments[k] c_k`` for every polynomial
    ``p(u) = sum_k c_k u^k`` of degree < len(nodes): the weights that integrate the polynomial
    interpolating values at ``nodes`` against the measure whose monomial moments are given."""
    vander = np.vander(np.asarray(nodes, dtype=np.float64), increasing=True)
    return np.linalg.solve(vander.T, np.asarray(moments, dtype=np.float64))


def _exp_moments(h: float, order: int) -> list[float]:
    """``J_k = (1/h) integral_0^h e^(u-h) (u/h)^k du`` for k < order (h > 0).

    Series ``J_k = sum_m (-h)^m k! / (k+m+1)!`` for h < 1 (no cancellation), otherwise the
    recurrence ``J_0 = (1 - e^-h)/h``, ``J_k = 1/h - k J_{k-1} / h`` (integration by parts)."""
    if h < 1.0:
        out = []
        for k in range(order):
            term, total, m = 1.0 / (k + 1), 0.0, 0
            while abs(term) > 1e-18 * max(abs(total), 1e-300) or m < 2:
                total += term
                m += 1
                term *= -h / (k + m + 1)
            out.append(total)
        return out
    out = [-math.expm1(-h) / h]
    for k in range(1, order):
        out.append((1.0 - k * out[-1]) / h)
    return out


def _exp_multistep(x: Tensor, s: float, s_next: float, history: list[tuple[float, Tensor]]):
    """One exponential-integrator step from sigma ``s`` to ``s_next`` using the polynomial in
    lambda through ``history`` = [(lambda_j, D_j), ...] (most recent first; lambda_0 = -log s).
    Its order is ``len(history)``."""
    if s_next == 0:
        return history[0][1]
    h = math.log(s / s_next)
    lam0 = history[0][0]
    nodes = [(lam - lam0) / h for lam, _ in history]
    weights = _quadrature_weights(nodes, _exp_moments(h, len(history))) * h
    out = (s_next / s) * x
    for w, (_, d) in zip(weights, history, strict=True):
        out = out + float(w) * d
    return out


def dpmpp_2m(
    denoiser: DenoiserFn, x: Tensor, sigmas, *, generator=None, callback: Callback | None = None
) -> Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 Algorithm 2 (data prediction, second-order multistep).

    With ``h = lambda_t - lambda_s`` and ``r = h_prev / h``::

        D_eff = (1 + 1/(2r)) D_s - 1/(2r) D_prev,     x_t = (sigma_t/sigma_s) x_s + (1 - e^-h) D_eff

    The first step and the step to sigma = 0 are first order. NFE = number of steps.
    """
    sig = as_floats(sigmas)
    prev = None  # (h of the previous step, previous denoised)
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s / s_next)
            d_eff = denoised
            if prev is not None:
                r = prev[0] / h
                d_eff = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * prev[1]
            x = (s_next / s) * x - math.expm1(-h) * d_eff
            prev = (h, denoised)
        report(callback, i, s, s_next, x, denoised)
    return x


def dpmpp_3m(
    denoiser: DenoiserFn, x: Tensor, sigmas, *, generator=None, callback: Callback | None = None
) -> Tensor:
    """Third-order multistep exponential integrator in data prediction (DPM-Solver++(3M)).

    The denoiser outputs at the last three noise levels define a quadratic in lambda that is
    integrated exactly against ``e^(u-h)`` (Lu et al. 2022, eq. 9 with a third-order Taylor
    expansion of D). The first two steps use the orders the history allows; the step to
    sigma = 0 is first order. NFE = number of steps.
    """
    return _multistep_sampler(denoiser, x, sigmas, order=3, callback=callback)


def _multistep_sampler(denoiser, x, sigmas, *, order, callback):
    sig = as_floats(sigmas)
    history: list[tuple[float, Tensor]] = []
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        history = [(-math.log(s), denoised), *history][:order]
        x = _exp_multistep(x, s, s_next, history)
        report(callback, i, s, s_next, x, denoised)
    return x


def ipndm(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    order: int = 4,
) -> Tensor:
    """Improved pseudo-numerical method (iPNDM; Zhang & Chen 2023, "DEIS", Sec. 4): linear
    multistep Adams-Bashforth on the slopes ``d = (x - D)/sigma`` with up to ``order`` (1-4)
    previous slopes, lower orders while the history fills up.

    The coefficients are those of variable-step Adams-Bashforth (the polynomial through the
    slopes at the previous sigmas, integrated exactly over the step), which reduce to the
    classical 1, (3,-1)/2, (23,-16,5)/12, (55,-59,37,-9)/24 on a uniform grid. NFE = steps.
    """
    if order not in (1, 2, 3, 4):
        raise ValueError("ipndm order must be 1, 2, 3 or 4")
    sig = as_floats(sigmas)
    slopes: list[tuple[float, Tensor]] = []  # (sigma_j, d_j), most recent first
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        slopes = [(s, (x - denoised) / s), *slopes][:order]
        dt = s_next - s
        nodes = [(sj - s) / dt for sj, _ in slopes]
        weights = _quadrature_weights(nodes, [1.0 / (k + 1) for k in range(len(slopes))]) * dt
        for w, (_, d) in zip(weights, slopes, strict=True):
            x = x + float(w) * d
        report(callback, i, s, s_next, x, denoised)
    return x


def unipc(
    denoiser: DenoiserFn,
    x: Tensor,
    sigmas,
    *,
    generator=None,
    callback: Callback | None = None,
    order: int = 2,
    corrector: bool = True,
) -> Tensor:
    """UniPC (Zhao et al. 2023), data prediction with ``B(h) = e^-h - 1`` ("bh2").

    Predictor UniP-p: ``x_t = (sigma_t/sigma_s) x_s + (1 - e^-h) D_s - B(h) sum_m a_m D_m / r_m``
    with ``D_m = D_{s_m} - D_s`` for the previous points at ``r_m = (lambda_{s_m} - lambda_s)/h``
    and ``a`` solving the order conditions ``sum_m a_m r_m^(k-1) = k! h phi_{k+1}(h) / B(h)``
    (k = 1..p-1; a = 0.5 when p = 2, as in the paper). Corrector UniC: once ``D`` is evaluated
    at the predicted point it redoes the step with that value as one more point (r = 1), which
    raises the order by one at no extra NFE; the corrected x is not re-evaluated. The step to
    sigma = 0 is first order and not corrected. NFE = number of steps.
    """
    if order not in (1, 2, 3):
        raise ValueError("unipc order must be 1, 2 or 3")
    sig = as_floats(sigmas)
    history: list[tuple[float, Tensor]] = []  # (lambda_j, D_j), most recent first
    last = None  # (x, sigma, history) of the previous predictor step
    for i, (s, s_next) in enumerate(itertools.pairwise(sig)):
        denoised = denoise(denoiser, x, s)
        if corrector and last is not None:
            x_prev, s_prev, hist_prev = last
            x = _unipc_step(x_prev, s_prev, s, hist_prev, new=denoised)
        history = [(-math.log(s), denoised), *history][:order]
        last = (x, s, history)
        x = history[0][1] if s_next == 0 else _unipc_step(x, s, s_next, history)
        report(callback, i, s, s_next, x, denoised)
    return x


def _unipc_step(x, s, s_next, history, new: Tensor | None = None):
    """UniP (``new`` is None) or UniC (``new`` = D at sigma_next) step with the B(h) = e^-h - 1
    variant. ``history`` = [(lambda, D), ...], most recent (at sigma s) first."""
    h = math.log(s / s_next)
    lam0, d0 = history[0]
    ratios = [(lam - lam0) / h for lam, _ in history[1:]]
    diffs = [(d - d0) / r for r, (_, d) in zip(ratios, history[1:], strict=True)]
    if new is not None:
        ratios.append(1.0)
        diffs.append(new - d0)
    out = (s_next / s) * x - math.expm1(-h) * d0
    if not diffs:
        return out
    b_h = math.expm1(-h)
    p = len(diffs)
    if p == 1:
        coeffs = [0.5]
    else:
        # h phi_{k+1}(-h) terms: hphi_1 = e^-h - 1, hphi_{k+1} = hphi_k / (-h) - 1/k!.
        rhs, hphi, fact = [], math.expm1(-h), 1.0
        for k in range(1, p + 1):
            hphi = hphi / (-h) - 1.0 / fact
            rhs.append(hphi * fact / b_h)
            fact *= k + 1
        mat = np.array([[r ** (k - 1) for r in ratios] for k in range(1, p + 1)])
        coeffs = np.linalg.solve(mat, np.array(rhs)).tolist()
    for a, dm in zip(coeffs, diffs, strict=True):
        out = out - b_h * a * dm
    return out
