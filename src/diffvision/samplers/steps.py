"""Step sequences: the decreasing noise levels a sampler visits, ending in 0.

``sigma_steps(kind, n, sigma_min, sigma_max, **opts)`` returns a float64 tensor of ``n + 1``
noise levels ``sigma_0 > sigma_1 > ... > sigma_{n-1} > sigma_n = 0`` (data units). A sampler
takes ``n`` steps along it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..memory import check_fits
from ..process import (
    ContinuousVP,
    DiscreteVP,
    Schedule,
    check_int,
    check_positive,
    check_range,
)

__all__ = ["STEP_KINDS", "sigma_steps"]

STEP_KINDS = ("karras", "loglinear", "vp", "ddpm")
DDPM_SPACINGS = ("leading", "trailing", "linspace")


def _karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM eq. 5:
    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``."""
    ramp = (
        torch.linspace(0, 1, n, dtype=torch.float64)
        if n > 1
        else torch.zeros(1, dtype=torch.float64)
    )
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (inv_max + ramp * (inv_min - inv_max)) ** rho


def _loglinear(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log sigma (a geometric sequence), as for the VE SDE."""
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    # math.log10 takes any real, a Python int above 2**63 too (numpy's log10 fails on those)
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)


def _vp(n: int, sigma_min: float, sigma_max: float, schedule: Schedule) -> Tensor:
    """Uniform in the time of a (continuous) VP schedule, EDM Table 1 "VP" column."""
    t_max = float(schedule.t(torch.tensor(sigma_max, dtype=torch.float64)))
    t_min = float(schedule.t(torch.tensor(sigma_min, dtype=torch.float64)))
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    t = torch.linspace(t_max, t_min, n, dtype=torch.float64)
    return schedule.sigma(t).to(torch.float64)


def ddpm_timesteps(n: int, num_timesteps: int, spacing: str = "leading", offset: int = 0) -> Tensor:
    """Integer timesteps (decreasing) used by DDPM/DDIM with ``n`` of ``T = num_timesteps`` steps.

    Spacings (as defined in Lin et al. 2024, "Common diffusion noise schedules and sample steps
    are flawed", Table 2):

    - ``leading``: ``0, k, 2k, ..., (n-1) k`` with ``k = T // n`` (plus ``offset``), reversed;
    - ``trailing``: ``round(T - i T/n) - 1`` for ``i = 0..n-1`` (always starts at ``T - 1``);
    - ``linspace``: ``round(linspace(0, T-1, n))``, reversed.
    """
    if not 1 <= n <= num_timesteps:
        raise ValueError(f"need 1 <= n <= {num_timesteps} steps, got {n}")
    check_int("offset", offset, 0)  # nan was cast to an integer, with only a warning
    if spacing == "leading":
        ts = np.arange(n) * (num_timesteps // n) + offset
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / n)) - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, num_timesteps - 1, n))
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose from {', '.join(DDPM_SPACINGS)}")
    ts = np.sort(ts.astype(np.int64))[::-1].copy()
    if ts[0] >= num_timesteps or ts[-1] < 0:
        raise ValueError("offset moves the timesteps outside [0, T-1]")
    return torch.from_numpy(ts)


def sigma_steps(
    kind: str,
    n: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    **opts,
) -> Tensor:
    """Noise levels for an ``n``-step sampler: float64 tensor of ``n + 1`` values ending in 0.

    Args:
        kind: ``karras`` (EDM eq. 5, option ``rho=7``), ``loglinear`` (geometric),
            ``vp`` (uniform in t of a VP schedule, option ``schedule``, default the continuous
            VP SDE with sigma range sigma(1e-3)..sigma(1)), or ``ddpm`` (the discrete timesteps
            of a :class:`~diffvision.process.DiscreteVP` schedule, options ``schedule`` (default:
            linear betas, T = 1000), ``spacing`` = ``leading`` | ``trailing`` | ``linspace`` and
            ``offset``; the sigma range is the schedule's, so ``sigma_min``/``sigma_max`` must
            not be given).
        n: number of steps (>= 1).
        sigma_min, sigma_max: smallest non-zero and largest noise level (data units); default
            0.002 and 80 (EDM) for ``karras`` and ``loglinear``.
    """
    check_int("steps", n, 1)
    check_fits((n + 1) * 8, torch.device("cpu"), f"a schedule of {n} steps", "ask for fewer steps")
    if kind == "ddpm":
        if sigma_min is not None or sigma_max is not None:
            raise ValueError("ddpm steps take their sigma range from the schedule")
        schedule = opts.pop("schedule", None) or DiscreteVP.linear()
        if not isinstance(schedule, DiscreteVP):
            raise ValueError("ddpm steps need a DiscreteVP schedule")
        _no_options(kind, {k: v for k, v in opts.items() if k not in ("spacing", "offset")})
        ts = ddpm_timesteps(n, schedule.num_timesteps, **opts)
        sigmas = schedule.sigmas[ts]
    elif kind == "vp":
        schedule = opts.pop("schedule", None) or ContinuousVP()
        _no_options(kind, opts)
        smax = sigma_max if sigma_max is not None else float(schedule.sigma(1.0))
        smin = sigma_min if sigma_min is not None else float(schedule.sigma(1e-3))
        check_range(smin, smax)
        sigmas = _vp(n, smin, smax, schedule)
    elif kind in ("karras", "loglinear"):
        smin = 0.002 if sigma_min is None else sigma_min
        smax = 80.0 if sigma_max is None else sigma_max
        check_range(smin, smax)
        if kind == "karras":
            rho = opts.pop("rho", 7.0)
            check_positive(rho=rho)
            _no_options(kind, opts)
            sigmas = _karras(n, smin, smax, rho)
        else:
            _no_options(kind, opts)
            sigmas = _loglinear(n, smin, smax)
    else:
        raise ValueError(f"unknown step sequence {kind!r}; choose from {', '.join(STEP_KINDS)}")
    return torch.cat([sigmas.to(torch.float64), torch.zeros(1, dtype=torch.float64)])


def _no_options(kind: str, opts: dict) -> None:
    if opts:
        raise ValueError(f"unknown option(s) for {kind} steps: {', '.join(opts)}")
