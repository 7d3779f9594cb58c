"""Reverse process: step sequences, samplers, sampling entry point and PF-ODE likelihood.

Every sampler is a plain function ``(denoiser, x, sigmas, *, generator, callback, **options) -> x``
(see :mod:`diffvision.samplers.base`); :func:`get` finds one by name and :func:`sample` runs a
whole generation with sensible defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ..denoiser import guided, memory_probe
from ..memory import check_batch_fits
from ..process import DiscreteVP, check_int
from .base import Callback, check_cond, check_generator, check_shape, randn_like
from .likelihood import LikelihoodResult, check_likelihood_fits, dequantize, likelihood
from .ode import dpmpp_2m, dpmpp_3m, euler, heun, ipndm, unipc
from .steps import STEP_KINDS, ddpm_timesteps, sigma_steps
from .stochastic import ancestral_step, ddim, ddpm, euler_maruyama, pc

__all__ = [
    "SAMPLERS",
    "STEP_KINDS",
    "LikelihoodResult",
    "ancestral_step",
    "check_likelihood_fits",
    "check_sample_fits",
    "check_sampler_options",
    "ddim",
    "ddpm",
    "ddpm_timesteps",
    "dequantize",
    "dpmpp_2m",
    "dpmpp_3m",
    "euler",
    "euler_maruyama",
    "get",
    "heun",
    "ipndm",
    "likelihood",
    "nfe_of",
    "pc",
    "sample",
    "sampler_options",
    "sigma_steps",
    "steps_for",
    "unipc",
]

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": euler,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "ipndm": ipndm,
    "unipc": unipc,
    "ddim": ddim,
    "ddpm": ddpm,
    "euler_maruyama": euler_maruyama,
    "pc": pc,
}

#: Samplers whose output is a deterministic function of the starting noise (no options set).
DETERMINISTIC = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "unipc")


def nfe_of(sampler: str, steps: int) -> int:
    """Network evaluations of a run of ``sampler`` with ``steps`` steps (``heun``: 2 steps - 1;
    ``pc`` with one corrector step: 2 steps; the others: steps)."""
    return {"heun": 2 * steps - 1, "pc": 2 * steps}.get(sampler, steps)


def steps_for(sampler: str, nfe: int) -> int:
    """The most steps of ``sampler`` that spend at most ``nfe`` evaluations (inverse of
    :func:`nfe_of`; at least 1)."""
    check_int("nfe", nfe, 1)  # a budget of 0 was given a step
    if sampler == "heun":
        return max((nfe + 1) // 2, 1)
    if sampler == "pc":
        return max(nfe // 2, 1)
    return max(nfe, 1)


def get(name: str) -> Callable[..., Tensor]:
    """The sampler function called ``name`` (see ``SAMPLERS``)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}") from None


def sampler_options(name: str) -> tuple[str, ...]:
    """The keyword options that the sampler ``name`` takes besides ``generator``: ``callback``
    and its own (e.g. ``eta`` for ``ddim``), in the order of its signature."""
    params = inspect.signature(get(name)).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "generator")


def check_sampler_options(name: str, options: Iterable[str]) -> None:
    """Raise ValueError, before any work, for an option name that the sampler ``name`` does not
    take (a typo, or another sampler's option: ``eta`` for ``euler``)."""
    taken = sampler_options(name)
    for key in options:
        if key not in taken:
            raise ValueError(
                f"the {name} sampler takes no option {key!r}; it takes {', '.join(taken)}"
            )


def sample(
    denoiser,
    shape: tuple[int, ...],
    *,
    sampler: str = "unipc",
    steps: int = 20,
    step_kind: str | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    generator: torch.Generator | None = None,
    cond=None,
    guidance: float = 1.0,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    step_options: dict | None = None,
    **options,
) -> Tensor:
    """Generate samples: draw ``x = sigma_max * noise`` and run a sampler down to sigma = 0.

    Args:
        denoiser: ``D(x, sigma[, cond])``, e.g. a :class:`~diffvision.denoiser.Denoiser`.
        shape: output shape ``N x ...`` (images ``N x C x H x W``).
        sampler: a name from ``SAMPLERS``; ``steps`` is its number of steps (NFE equals steps
            for all but ``heun``, 2 steps - 1, and ``pc``, (1 + corrector_steps) steps).
        step_kind: step sequence (``karras``, ``loglinear``, ``vp``, ``ddpm``); default
            ``ddpm`` for the ``ddpm`` sampler of a discrete VP model, else ``loglinear``.
            The default sampler and steps (UniPC, log-linear) are those with the lowest error
            at 5-20 NFE in ``bench/results/samplers.md``.
        sigma_min, sigma_max: noise range (data units); default the denoiser's schedule range
            (``denoiser.sigma_min/max``) or EDM's 0.002 and 80.
        cond, guidance: condition (a class model's: a class, or ``N`` labels; see
            :func:`~diffvision.samplers.base.check_cond`) and classifier-free guidance scale
            (1 = none).
        step_options: extra options of the step sequence (e.g. ``{"rho": 7}``).
        options: passed to the sampler (e.g. ``eta``, ``s_churn``).
    Returns:
        samples of ``shape`` and ``dtype`` (images in [-1, 1] for an image model; not clipped),
        made without gradients (``torch.no_grad``; the sampler functions themselves, called
        directly, keep autograd for a caller who differentiates through them).
    """
    run = get(sampler)
    check_sampler_options(sampler, options)
    check_shape(denoiser, shape)
    check_generator(generator)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):  # int64: from randn
        raise ValueError(f"dtype must be a floating-point torch.dtype, not {dtype!r}")
    cond = check_cond(denoiser, cond, shape[0], device)
    step_options = dict(step_options or {})
    schedule = getattr(denoiser, "schedule", None)
    if step_kind is None:
        step_kind = (
            "ddpm" if sampler == "ddpm" and isinstance(schedule, DiscreteVP) else "loglinear"
        )
    if step_kind == "ddpm":
        if isinstance(schedule, DiscreteVP):
            step_options.setdefault("schedule", schedule)
        sigmas = sigma_steps("ddpm", steps, **step_options)
    else:
        smin = sigma_min if sigma_min is not None else getattr(denoiser, "sigma_min", 0.002)
        smax = sigma_max if sigma_max is not None else getattr(denoiser, "sigma_max", 80.0)
        sigmas = sigma_steps(step_kind, steps, smin, smax, **step_options)
    fn = _network_call(denoiser, cond, guidance)
    x = float(sigmas[0]) * randn_like(torch.empty(shape, dtype=dtype, device=device), generator)
    with torch.no_grad():  # a graph kept through every step held 12x the memory (40 steps)
        return run(fn, x, sigmas, generator=generator, callback=callback, **options)


def _network_call(denoiser, cond, guidance: float):
    """What a sampler calls: ``denoiser`` itself, or with a condition or guidance the guided
    ``D(x, sigma)``."""
    return guided(denoiser, cond, guidance) if cond is not None or guidance != 1.0 else denoiser


def check_sample_fits(
    denoiser,
    shape: tuple[int, ...],
    *,
    cond: Tensor | None = None,
    guidance: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    advice: str = "sample fewer images at a time",
    what: str | None = None,
) -> None:
    """Raise ValueError when :func:`sample` of ``shape`` (``N x ...``) surely does not fit in
    ``device``'s memory: when the starting x and one network call on N images (with ``cond``, a
    tensor of N conditions, and ``guidance`` as :func:`sample` has them) need more than is
    free, counted as :func:`diffvision.memory.check_batch_fits` does (a lower bound: the
    sampler's other N-image tensors come on top). The check runs the network on 1 and 2
    images. ``what`` names the call in the message (default: "sampling N images of C x H x W")."""
    device = torch.device(device)
    probe, count = memory_probe(denoiser, shape[0])  # a class mixture: one branch per image

    def run_on(n: int) -> Tensor:
        x = torch.zeros((n, *shape[1:]), dtype=dtype, device=device)
        sigma = torch.ones(n, dtype=dtype, device=device)
        with torch.no_grad():
            return _network_call(probe, None if cond is None else cond[:n], guidance)(x, sigma)

    what = what or f"sampling {shape[0]} images of {' x '.join(map(str, shape[1:]))}"
    check_batch_fits(run_on, count, device, what, advice)
