"""The forward process in sigma space: ``x = x0 + sigma * noise``.

Every schedule here describes the same object, a family of noisy marginals p(x; sigma) obtained by
adding Gaussian noise of standard deviation ``sigma`` to clean data ``x0`` (images in [-1, 1]).
A schedule only says how a network's time input ``t`` relates to ``sigma`` and which noise levels
are used for training.

Variance-preserving (VP) models such as DDPM work with ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``.
That is the same process after scaling (Karras et al. 2022, "EDM", eq. 4 and Table 1)::

    sigma = sqrt((1 - abar) / abar),      x = x_t / sqrt(abar) = x_t * sqrt(1 + sigma**2)

so a VP schedule is a sigma schedule with ``vp = True`` (its network sees
``x / sqrt(1 + sigma**2)``).

Units: ``sigma`` is in the units of the data (images in [-1, 1]); ``t`` is a discrete timestep
index in [0, T-1] for :class:`DiscreteVP` and a continuous time in [0, 1] (or sigma itself, for
:class:`EDM`) otherwise.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = [
    "EDM",
    "VE",
    "ContinuousVP",
    "DiscreteVP",
    "Schedule",
    "add_noise",
    "get_schedule",
    "loss_weight",
]


def _as_tensor(value: Tensor | float, like: Tensor | None = None) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return torch.as_tensor(value, dtype=torch.float64 if like is None else like.dtype)


def check_range(low: float, high: float, names: str = "sigma_min < sigma_max") -> None:
    """Raise ValueError unless ``0 < low < high < inf`` (``names`` says which two they are)."""
    if not 0 < low < high < math.inf:
        raise ValueError(f"need 0 < {names} < inf, got {low} and {high}")


def is_int(value) -> bool:
    """Whether ``value`` is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a real number: a Python or numpy one, or a one-element tensor (a
    bool or a string is not)."""
    if isinstance(value, Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, least: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``least`` (named ``name``)."""
    if not (is_int(value) and value >= least):
        raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")


def check_positive(**values: float) -> None:
    """Raise ValueError unless every value is a finite number above 0 (named by its keyword)."""
    for name, value in values.items():
        if not (is_number(value) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a positive number, not {value!r}")


def check_nonnegative(**values: float) -> None:
    """Raise ValueError unless every value is a finite number at or above 0 (named by its
    keyword): NaN, which passes a check of ``< 0``, made NaN results where it was let through."""
    for name, value in values.items():
        if not (is_number(value) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


class Schedule:
    """Base class of noise schedules.

    Attributes:
        vp: True when the network works on the VP-scaled input ``x / sqrt(1 + sigma**2)``.
        sigma_min, sigma_max: the range of noise levels the model was trained on (data units).
    """

    vp: bool = False
    sigma_min: float
    sigma_max: float

    def sigma(self, t: Tensor | float) -> Tensor:
        """Noise level sigma(t) for time ``t`` (any shape); returns a tensor of the same shape."""
        raise NotImplementedError

    def t(self, sigma: Tensor | float) -> Tensor:
        """Inverse of :meth:`sigma`: the (possibly fractional) time of a noise level."""
        raise NotImplementedError

    def sample_sigma(
        self, n: int, *, generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """Draw ``n`` training noise levels (float32 tensor of shape ``(n,)``)."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-serialisable description; ``get_schedule(**config)`` rebuilds the schedule."""
        raise NotImplementedError


class DiscreteVP(Schedule):
    """DDPM's discrete Markov chain (Ho et al. 2020) with betas ``beta_1..beta_T``.

    ``abar_t = prod_{s<=t} (1 - beta_s)`` and ``sigma_t = sqrt((1 - abar_t) / abar_t)`` for the
    timestep indices ``t = 0..T-1`` (index 0 is the first noising step). Between integer
    timesteps, ``t <-> sigma`` interpolates linearly in ``log sigma`` so that any sigma in range
    maps to a fractional timestep.
    """

    vp = True

    def __init__(self, betas: Tensor, *, name: str = "custom", **params):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError("betas must be a 1-D sequence of at least two values")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self.log_sigmas = self.sigmas.log()
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])
        self.name = name
        self._params = params

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    @classmethod
    def linear(
        cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> DiscreteVP:
        """Ho et al. 2020, Sec. 4: betas linear from 1e-4 to 0.02 over T = 1000 steps."""
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        return cls(
            betas,
            name="linear",
            num_timesteps=num_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
        )

    @classmethod
    def cosine(
        cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
    ) -> DiscreteVP:
        """Nichol & Dhariwal 2021, eq. 17: ``abar(t) = f(t) / f(0)``,
        ``f(t) = cos^2((t/T + s) / (1 + s) * pi/2)``, betas clipped at ``max_beta``."""
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
        return cls(betas, name="cosine", num_timesteps=num_timesteps, s=s, max_beta=max_beta)

    def sigma(self, t: Tensor | float) -> Tensor:
        t = _as_tensor(t)
        grid = torch.arange(self.num_timesteps, dtype=torch.float64)
        flat = t.detach().to(torch.float64, copy=True).reshape(-1).clamp(0, self.num_timesteps - 1)
        out = _interp(flat, grid, self.log_sigmas).exp()
        return out.reshape(t.shape).to(t.dtype if t.is_floating_point() else torch.float64)

    def t(self, sigma: Tensor | float) -> Tensor:
        sigma = _as_tensor(sigma)
        grid = torch.arange(self.num_timesteps, dtype=torch.float64)
        log_s = sigma.detach().to(torch.float64).reshape(-1).clamp(min=1e-30).log()
        out = _interp(log_s, self.log_sigmas, grid)
        return out.reshape(sigma.shape).to(sigma.dtype)

    def sample_sigma(self, n, *, generator=None, device=None):
        t = torch.randint(0, self.num_timesteps, (n,), generator=generator)
        return self.sigmas[t].to(device=device, dtype=torch.float32)

    def config(self) -> dict:
        if self.name == "custom":
            return {"kind": "discrete_vp", "betas": self.betas.tolist()}
        return {"kind": self.name, **self._params}


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation (like numpy.interp) for increasing ``xp``; clamps outside."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    w = (x - x0) / (x1 - x0)
    return fp[idx - 1] + w * (fp[idx] - fp[idx - 1])


class ContinuousVP(Schedule):
    """The VP SDE of Song et al. 2021 (the continuous limit of DDPM's linear betas).

    ``beta(t) = beta_min + t (beta_max - beta_min)`` for t in [0, 1], so
    ``abar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)`` and
    ``sigma(t) = sqrt(1/abar(t) - 1)``. The defaults ``beta_min = 0.1 = 1e-4 T`` and
    ``beta_max = 20 = 0.02 T`` make it the T -> infinity limit of :meth:`DiscreteVP.linear`
    (T = 1000), timestep index i corresponding to t ~ (i + 1) / T.
    Training times are uniform in [eps_t, 1] (Song et al. 2021, eps_t = 1e-5).
    """

    vp = True

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps_t: float = 1e-5):
        check_range(beta_min, beta_max, "beta_min < beta_max")
        if not 0 < eps_t < 1:
            raise ValueError(f"eps_t, the first training time, must be in (0, 1), not {eps_t}")
        self.beta_min, self.beta_max, self.eps_t = beta_min, beta_max, eps_t
        self.sigma_min = float(self.sigma(eps_t))
        self.sigma_max = float(self.sigma(1.0))

    def sigma(self, t):
        t = _as_tensor(t)
        return torch.expm1(0.5 * (self.beta_max - self.beta_min) * t**2 + self.beta_min * t).sqrt()

    def t(self, sigma):
        sigma = _as_tensor(sigma)
        beta_d = self.beta_max - self.beta_min
        # Solve beta_d/2 t^2 + beta_min t = log(1 + sigma^2) for t >= 0.
        return (
            (self.beta_min**2 + 2 * beta_d * torch.log1p(sigma**2)).sqrt() - self.beta_min
        ) / beta_d

    def sample_sigma(self, n, *, generator=None, device=None):
        t = self.eps_t + (1 - self.eps_t) * torch.rand(n, generator=generator, dtype=torch.float64)
        return self.sigma(t).to(device=device, dtype=torch.float32)

    def config(self):
        return {
            "kind": "vp",
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "eps_t": self.eps_t,
        }


class VE(Schedule):
    """Variance-exploding schedule (Song & Ermon 2019; Song et al. 2021, "VE SDE"):
    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` for t in [0, 1]; training sigmas are
    log-uniform in [sigma_min, sigma_max]."""

    vp = False

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        check_range(sigma_min, sigma_max)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t):
        t = _as_tensor(t)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def t(self, sigma):
        sigma = _as_tensor(sigma)
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def sample_sigma(self, n, *, generator=None, device=None):
        t = torch.rand(n, generator=generator, dtype=torch.float64)
        return self.sigma(t).to(device=device, dtype=torch.float32)

    def config(self):
        return {"kind": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class EDM(Schedule):
    """Karras et al. 2022 ("EDM"): ``sigma(t) = t``; training sigmas log-normal,
    ``ln sigma ~ N(p_mean, p_std^2)`` (Table 1: p_mean = -1.2, p_std = 1.2); ``sigma_data`` is the
    standard deviation of the data (0.5 for images in [-1, 1])."""

    vp = False

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ):
        check_range(sigma_min, sigma_max)
        check_positive(sigma_data=sigma_data, p_std=p_std)
        if not math.isfinite(p_mean):
            raise ValueError(f"p_mean must be a finite number, not {p_mean}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std

    def sigma(self, t):
        return _as_tensor(t)

    def t(self, sigma):
        return _as_tensor(sigma)

    def sample_sigma(self, n, *, generator=None, device=None):
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        return (self.p_mean + self.p_std * z).exp().to(device=device, dtype=torch.float32)

    def config(self):
        return {
            "kind": "edm",
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
            "p_mean": self.p_mean,
            "p_std": self.p_std,
        }


def get_schedule(kind: str = "linear", **params) -> Schedule:
    """Build a schedule by name: ``linear`` / ``cosine`` (discrete DDPM, T = 1000 by default),
    ``vp`` (continuous VP SDE), ``ve``, ``edm``, or ``discrete_vp`` (with ``betas=[...]``)."""
    builders = {
        "linear": DiscreteVP.linear,
        "cosine": DiscreteVP.cosine,
        "discrete_vp": DiscreteVP,
        "vp": ContinuousVP,
        "ve": VE,
        "edm": EDM,
    }
    if kind not in builders:
        raise ValueError(f"unknown schedule {kind!r}; choose from {', '.join(builders)}")
    return builders[kind](**params)


def add_noise(x0: Tensor, sigma: Tensor | float, noise: Tensor) -> Tensor:
    """``x = x0 + sigma * noise`` (sigma-space forward process).

    Args:
        x0: clean data, ``N x ...`` (images ``N x C x H x W`` in [-1, 1]).
        sigma: a float or a per-sample tensor of shape ``(N,)`` (data units).
        noise: standard normal noise of the same shape as ``x0``.
    Returns:
        the noisy sample, same shape as ``x0``. For a VP network input multiply by
        ``1 / sqrt(1 + sigma**2)``.

    Raises ValueError for a noise of another shape (one image's noise was broadcast over the
    batch: every image got the same), a sigma of another shape, or a negative or non-finite
    sigma (NaN images, or the noise flipped, without a word).
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, not {tuple(noise.shape)}")
    if not (isinstance(sigma, Tensor) or is_number(sigma)):  # "0.1" was a TypeError in torch
        raise ValueError(f"sigma must be a number or a tensor, not {sigma!r}")
    level = torch.as_tensor(sigma)
    if level.ndim and level.shape != (x0.shape[0],):
        raise ValueError(
            f"sigma must be a float or shape ({x0.shape[0]},), got {tuple(level.shape)}"
        )
    check_noise_level(level)
    return x0 + _per_sample(sigma, x0) * noise


def check_noise_level(sigma: Tensor | float) -> None:
    """Raise ValueError unless every value of ``sigma`` (a number or a tensor) is finite and
    >= 0, saying it (a tensor's first 4 values). For a CUDA tensor this is a GPU sync."""
    level = torch.as_tensor(sigma)
    if bool(torch.isfinite(level).all() and (level >= 0).all()):
        return
    if level.ndim == 0:
        shown = f"{float(level):g}"
    else:
        values = ", ".join(f"{float(v):g}" for v in level.flatten()[:4])
        shown = f"[{values}{', ...' if level.numel() > 4 else ''}]"
    raise ValueError(f"sigma must be finite and >= 0, not {shown}")


def _per_sample(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a float or an ``(N,)`` tensor of noise levels against ``x`` (``N x ...``)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


LOSS_WEIGHTS = ("simple", "snr", "snr+1", "min_snr", "edm")


def loss_weight(
    sigma: Tensor, kind: str = "edm", *, gamma: float = 5.0, sigma_data: float = 0.5
) -> Tensor:
    """Weight lambda(sigma) of the denoising loss
    ``lambda(sigma) * ||D(x0 + sigma n, sigma) - x0||^2``.

    All weightings are stated for the error of the x0 estimate D; with ``SNR = 1 / sigma**2``:

    - ``simple``: ``SNR`` — equals the unweighted eps-MSE of Ho et al. 2020 (L_simple).
    - ``snr``: ``1`` — the x0-MSE, i.e. eps-MSE weighted by SNR.
    - ``snr+1``: ``SNR + 1`` — equals the unweighted v-MSE (Salimans & Ho 2022).
    - ``min_snr``: ``min(SNR, gamma)`` — Min-SNR-gamma (Hang et al. 2023), gamma = 5 by default.
    - ``edm``: ``(sigma^2 + sigma_data^2) / (sigma * sigma_data)^2`` (Karras et al. 2022, eq. 8 /
      Table 1), which makes the effective network target have unit variance.
    """
    snr = sigma.pow(-2)
    if kind == "simple":
        return snr
    if kind == "snr":
        return torch.ones_like(sigma)
    if kind == "snr+1":
        return snr + 1
    if kind == "min_snr":
        return snr.clamp(max=gamma)
    if kind == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    raise ValueError(f"unknown loss weighting {kind!r}; choose from {', '.join(LOSS_WEIGHTS)}")
