"""Log-likelihood through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

Along the flow ``dx/dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma`` the density of the noisy
marginal changes by the instantaneous change of variables (Chen et al. 2018, "Neural ODEs",
Theorem 1): ``d log p(x(sigma); sigma) / dsigma = -div f``. Integrating from ``sigma_min`` up to
``sigma_max``, where p is close to ``N(0, sigma_max^2 I)``::

    log p(x; sigma_min) = log N(x(sigma_max); 0, sigma_max^2 I) + integral div f dsigma,
    div f = (d - div_x D) / sigma.

``div_x D`` is computed exactly (d backward passes) for small d, otherwise by the Hutchinson
estimator ``E[e^T (dD/dx) e]`` with Rademacher probes ``e`` held fixed along the path.

8-bit images: for pixels ``k`` in 0..255 mapped to [-1, 1], uniform dequantisation
``x = 2 (k + u) / 256 - 1`` (:func:`dequantize`) gives bins of width 2/256, and
``log P(k) >= E_u[log p(x)] + d log(2/256)``, so
``bits/dim = -log p(x) / (d ln 2) + log2(256 / 2)`` (``bins=256``: +7 bits for data in [-1, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..denoiser import memory_probe
from ..memory import check_batch_fits
from ..process import check_int, check_range
from .base import DenoiserFn, check_generator, check_shape, denoise

__all__ = ["LikelihoodResult", "check_likelihood_fits", "dequantize", "likelihood"]


@dataclass
class LikelihoodResult:
    """Per-sample results of :func:`likelihood` (all float64 tensors of shape ``(N,)``).

    log_prob: log-density (nats) of the data under the model's p(x; sigma_min).
    bits_per_dim: ``-log_prob / (d ln 2)``, plus ``log2(bins / 2)`` when ``bins`` is given.
    prior_log_prob: the prior term at sigma_max; delta_log_prob: the ODE integral.
    nfe: denoiser evaluations used (an int).
    """

    log_prob: Tensor
    bits_per_dim: Tensor
    prior_log_prob: Tensor
    delta_log_prob: Tensor
    nfe: int


def dequantize(x: Tensor, generator: torch.Generator | None = None, bins: int = 256) -> Tensor:
    """Uniform dequantisation of images in [-1, 1] with ``bins`` levels ``k / (bins-1) * 2 - 1``:
    returns ``2 (k + u) / bins - 1`` with ``u ~ U[0, 1)``, same shape and dtype."""
    k = torch.round((x + 1) * (bins - 1) / 2)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return 2 * (k + u) / bins - 1


def _divergence(denoiser: DenoiserFn, x: Tensor, sigma: float, probes: Tensor | None):
    """``D(x, sigma)`` and ``div_x D`` per sample (exact when ``probes`` is None)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = denoise(denoiser, x, sigma)
        if probes is None:
            flat_out = out.flatten(1)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(flat_out.shape[1]):
                (grad,) = torch.autograd.grad(flat_out[:, j].sum(), x, retain_graph=True)
                div = div + grad.flatten(1)[:, j]
        else:
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for k, e in enumerate(probes):
                (grad,) = torch.autograd.grad((out * e).sum(), x, retain_graph=k + 1 < len(probes))
                div = div + (grad * e).flatten(1).sum(1)
            div = div / len(probes)
    return out.detach(), div.detach()


def likelihood(
    denoiser: DenoiserFn,
    x: Tensor,
    *,
    sigma_min: float = 1e-3,
    sigma_max: float = 80.0,
    steps: int = 32,
    exact: bool | None = None,
    probes: int = 1,
    generator: torch.Generator | None = None,
    bins: int | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
    callback: Callable[[dict], None] | None = None,
) -> LikelihoodResult:
    """Log-likelihood of data ``x`` (``N x ...``, in [-1, 1] for images) by the PF-ODE.

    Args:
        denoiser: ``D(x, sigma)``.
        sigma_min: the noise level whose marginal is evaluated (small: p(x; sigma_min) ~ p(x)).
        sigma_max: where the prior ``N(0, sigma_max^2 I)`` is used (data units).
        steps: fourth-order Runge-Kutta steps, uniform in log sigma from sigma_min to
            sigma_max; NFE = 4 * steps.
        exact: exact divergence (d backward passes per evaluation); default: ``d <= 64``.
        probes: Rademacher probes for the Hutchinson estimator (when not exact).
        generator: randomness of the probes.
        bins: quantisation levels of the data (e.g. 256 for 8-bit images after
            :func:`dequantize`) for bits/dim; None for continuous data.
        prior_log_prob: log-density of p(x; sigma_max) as a function of ``x`` (returns ``(N,)``);
            default ``N(0, sigma_max^2 I)``, whose error is about ``|mean|^2 / sigma_max^2`` plus
            ``d Var / sigma_max^2`` nats for data of that mean and variance.
        callback: called after each Runge-Kutta step with ``{"i": step (from 0), "sigma":
            the noise level reached}`` (a progress bar, say).
    """
    if not (isinstance(x, Tensor) and x.is_floating_point() and bool(torch.isfinite(x).all())):
        raise ValueError("x must be a float tensor of finite values")
    check_shape(denoiser, tuple(x.shape))
    check_range(sigma_min, sigma_max)
    check_generator(generator)
    for name, value, least in (("steps", steps, 1), ("probes", probes, 1), ("bins", bins, 2)):
        if value is not None:
            check_int(name, value, least)
    d = x[0].numel()
    if exact is None:
        exact = d <= 64
    probe_vectors = None
    if not exact:
        shape = (probes, *x.shape)
        signs = torch.randint(0, 2, shape, generator=generator, device="cpu")
        probe_vectors = (2 * signs - 1).to(dtype=x.dtype, device=x.device)
    # Integrate in u = log sigma, where dx/du = x - D and d(delta)/du = d - div D are smooth.
    grid = torch.linspace(math.log(sigma_min), math.log(sigma_max), steps + 1, dtype=torch.float64)

    def rhs(y: Tensor, u: float) -> tuple[Tensor, Tensor]:
        denoised, div_d = _divergence(denoiser, y, math.exp(u), probe_vectors)
        return y - denoised, (d - div_d).to(torch.float64)

    y = x.detach().clone()
    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i, (u, u_next) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
        # Classical fourth-order Runge-Kutta on the augmented state (x, delta).
        h = u_next - u
        k1, l1 = rhs(y, u)
        k2, l2 = rhs(y + 0.5 * h * k1, u + 0.5 * h)
        k3, l3 = rhs(y + 0.5 * h * k2, u + 0.5 * h)
        k4, l4 = rhs(y + h * k3, u_next)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + h / 6 * (l1 + 2 * l2 + 2 * l3 + l4)
        if callback is not None:
            callback({"i": i, "sigma": math.exp(u_next)})
    if prior_log_prob is not None:
        prior = prior_log_prob(y).to(torch.float64)
    else:
        flat = y.flatten(1).to(torch.float64)
        prior = -0.5 * (flat**2).sum(1) / sigma_max**2 - d * (
            math.log(sigma_max) + 0.5 * math.log(2 * math.pi)
        )
    log_prob = prior + delta
    bpd = -log_prob / (d * math.log(2))
    if bins is not None:
        bpd = bpd + math.log2(bins / 2)
    return LikelihoodResult(log_prob, bpd, prior, delta, nfe=4 * steps)


def check_likelihood_fits(
    denoiser: DenoiserFn,
    shape: tuple[int, ...],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    advice: str = "compute it for fewer images at a time",
    what: str | None = None,
) -> None:
    """Raise ValueError when :func:`likelihood` of ``shape`` (``N x ...``) surely does not fit
    in ``device``'s memory: when one divergence evaluation on N images (the denoiser and a
    vector-Jacobian product, whose graph keeps the network's activations) needs more than is
    free, counted as :func:`diffvision.memory.check_batch_fits` does (a lower bound: the ODE's
    state comes on top). The check evaluates it on 1 and 2 images. ``what`` names the call in
    the message (default: "the likelihood of N images of C x H x W at once")."""
    device = torch.device(device)
    probe, count = memory_probe(denoiser, shape[0], graph=True)  # a class mixture: one branch

    def run_on(n: int) -> tuple[Tensor, Tensor]:
        x = torch.zeros((n, *shape[1:]), dtype=dtype, device=device)
        return _divergence(probe, x, 1.0, torch.ones((1, *x.shape), dtype=dtype, device=device))

    what = (
        what or f"the likelihood of {shape[0]} images of {' x '.join(map(str, shape[1:]))} at once"
    )
    check_batch_fits(run_on, count, device, what, advice)
