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

import inspect
import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from .process import (
    Schedule,
    _per_sample,
    check_int,
    check_noise_level,
    check_positive,
    is_number,
)

__all__ = ["PREDICTIONS", "ClassMixture", "Denoiser", "guided"]

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
            classifier-free guidance. None for a class network means that it learnt none
            (label dropout 0): a call without ``cond`` is then refused.

    Calling: ``D(x, sigma, cond=None)`` with ``x`` of shape ``N x ...`` in sigma space
    (``x = x0 + sigma * noise``), ``sigma`` a float or a tensor of shape ``(N,)``; returns the
    x0 estimate, same shape and dtype as ``x`` (the network runs in its weights' dtype: a
    float64 ``x`` meets a float32 network in float32, the skip path staying in float64).

    ``autocast`` (default None): a dtype such as ``torch.bfloat16`` in which the *network* runs
    (``torch.autocast``), for speed at inference; the preconditioning (``c_skip x``, which
    carries nearly all of D at low sigma) stays in ``x``'s dtype.
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
        check_positive(sigma_data=sigma_data)
        self.net = net
        self.prediction = prediction
        self.schedule = schedule
        self.sigma_data = float(sigma_data)
        self.null_cond = null_cond
        self.autocast: torch.dtype | None = None

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
        if not isinstance(sigma, Tensor) or sigma.device.type == "cpu":  # no GPU sync
            check_noise_level(sigma)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must be a float or shape ({x.shape[0]},), got {tuple(sigma.shape)}"
            )
        if cond is None and self.null_cond is None and class_count(self):
            raise ValueError(
                "this class model learnt no null class (trained with label dropout 0): give "
                "class labels (cond), or mix the class branches (ClassMixture)"
            )
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        x_in = _per_sample(c_in, x) * x
        weights = getattr(self.net, "parameters", None)  # a plain callable has none
        weight = next(weights(), None) if weights is not None else None
        if weight is not None and weight.dtype != x.dtype:  # e.g. float64 from numpy: the
            x_in, c_noise = x_in.to(weight.dtype), c_noise.to(weight.dtype)  # net's own dtype
        low = (  # None: leave any autocast the caller set (training's bf16) as it is
            nullcontext() if self.autocast is None else torch.autocast(x.device.type, self.autocast)
        )
        with low:
            out = self.net(x_in, c_noise) if cond is None else self.net(x_in, c_noise, cond)
        return _per_sample(c_skip, x) * x + _per_sample(c_out, x) * out.to(x.dtype)


def _net_config(denoiser):
    """A loaded model's network config, alone or inside a wrapper that keeps the model as
    ``.denoiser`` (a :class:`ClassMixture`, a tiled denoiser); None for others."""
    model = getattr(denoiser, "denoiser", denoiser)
    return getattr(getattr(model, "net", None), "config", None)


def image_channels(denoiser) -> int | None:
    """The channels of the images ``denoiser`` makes, where it states them: a loaded model's
    network (its config's ``out_channels``, see :func:`_net_config`); None for others (the
    analytic denoisers), which callers then take at their word."""
    return getattr(_net_config(denoiser), "out_channels", None)


def class_count(denoiser) -> int | None:
    """The number of classes of ``denoiser``'s network (0: unconditional; its label
    ``class_count`` is the null class), where it states them (see :func:`_net_config`); None
    for others."""
    return getattr(_net_config(denoiser), "num_classes", None)


def takes_cond(denoiser) -> bool:
    """Whether ``denoiser`` can be called as ``D(x, sigma, cond)``, by its signature (True where
    it has none that Python can read)."""
    try:
        params = inspect.signature(denoiser).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    return sum(p.kind in positional for p in params) >= 3


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
    if not (is_number(scale) and -math.inf < scale < math.inf):  # NaN: NaN samples; "2": <
        raise ValueError(f"the guidance scale must be a finite number, not {scale!r}")
    if scale != 1.0 and cond is None:  # was a RuntimeError from torch.as_tensor(None)
        raise ValueError("classifier-free guidance needs a condition (cond) to guide towards")
    if null_cond is None:
        null_cond = getattr(denoiser, "null_cond", None)
    if scale == 1.0:
        return lambda x, sigma: denoiser(x, sigma, cond)
    if null_cond is None:
        raise ValueError(
            "classifier-free guidance needs a null condition (null_cond; a class model "
            "trained with label dropout 0 learnt none)"
        )

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


class ClassMixture:
    """An unconditional denoiser built from the class-conditional branches of ``denoiser``,
    weighted by a class posterior (Bayes' rule for ``x = x0 + sigma * noise``)::

        E[x0 | x] = sum_c p(c | x, sigma) E[x0 | x, c],  so  D(x, sigma) = sum_c p_c D(x, sigma, c)

    With the exact posterior and exact class branches this *is* the unconditional denoiser; with a
    learned classifier it replaces a model's null branch, which must pick the class by itself.

    Args:
        denoiser: a class-conditional ``D(x, sigma, cond)`` (``cond``: ``(N,)`` labels).
        class_logits: ``f(x, sigma) -> N x K`` logits (or log-probabilities) of ``p(c | x, sigma)``
            for ``x`` of shape ``N x ...`` and ``sigma`` of shape ``(N,)``, e.g. a
            :class:`~diffvision.nets.classifier.NoiseClassifier`.
        min_prob: classes with ``p_c < min_prob`` are skipped and the rest renormalised (the most
            likely class is always kept). The result moves by at most ``(dropped mass) * max |D_c -
            D_c'|`` per element, the dropped mass being below ``K * min_prob``; 0 evaluates every
            class of nonzero weight (exact). Late in sampling one or two classes carry all the
            mass, so this halves the cost (digits demo: 5.0-5.1 of 10 classes per call).
        max_batch: at most this many (sample, class) pairs per call of ``denoiser`` (bounds the
            memory: 1,000 demo digits peak at 1.2 GiB resident with 1,024, 1.5 GiB with 2,048).

    ``evaluations`` counts the (sample, class) pairs evaluated and ``rows`` the samples, so
    ``evaluations / rows`` is the mean number of classes per sample and call.
    """

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        class_logits: Callable[[Tensor, Tensor], Tensor],
        *,
        min_prob: float = 1e-4,
        max_batch: int = 1024,
    ):
        if not 0 <= min_prob < 1:
            raise ValueError("min_prob must be in [0, 1)")
        check_int("max_batch", max_batch, 1)
        self.classes = class_count(denoiser)  # None where the denoiser does not state it
        # a denoiser without classes was a TypeError, or an error of its network, at its call
        if not takes_cond(denoiser) or self.classes == 0:
            raise ValueError("ClassMixture mixes the class branches of a class-conditional "
                             "D(x, sigma, cond): this denoiser has none")  # fmt: skip
        self.denoiser, self.class_logits = denoiser, class_logits
        self.min_prob, self.max_batch = min_prob, max_batch
        self.sigma_min = getattr(denoiser, "sigma_min", 0.002)
        self.sigma_max = getattr(denoiser, "sigma_max", 80.0)
        self.schedule = getattr(denoiser, "schedule", None)
        self.evaluations = self.rows = 0

    def weights(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The mixture weights ``N x K``: the posterior, pruned below ``min_prob``, renormalised."""
        logits = self.class_logits(x, sigma)
        if (
            logits.shape[:1] != x.shape[:1]
            or logits.ndim != 2
            or (self.classes is not None and logits.shape[1] != self.classes)
        ):  # fewer classes mixed some alone, more took the null class for one, without a word
            raise ValueError(
                f"the classifier gave logits of shape {tuple(logits.shape)} for {len(x)} images "
                f"of a model of {self.classes or 'K'} classes: one row of "
                f"{self.classes or 'K'} per image"
            )
        p = torch.softmax(logits.to(x.dtype), dim=1)
        keep = p >= self.min_prob
        keep[torch.arange(len(p), device=p.device), p.argmax(1)] = True
        p = p * keep
        return p / p.sum(1, keepdim=True)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(n)
        w = self.weights(x, sigma)
        rows, labels = w.nonzero(as_tuple=True)
        out = torch.zeros_like(x)
        for i in range(0, len(rows), self.max_batch):
            r, c = rows[i : i + self.max_batch], labels[i : i + self.max_batch]
            d = self.denoiser(x[r], sigma[r], c)
            out.index_add_(0, r, _per_sample(w[r, c], d) * d)
        self.evaluations += len(rows)
        self.rows += n
        return out


def memory_probe(denoiser, n: int, graph: bool = False) -> tuple[Callable[..., Tensor], int]:
    """``(D, m)``: what a memory check of ``denoiser`` on ``n`` images runs, ``D(x, sigma)`` on
    ``m`` images, so that it counts a lower bound of what they hold. A :class:`ClassMixture`
    evaluates at least one class branch per image, at most ``max_batch`` (image, class) pairs
    per call: its first class branch on ``min(n, max_batch)`` images (on all ``n`` with
    ``graph``: a gradient keeps every call's activations). Probing the mixture itself would
    count every class above ``min_prob`` on a test input, and more pairs than one call takes.
    Another denoiser: itself, on ``n``."""
    if not isinstance(denoiser, ClassMixture):
        return denoiser, n
    branch = denoiser.denoiser

    def first_class(x: Tensor, sigma: Tensor) -> Tensor:
        return branch(x, sigma, torch.zeros(len(x), dtype=torch.long, device=x.device))

    return first_class, n if graph else min(n, denoiser.max_batch)
