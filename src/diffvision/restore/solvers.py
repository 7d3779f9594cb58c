"""Inverse problems ``y = A(x) + sigma_y * noise`` with a diffusion prior: one entry point,
:func:`solve`, and one function per method.

Every method works in sigma space (``x = x0 + sigma * noise``) and runs the core samplers of
:mod:`diffvision.samplers`, either with a modified denoiser (``ddnm``, ``dps``) or on pieces of
the step sequence between which it touches ``x`` (``repaint``, ``sdedit``, ``posterior``); none
has a sampling loop of its own. ``Operator.spectral`` (a function of A's singular values applied
in image space, SVD-free) lets the noise-aware methods treat each singular direction apart.
"""

from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..denoiser import image_channels
from ..memory import check_fits
from ..process import check_int
from ..samplers import ancestral_step, sampler_options, sigma_steps
from ..samplers import get as get_sampler
from ..samplers.base import check_generator, randn_like
from .operators import Denoise, Operator

#: Default noise level of a warm start (``start_sigma``), in the model's [-1, 1] units.
START_SIGMA = 0.3


@dataclass
class Restoration:
    """Result of :func:`solve` with ``n_samples > 1``: ``mean`` (``N x C x H x W``, the posterior
    mean estimate), ``std`` (per-pixel standard deviation over the samples, same shape; with
    ``start_std``, that added in quadrature), ``samples`` (``K x N x C x H x W``) and ``stated``
    (the ``start_std`` added, shaped like ``std``; None without one: what
    :func:`~diffvision.metrics.uncertainty_calibration` takes as ``stated``)."""

    mean: Tensor
    std: Tensor
    samples: Tensor
    stated: Tensor | None = None

    def __iter__(self):  # unpacks as (mean, std)
        return iter((self.mean, self.std))

    @classmethod
    def of_samples(cls, samples: Tensor, stated: Tensor | None = None) -> Restoration:
        """The restoration that ``samples`` (``K x N x C x H x W``) make: their mean, and their
        spread over the K draws with ``stated`` (a start's error std, broadcastable to
        ``N x C x H x W``; expanded to that shape) added in quadrature."""
        std = samples.std(0)
        if stated is not None:
            stated = stated.to(std).expand_as(std)
            std = (std.square() + stated.square()).sqrt()
        return cls(samples.mean(0), std, samples, stated)

    def channel_mean(self) -> Restoration:
        """The restoration of the channels' mean (``N x 1 x H x W``: a grey image restored by a
        colour model): each sample averaged over channels, with ``stated`` averaged over
        channels (a start's error taken as the same in each, as a grey y's fill is), made into
        a restoration as :func:`solve` makes one (:meth:`of_samples`)."""
        stated = self.stated
        if stated is not None:
            stated = stated.expand_as(self.std).mean(1, keepdim=True)
        return Restoration.of_samples(self.samples.mean(2, keepdim=True), stated)


def _range(denoiser) -> tuple[float, float]:
    return getattr(denoiser, "sigma_min", 0.002), getattr(denoiser, "sigma_max", 80.0)


def _noise_start(
    denoiser,
    operator: Operator,
    y: Tensor,
    steps: int,
    generator,
    start=None,
    start_sigma=START_SIGMA,
):
    """Where ``ddnm``, ``dps`` and ``repaint`` begin: by default the full step sequence (Karras,
    the model's range) and pure noise at its top, shaped like the restored image (``A^+ y``).

    With ``start`` (an estimate shaped like the restored image, e.g. a classical restoration):
    ``start`` noised to ``start_sigma`` and the steps from there down, the warm start of
    "Come-closer-diffuse-faster" (Chung, Sim & Ye, CVPR 2022, Sec. 3): the forward process
    forgets the start's errors at scales below ``start_sigma`` and the prior redraws them, while
    its coarse content survives."""
    lo, hi = _range(denoiser)
    if start is None:
        sigmas = sigma_steps("karras", steps, lo, hi)
        return sigmas, float(sigmas[0]) * randn_like(operator.pinv(y), generator)
    if not lo < start_sigma <= hi:
        raise ValueError(f"start_sigma must be in ({lo}, {hi}]")
    expected = operator.pinv(y[:1]).shape[1:]
    if start.ndim != 4 or start.shape[1:] != expected or len(start) not in (1, len(y)):
        raise ValueError(f"start must be N x {' x '.join(map(str, expected))} like the result")
    sigmas = sigma_steps("karras", steps, lo, start_sigma)
    start = start.to(y).expand(len(y), -1, -1, -1)
    return sigmas, start + start_sigma * randn_like(start, generator)


# ----------------------------------------------------------------------------- the methods
def mmse(
    denoiser, operator: Operator, y: Tensor, *, steps=1, generator=None, callback=None
) -> Tensor:
    """The posterior mean for Gaussian noise: one denoiser call at the noise level of y
    (Tweedie's formula; exact when the denoiser is). ``steps``, ``generator`` and ``callback``
    are taken, as by every method, and unused: there is no sampling."""
    _needs_noisy_denoise(operator, "mmse")
    return denoiser(y, torch.full((len(y),), operator.sigma, dtype=y.dtype, device=y.device))


def posterior(
    denoiser, operator: Operator, y: Tensor, *, steps=50, generator=None, sampler="ddpm", **opts
) -> Tensor:
    """A posterior sample for Gaussian noise: y *is* a draw of the noisy marginal at sigma_y, so
    the reverse process started from y at sigma_y samples p(x | y)."""
    _needs_noisy_denoise(operator, "posterior")
    lo, _ = _range(denoiser)
    if operator.sigma <= lo:
        raise ValueError(
            f"posterior steps down from y's noise level, {operator.sigma:.3g}, which must be above"
            f" the model's smallest, {lo:.3g} (for images in [-1, 1]); use mmse"
        )
    sigmas = sigma_steps("karras", steps, lo, operator.sigma)
    return get_sampler(sampler)(denoiser, y, sigmas, generator=generator, **opts)


def ddnm(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    steps=50,
    generator=None,
    sampler="ddpm",
    start=None,
    start_sigma=START_SIGMA,
    **opts,
) -> Tensor:
    """DDNM (Wang, Yu & Zhang 2023): after each denoiser call, replace the range-space part of
    the estimate by ``A^+ y`` (Eq. 7: ``x0 <- A^+ y + (I - A^+ A) x0``).

    With noise, DDNM+ (Eq. 17-19 in sigma space) keeps each step's total noise at what the
    sampler expects. A step ``x_next = x0 + keep (x - x0) + std z`` carries the noise of y
    that the correction puts into x0 with weight ``a = 1 - keep``; along a singular direction
    ``s`` the correction's gain ``1 / s`` is capped at ``std / (a sigma_y)`` (so y's noise
    passed on is at most the step's ``std``) and the fresh noise there is cut to the remainder
    (``Operator.noise_left``). Needs an ancestral sampler that injects noise: ``ddpm`` or
    ``ddim`` with ``eta > 0``. The last step (``std = 0``) adds no correction.

    The rule counts y's noise as if it were fresh at every step, but it is the same noise each
    time: DDNM+ is accurate at few steps and drifts towards y as steps grow (exact Gaussian
    prior, denoising: 5% error at 10 steps, 21% at 160; a 2 px blur of photo crops, mean of 4:
    28.3 dB at 10 steps, 17.3 at 40). :func:`repaint` converges for noisy y. ``start``,
    ``start_sigma``: a warm start (see :func:`_noise_start`).
    """
    sigmas, x = _noise_start(denoiser, operator, y, steps, generator, start, start_sigma)
    if operator.sigma == 0:

        def projected(x, sigma):
            x0 = denoiser(x, sigma)
            return x0 + operator.pinv(y - operator.forward(x0))

        return get_sampler(sampler)(projected, x, sigmas, generator=generator, **opts)

    if "noise_filter" in opts:
        raise ValueError("ddnm with measurement noise sets the sampler's noise_filter itself")
    caps = _ddnm_plus_caps(sigmas.tolist(), operator.sigma, sampler, opts)

    def cap_at(s: float) -> float:  # the cap of the step that starts at level s
        return min(caps.items(), key=lambda item: abs(item[0] - s))[1]

    def corrected(x, sigma):
        x0 = denoiser(x, sigma)
        cap = cap_at(float(sigma[0]))
        if cap == 0:
            return x0
        caps_n = torch.full((len(x),), cap, dtype=x.dtype, device=x.device)
        return x0 + operator.pinv_capped(y - operator.forward(x0), caps_n)

    def noise_left(z, s, s_next):
        return operator.noise_left(z, cap_at(s))

    return get_sampler(sampler)(
        corrected, x, sigmas, generator=generator, noise_filter=noise_left, **opts
    )


def _ddnm_plus_caps(levels: list[float], sigma_y: float, sampler: str, opts) -> dict:
    """Level -> DDNM+'s gain cap ``std / (a sigma_y)`` for each step of an ancestral sampler."""
    if sampler == "ddpm":
        shape = {"variance": opts.get("variance", "small")}
    elif sampler == "ddim" and opts.get("eta", 0.0) > 0:
        shape = {"eta": opts["eta"]}
    else:
        raise ValueError("ddnm with measurement noise needs sampler ddpm, or ddim with eta > 0")
    caps = {}
    for s, s_next in itertools.pairwise(levels):
        keep, std = ancestral_step(s, s_next, **shape)
        caps[s] = std / ((1 - keep) * sigma_y) if keep < 1 else 0.0
    return caps


def dps(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    steps=100,
    generator=None,
    sampler="ddpm",
    step_size=1.0,
    start=None,
    start_sigma=START_SIGMA,
    **opts,
) -> Tensor:
    """Diffusion posterior sampling (Chung et al. 2023): add the gradient of the measurement
    log-likelihood, evaluated at the denoised estimate, to the score (their Alg. 1).

    In sigma space ``D = x + sigma^2 score``, so the guided denoiser is
    ``D(x) - step_size * sigma^2 / (sigma_y^2 + sigma^2) * grad_x 1/2 ||y - A D(x)||^2``: the
    likelihood ``p(y | x_sigma) ~ N(A D(x), (sigma_y^2 + sigma^2) I)``, whose variance adds the
    estimate's own uncertainty (~sigma^2 at small sigma) to the measurement noise, as
    PiGDM (Song et al. 2023) does; DPS's per-step normalisation ``zeta / ||y - A x0||`` is
    replaced by this weight, which makes the step independent of the sampler and step count.
    ``step_size`` scales it (1 = the Gaussian approximation). Needs a differentiable denoiser
    (every network and ``analytic`` model is). ``start``, ``start_sigma``: a warm start (see
    :func:`_noise_start`)."""
    if not 0 <= step_size < math.inf:
        raise ValueError(f"step_size must be a number >= 0, not {step_size}")
    step_size = float(step_size)  # a Python int above 2**63 does not multiply a tensor
    s_y2 = operator.sigma**2

    def guided(x, sigma):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = denoiser(x_in, sigma)
            loss = 0.5 * (y - operator.forward(x0)).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, x_in)
        s2 = sigma.view(-1, *[1] * (x.ndim - 1)) ** 2
        return x0.detach() - step_size * s2 / (s_y2 + s2) * grad

    sigmas, x = _noise_start(denoiser, operator, y, steps, generator, start, start_sigma)
    return get_sampler(sampler)(guided, x, sigmas, generator=generator, **opts)


def repaint(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    steps=50,
    generator=None,
    sampler="ddpm",
    jump_length=10,
    jump_n_sample=10,
    start=None,
    start_sigma=START_SIGMA,
    **opts,
) -> Tensor:
    """RePaint (Lugmayr et al. 2022): after each reverse step to sigma_next, what y observes is
    replaced by y noised to sigma_next (Eq. 8); every ``jump_length`` steps the last
    ``jump_length`` steps are undone by the forward process and redone, ``jump_n_sample - 1``
    extra times (the resampling of Sec. 4.2). NFE is about ``steps * jump_n_sample``;
    ``jump_n_sample=1`` gives the replacement alone.

    For any linear operator with noise (our extension; RePaint is noise-free inpainting): along
    a right-singular direction of A with singular value s, ``A^+ y`` sees x through noise of
    std ``rho = sigma_y / s``. Once ``rho <= sigma_next`` that direction is set to ``A^+ y``
    plus fresh noise of std ``sqrt(sigma_next^2 - rho^2)``, so that x holds noise of exactly
    sigma_next there whatever the number of steps; above, y is noisier than x and the step
    keeps the sampler's value (see :func:`observe`). For noise-free inpainting this is Eq. 8:
    the observed pixels become y noised to sigma_next. ``start``, ``start_sigma``: a warm start
    (see :func:`_noise_start`)."""
    path = repaint_schedule(steps, jump_length, jump_n_sample)  # checks them first
    step = get_sampler(sampler)
    y_bar = operator.pinv(y)
    sigmas, x = _noise_start(denoiser, operator, y, steps, generator, start, start_sigma)
    for a, b in itertools.pairwise(path):
        s_a, s_b = float(sigmas[a]), float(sigmas[b])
        if b > a:  # one reverse step, then what y observes at the new level
            x = step(denoiser, x, sigmas[a : b + 1], generator=generator, **opts)
            x = observe(operator, x, y_bar, s_b, generator)
        else:  # back up by the forward process: x_b = x_a + sqrt(s_b^2 - s_a^2) noise
            x = x + math.sqrt(s_b**2 - s_a**2) * randn_like(x, generator)
    return x


def observe(operator: Operator, x: Tensor, y_bar: Tensor, level: float, generator=None):
    """``x`` at noise level ``level`` with the directions that ``y_bar = A^+ y`` sees through
    less noise than ``level`` (``sigma_y / s <= level``) replaced by ``y_bar`` plus fresh noise
    of std ``sqrt(level^2 - (sigma_y / s)^2)``: a draw of x at that level given y there, as the
    forward process from y makes it. Noise-free: A's whole row space, noised to ``level``."""
    s_y = operator.sigma

    def seen(sv):  # singular values sv (float64 tensor, 0 in the null space) -> 1 or 0
        return ((sv > 0) & (s_y <= level * sv)).double()

    x = x + operator.spectral(y_bar - x, seen)
    if level > 0:

        def fresh(sv):
            rho = torch.where(sv > 0, s_y / sv.clamp(min=1e-300), 0.0)
            return seen(sv) * torch.sqrt((level**2 - rho**2).clamp(min=0))

        x = x + operator.spectral(randn_like(x, generator), fresh)
    return x


def repaint_schedule(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """RePaint's path through the step indices (0 = highest noise, ``steps`` = sigma 0): down
    one step at a time; on reaching a multiple of ``jump_length`` (before the end) for the
    first ``jump_n_sample - 1`` times, back up ``jump_length`` steps."""
    check_int("jump_length", jump_length, 1)  # 1.5 was a TypeError from range()
    check_int("jump_n_sample", jump_n_sample, 1)
    path, i = [0], 0
    jumps = {j: jump_n_sample - 1 for j in range(jump_length, steps, jump_length)}
    while i < steps:
        i += 1
        path.append(i)
        if jumps.get(i, 0) > 0:
            jumps[i] -= 1
            for _ in range(jump_length):
                i -= 1
                path.append(i)
    return path


def sdedit(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    steps=50,
    generator=None,
    sampler="ddpm",
    strength=0.5,
    **opts,
) -> Tensor:
    """SDEdit (Meng et al. 2022): noise the pseudo-inverse ``A^+ y`` to the level at
    ``strength`` (0..1 of the log-sigma range between the model's sigma_min and sigma_max) and
    run the reverse process from there. Stays close to y at low strength; makes up more at high
    strength. ``steps`` is the number of steps from that level down."""
    if not 0 < strength <= 1:
        raise ValueError("strength must be in (0, 1]")
    lo, hi = _range(denoiser)
    top = math.exp(math.log(lo) + strength * (math.log(hi) - math.log(lo)))
    sigmas = sigma_steps("karras", steps, lo, top)
    start = operator.pinv(y)
    x = start + top * randn_like(start, generator)
    return get_sampler(sampler)(denoiser, x, sigmas, generator=generator, **opts)


def check_options(solver: str, options) -> None:
    """Raise ValueError, before any work, for an option name of :func:`solve` that neither the
    method ``solver`` nor the sampler it runs (its ``sampler`` option, or its default) takes:
    a typo, or another method's option (``strength`` for ``ddnm``)."""
    params = inspect.signature(METHODS[solver]).parameters
    given = ("steps", "generator")  # by solve itself
    taken = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in given]
    what = f"solver {solver}"
    if "sampler" in params:
        sampler = options.get("sampler", params["sampler"].default)
        taken += [n for n in sampler_options(sampler) if n not in taken]
        what += f" (sampler {sampler})"
    for key in options:
        if key not in taken:
            raise ValueError(f"{what} takes no option {key!r}; it takes {', '.join(taken)}")


def check_measurement(denoiser, operator: Operator, y: Tensor) -> None:
    """Raise ValueError, before any work, where ``y`` cannot be ``operator``'s measurement of
    images that ``denoiser`` makes: not a float ``N x C x H x W`` tensor of finite values, of a
    size the operator does not take (an inpainting mask of another size, say) or of another
    shape than it makes (a 3-channel y of :class:`Colorize`), or restored to
    a number of channels other than the model's (where the denoiser states it: a loaded model,
    alone or tiled)."""
    if not isinstance(operator, Operator):  # the class Denoise, say, for Denoise(sigma)
        raise ValueError(f"operator must be an Operator (e.g. Denoise(sigma)), not {operator!r}")
    if not (isinstance(y, Tensor) and y.ndim == 4 and y.is_floating_point()):
        what = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y)
        raise ValueError(f"y must be a float N x C x H x W tensor, not {what}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y holds NaN or infinite values")
    mask = getattr(operator, "mask", None)  # broadcast, a 1 x W mask was every row's
    if isinstance(mask, Tensor) and (
        mask.shape[-2:] != y.shape[-2:] or len(mask) not in (1, len(y))
    ):
        raise ValueError(
            f"the mask ({' x '.join(map(str, mask.shape))}) does not fit y of shape "
            f"{tuple(y.shape)}: it is H x W, or N x 1 x H x W with y's N"
        )
    name = type(operator).__name__
    try:
        image = operator.pinv(y[:1])
        remade = operator.forward(image).shape  # a 3-channel y of Colorize became 3 channels
    except RuntimeError as err:
        raise ValueError(f"y of shape {tuple(y.shape)} does not fit the {name}: {err}") from None
    if remade[1:] != y.shape[1:]:  # per image: an Inpaint's N masks make N of one y[:1]
        raise ValueError(
            f"y of shape {tuple(y.shape)} is no measurement of the {name}: it makes "
            f"{' x '.join(map(str, remade[1:]))} from {' x '.join(map(str, image.shape[1:]))} "
            "images"
        )
    made = image_channels(denoiser)
    if made is not None and image.shape[1] != made:
        raise ValueError(
            f"the {name} restores {image.shape[1]}-channel images from y and the model makes "
            f"{made}-channel ones"
        )


def solve(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    solver: str = "ddnm",
    steps: int = 50,
    generator: torch.Generator | None = None,
    n_samples: int = 1,
    project: bool = True,
    start_std: Tensor | None = None,
    **options,
) -> Tensor | Restoration:
    """Restore images from measurements ``y = A(x) + noise``.

    Args:
        denoiser: ``D(x, sigma)`` of an unconditional model (e.g. :func:`diffvision.load`).
        operator: the measurement (:mod:`diffvision.restore.operators`), with its noise sigma.
        y: measurements, ``N x ...`` as ``operator.forward`` makes them.
        solver: ``mmse`` or ``posterior`` (denoising), ``ddnm``, ``dps``, ``repaint``
            (RePaint's replacement for any linear operator; with noise it converges as steps
            grow, where ``ddnm``'s DDNM+ does not), ``sdedit``.
        steps: sampler steps (``repaint`` multiplies them by its resampling).
        n_samples: K > 1 draws K restorations per image and returns a :class:`Restoration`
            (mean, per-pixel std, samples); ``mmse`` is a single estimate and needs K = 1.
        project: for noise-free measurements, end with ``x + A^+ (y - A x)`` so that the result
            agrees with y exactly (a no-op for ``ddnm`` and ``repaint``, which already do).
        options: passed to the method (e.g. ``sampler``, ``step_size``, ``jump_length``,
            ``strength``; ``start`` and ``start_sigma`` for a warm start of ``ddnm``, ``dps``
            and ``repaint``) and through it to the sampler (e.g. ``eta``). ``start`` is an
            estimate shaped like the result or a name: "classical" (made from y by
            :func:`~diffvision.restore.starts.classical_start`: for inpainting the biharmonic
            fill, bicubic upscaling, Wiener deconvolution) or, for inpainting, a fill of
            :data:`~diffvision.restore.starts.FILLS`. A name that neither the method nor its
            sampler takes is a ValueError (:func:`check_options`).
        start_std: with ``start`` and K > 1, a per-pixel std of the start's own error
            (broadcastable to ``N x C x H x W``), added in quadrature to the samples' std:
            draws from a warm start share its errors at scales above ``start_sigma``, so their
            spread alone misses them. "estimate", with a named inpainting start: the fill's
            error estimated on y (:func:`~diffvision.restore.starts.start_error_std`).

    Returns:
        ``N x C x H x W`` restored images (not clipped), or a :class:`Restoration`, made
        without gradients (``torch.no_grad``; ``dps`` takes the one it needs inside).
    """
    check_settings(solver, steps, n_samples, options)
    check_generator(generator)
    if start_std is not None and options.get("start") is None:
        raise ValueError("start_std is the error of a start: pass start too")
    check_measurement(denoiser, operator, y)
    check_fits(  # the measurements repeated for the draws, a lower bound of what they hold
        n_samples * y.numel() * y.element_size(),
        y.device,
        f"{n_samples} draws of y ({' x '.join(map(str, y.shape))})",
        "ask for fewer samples",
    )
    start_std = resolve_starts(operator, y, start_std, n_samples, options)
    run = METHODS[solver]
    op = operator.repeat(n_samples) if n_samples > 1 else operator
    ys = torch.cat([y] * n_samples) if n_samples > 1 else y
    start = options.get("start")
    if n_samples > 1 and start is not None and len(start) == len(y):
        options["start"] = torch.cat([start] * n_samples)
    with torch.no_grad():  # dps takes its own gradient; a graph kept through every step cost
        x = run(denoiser, op, ys, steps=steps, generator=generator, **options)  # memory, time
        if project and operator.sigma == 0:
            x = op.project(x, ys)
    if n_samples == 1:
        return x
    return Restoration.of_samples(x.view(n_samples, *y.shape[:1], *x.shape[1:]), start_std)


def check_settings(solver: str, steps: int, n_samples: int, options: dict) -> None:
    """The checks of :func:`solve`'s arguments that need no image (so a command can make them
    before any work): a known ``solver``, counts, the ``options``' names
    (:func:`check_options`), and no samples from ``mmse``. Raises ValueError."""
    if solver not in METHODS:
        raise ValueError(f"unknown solver {solver!r}; choose from {', '.join(METHODS)}")
    check_int("steps", steps, 1)
    check_int("n_samples", n_samples, 1)
    check_options(solver, options)
    if n_samples > 1 and solver == "mmse":
        raise ValueError("mmse gives one estimate, the posterior mean: for samples use posterior")


def resolve_starts(
    operator: Operator, y: Tensor, start_std, n_samples: int, options: dict
) -> Tensor | None:
    """A named ``options["start"]`` or ``start_std`` (see :func:`solve`) made into tensors from
    ``y`` by :func:`~diffvision.restore.starts.warm_start` at ``options``' ``start_sigma``:
    sets ``options["start"]`` and returns the start's std (tensors and None pass through)."""
    if isinstance(options.get("start"), str) or isinstance(start_std, str):
        from .starts import warm_start  # classical restorations: scikit-image, OpenCV

        level = options.get("start_sigma", START_SIGMA)
        named = options.get("start"), start_std
        options["start"], start_std = warm_start(operator, y, *named, level, n_samples)
    return start_std


def sampler_steps(solver: str, steps: int, **options) -> int:
    """Sampler steps (callback calls; network calls for the ``ddpm`` default) that
    :func:`solve` runs for ``solver`` with these ``steps`` and ``options``, for every sample at
    once: 0 for ``mmse``, RePaint's forward moves through :func:`repaint_schedule` for
    ``repaint``, ``steps`` for the others (from a warm start too). For progress bars."""
    if solver == "mmse":
        return 0
    if solver != "repaint":
        return steps
    given = inspect.signature(repaint).parameters
    jumps = [options.get(k, given[k].default) for k in ("jump_length", "jump_n_sample")]
    return sum(b > a for a, b in itertools.pairwise(repaint_schedule(steps, *jumps)))


def _needs_noisy_denoise(operator: Operator, name: str) -> None:
    if not isinstance(operator, Denoise) or operator.sigma <= 0:
        raise ValueError(f"{name} solves denoising (Denoise with sigma > 0); use ddnm or dps")


METHODS = {
    "mmse": mmse,
    "posterior": posterior,
    "ddnm": ddnm,
    "dps": dps,
    "repaint": repaint,
    "sdedit": sdedit,
}
#: The method names, in the order of ``METHODS``.
SOLVERS = tuple(METHODS)
#: The methods that take a warm start (``start``, ``start_sigma``).
WARM_SOLVERS = tuple(
    n for n, run in METHODS.items() if "start" in inspect.signature(run).parameters
)
