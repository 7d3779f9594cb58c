"""The denoiser ``D(x, sigma, cond) -> x0 estimate``: a network plus a parametrisation.

A network ``F`` is wrapped as (Karras et al. 2022, "EDM", eq. 7)::

    D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma), cond)

and the parametrisations differ only in these coefficients:

===========  ==================  ======================  =====================  ==================
prediction   c_skip              c_out                   c_in                   c_noise
===========  ==================  ======================  =====================  ==================
``eps``      1                   -sigma                  schedule (VP: a)       schedule.t(sigma)
``x0``       0                   1                       schedule (VP: a)       schedule.t(sigma)
``v``        1/(1+sigma^2)       -sigma/sqrt(1+sigma^2)  1/sqrt(1+sigma^2)      schedule.t(sigma)
``edm``      sd^2/(s^2+sd^2)     s sd/sqrt(s^2+sd^2)     1/sqrt(s^2+sd^2)       ln(sigma)/4
===========  ==================  ======================  =====================  ==================

with ``a = 1/sqrt(1+sigma^2)`` (the VP scaling; 1 for VE/EDM schedules), ``s = sigma`` and
``sd = sigma_data``. The ``v`` row is the v-prediction of Salimans & Ho 2022
(``v = sqrt(abar) eps - sqrt(1-abar) x0`` in VP variables); the ``edm`` row is EDM Table 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .process import Schedule, _per_sample

__all__ = ["PREDICTIONS", "Denoiser", "guided"]

PREDICTIONS = ("eps", "x0", "v", "edm")


class _EpsFn(nn.Module):
    """Adapts a plain ``eps_fn(x_t, t)`` to the network signature ``F(x, c_noise, cond)``."""

    def __init__(self, eps_fn: Callable[[Tensor, Tensor], Tensor]):
        super().__init__()
        self.eps_fn = eps_fn

    def forward(self, x: Tensor, c_noise: Tensor, cond=None) -> Tensor:
        if cond is not None:
            raise ValueError("a wrapped eps_fn takes no condition")
        return self.eps_fn(x, c_noise)


class Denoiser(nn.Module):
    """Wraps a network into the denoiser ``D(x, sigma, cond=None)``.

    Args:
        net: module called as ``net(x_in, c_noise, cond)`` (``cond`` is omitted when None) that
            returns a tensor shaped like ``x_in``. ``c_noise`` is a tensor of shape ``(N,)``.
        prediction: what the network predicts: ``eps``, ``x0``, ``v`` or ``edm`` (see module doc).
        schedule: the noise schedule the network was trained with; it provides the network's
            time input ``t(sigma)``, the VP input scaling and the sigma range. Required for
            ``eps``, ``x0`` and ``v``.
        sigma_data: standard deviation of the data, used by ``edm`` (0.5 for images in [-1, 1]).
        null_cond: the condition that means "no condition" (e.g. the null class index), used by
            classifier-free guidance.

    Calling: ``D(x, sigma, cond=None)`` with ``x`` of shape ``N x ...`` in sigma space
    (``x = x0 + sigma * noise``), ``sigma`` a float or a tensor of shape ``(N,)``; returns the
    x0 estimate, same shape and dtype as ``x``.
    """

    def __init__(
        self,
        net: nn.Module,
        prediction: str = "eps",
        schedule: Schedule | None = None,
        *,
        sigma_data: float = 0.5,
        null_cond=None,
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; choose from {PREDICTIONS}")
        if schedule is None and prediction != "edm":
            raise ValueError(f"prediction {prediction!r} needs the schedule the net was trained on")
        self.net = net
        self.prediction = prediction
        self.schedule = schedule
        self.sigma_data = float(sigma_data)
        self.null_cond = null_cond

    @classmethod
    def from_eps_fn(cls, eps_fn: Callable[[Tensor, Tensor], Tensor], schedule: Schedule):
        """Wrap ``eps_fn(x_t, t) -> eps`` of a VP model (e.g. a DDPM trained on a
        :class:`~diffvision.process.DiscreteVP` schedule, ``t`` a float timestep of shape ``(N,)``,
        ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``)."""
        if not schedule.vp:
            raise ValueError("from_eps_fn expects a VP schedule (x_t = sqrt(abar) x0 + ...)")
        return cls(_EpsFn(eps_fn), "eps", schedule)

    @property
    def sigma_min(self) -> float:
        return self.schedule.sigma_min if self.schedule is not None else 0.002

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max if self.schedule is not None else 80.0

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape)."""
        one = torch.ones_like(sigma)
        if self.prediction == "edm":
            sd = self.sigma_data
            c_skip = sd**2 / (sigma**2 + sd**2)
            c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
            c_in = 1 / (sigma**2 + sd**2).sqrt()
            return c_skip, c_out, c_in, sigma.log() / 4
        c_in = 1 / (1 + sigma**2).sqrt() if self.schedule.vp else one
        c_noise = self.schedule.t(sigma)
        if self.prediction == "eps":
            return one, -sigma, c_in, c_noise
        if self.prediction == "x0":
            return torch.zeros_like(sigma), one, c_in, c_noise
        # v-prediction: x0 = a x_t - s v with a = 1/sqrt(1+sigma^2), s = sigma/sqrt(1+sigma^2).
        vp_in = 1 / (1 + sigma**2).sqrt()
        return vp_in**2, -sigma * vp_in, vp_in, c_noise

    def forward(self, x: Tensor, sigma: Tensor | float, cond=None) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must be a float or shape ({x.shape[0]},), got {tuple(sigma.shape)}"
            )
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        x_in = _per_sample(c_in, x) * x
        out = self.net(x_in, c_noise) if cond is None else self.net(x_in, c_noise, cond)
        return _per_sample(c_skip, x) * x + _per_sample(c_out, x) * out.to(x.dtype)


def guided(
    denoiser: Callable[..., Tensor], cond, scale: float, null_cond=None
) -> Callable[[Tensor, Tensor | float], Tensor]:
    """Classifier-free guidance (Ho & Salimans 2022):
    ``D_w = D(x, sigma, null) + scale * (D(x, sigma, cond) - D(x, sigma, null))``.

    ``scale = 1`` is the plain conditional model, ``scale = 0`` the unconditional one. Both
    branches run in one batched call when ``cond`` is a tensor. ``null_cond`` defaults to
    ``denoiser.null_cond``; a scalar null condition is broadcast to the batch.
    Returns a denoiser ``D_w(x, sigma)`` for the samplers.
    """
    if null_cond is None:
        null_cond = getattr(denoiser, "null_cond", None)
    if scale == 1.0:
        return lambda x, sigma: denoiser(x, sigma, cond)
    if null_cond is None:
        raise ValueError("classifier-free guidance needs a null condition (null_cond)")

    def guided_denoiser(x: Tensor, sigma: Tensor | float) -> Tensor:
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(n)
        c = torch.as_tensor(cond, device=x.device)
        c = c.expand(n, *c.shape[1:]) if c.ndim else c.expand(n)
        null = torch.as_tensor(null_cond, device=x.device, dtype=c.dtype).expand_as(c)
        both = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([c, null]))
        d_cond, d_null = both[:n], both[n:]
        return d_null + scale * (d_cond - d_null)

    return guided_denoiser
