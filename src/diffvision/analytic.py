"""Exact references: closed-form denoisers for data whose noisy marginals are known exactly.

Each class is a callable ``D(x, sigma)`` with the same contract as a trained
:class:`~diffvision.denoiser.Denoiser`: ``x`` is ``N x d`` or image-shaped ``N x C x H x W``
(flattened to ``d = C*H*W`` inside), ``sigma`` a float or a tensor of shape ``(N,)``, and the
result is the exact posterior mean ``E[x0 | x0 + sigma * n = x]`` with the shape and dtype of
``x``. All arithmetic is done in float64.

They are used to verify samplers (against :meth:`GaussianDenoiser.ode_map`, the exact
probability-flow map), likelihoods (against ``log_prob``) and restoration tasks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["EmpiricalDenoiser", "GaussianDenoiser", "GaussianMixtureDenoiser"]

_LOG_2PI = math.log(2 * math.pi)


def _flatten(x: Tensor, dim: int) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != dim:
        raise ValueError(f"expected {dim} values per sample, got shape {tuple(x.shape)}")
    return flat.to(torch.float64)


def _sigma_column(sigma: Tensor | float, n: int) -> Tensor:
    """Noise levels as an ``n x 1`` float64 column."""
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
    if s.shape[0] not in (1, n):
        raise ValueError(f"sigma must be a float or have {n} entries, got {s.shape[0]}")
    return s.expand(n, 1)


class GaussianDenoiser:
    """Exact denoiser for data ``x0 ~ N(mean, cov)``.

    Args:
        mean: tensor of shape ``(d,)`` or the shape of one sample (e.g. ``C x H x W``).
        cov: a ``d x d`` covariance matrix, or ``d`` variances (a diagonal covariance).

    With ``cov = U diag(lam) U^T`` the noisy marginal is ``N(mean, cov + sigma^2 I)`` and
    ``D(x, sigma) = mean + U diag(lam / (lam + sigma^2)) U^T (x - mean)``.
    """

    def __init__(self, mean: Tensor, cov: Tensor):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        self.sample_shape = tuple(mean.shape)
        self.mean = mean.reshape(-1)
        self.dim = self.mean.numel()
        if cov.shape == (self.dim, self.dim) and self.dim > 1:
            if not torch.allclose(cov, cov.T, atol=1e-10):
                raise ValueError("cov must be symmetric")
            self.eigvals, self.eigvecs = torch.linalg.eigh(cov)
            self._cov = cov.clone()  # as given: eigh's basis depends on the LAPACK build
        elif cov.numel() == self.dim:
            self.eigvals, self.eigvecs, self._cov = cov.reshape(-1), None, None
        else:
            raise ValueError(f"cov must be {self.dim} variances or a {self.dim}x{self.dim} matrix")
        if bool((self.eigvals < -1e-12).any()):
            raise ValueError("cov must be positive semi-definite")
        self.eigvals = self.eigvals.clamp(min=0)

    # Coordinates in the eigenbasis of cov, centred on the mean.
    def _to_eig(self, flat: Tensor) -> Tensor:
        centred = flat - self.mean
        return centred if self.eigvecs is None else centred @ self.eigvecs

    def _from_eig(self, z: Tensor) -> Tensor:
        return self.mean + (z if self.eigvecs is None else z @ self.eigvecs.T)

    def _shrink(self, sigma: Tensor) -> Tensor:
        """lam / (lam + sigma^2), with the sigma = 0 limit 1 for a zero eigenvalue."""
        denom = self.eigvals + sigma**2
        return torch.where(denom > 0, self.eigvals / denom.clamp(min=1e-300), 1.0)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        flat = _flatten(x, self.dim)
        z = self._to_eig(flat) * self._shrink(_sigma_column(sigma, len(flat)))
        return self._from_eig(z).reshape(x.shape).to(x.dtype)

    def ode_map(self, x: Tensor, sigma_from: float | Tensor, sigma_to: float | Tensor) -> Tensor:
        """Exact solution of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
        from noise level ``sigma_from`` to ``sigma_to``: in the eigenbasis each coordinate scales
        by ``sqrt((lam + sigma_to^2) / (lam + sigma_from^2))``."""
        flat = _flatten(x, self.dim)
        s_from = _sigma_column(sigma_from, len(flat))
        s_to = _sigma_column(sigma_to, len(flat))
        ratio = ((self.eigvals + s_to**2) / (self.eigvals + s_from**2)).sqrt()
        return self._from_eig(self._to_eig(flat) * ratio).reshape(x.shape).to(x.dtype)

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Exact log-density (nats) of the noisy marginal ``N(mean, cov + sigma^2 I)`` at ``x``;
        returns shape ``(N,)``, float64."""
        flat = _flatten(x, self.dim)
        var = self.eigvals + _sigma_column(sigma, len(flat)) ** 2
        z = self._to_eig(flat)
        return -0.5 * (z**2 / var + var.log() + _LOG_2PI).sum(dim=1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0
    ) -> Tensor:
        """``n`` exact samples of the noisy marginal at ``sigma`` (0: the data), float64,
        shaped ``n x sample_shape``."""
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self._draw(eps, sigma).reshape(n, *self.sample_shape)

    def _draw(self, eps: Tensor, sigma: float) -> Tensor:
        """``mean + L eps``: samples of ``N(mean, cov + sigma^2 I)`` from standard normal ``eps``
        (``n x d``), with L the Cholesky factor of the covariance as given (not rebuilt from
        its eigenbasis). L is unique, so a seeded draw is the same on every machine, where an
        eigenvector basis is not (its signs, and its axes within a repeated eigenvalue, depend
        on the LAPACK build). A covariance that is singular at this sigma is drawn in the
        eigenbasis instead."""
        if self._cov is not None:
            eye = torch.eye(self.dim, dtype=torch.float64)
            chol, info = torch.linalg.cholesky_ex(self._cov + sigma**2 * eye)
            if int(info) == 0:
                return self.mean + eps @ chol.T
        return self._from_eig(eps * (self.eigvals + sigma**2).sqrt())

    def covariance(self) -> Tensor:
        """The ``d x d`` data covariance (a copy of the one given)."""
        if self._cov is None:
            return torch.diag(self.eigvals)
        return self._cov.clone()


class GaussianMixtureDenoiser:
    """Exact denoiser for a mixture ``x0 ~ sum_k w_k N(mu_k, C_k)``.

    Args:
        weights: ``(K,)`` non-negative mixture weights (normalised inside).
        means: ``K x d`` (or ``K x sample_shape``) component means.
        covs: ``K x d x d`` covariances or ``K x d`` variances.

    ``D(x, sigma) = sum_k r_k(x, sigma) D_k(x, sigma)`` with responsibilities
    ``r_k ∝ w_k N(x; mu_k, C_k + sigma^2 I)`` and ``D_k`` the Gaussian denoiser of component k.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if weights.ndim != 1 or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError("weights must be a 1-D tensor of non-negative values, not all zero")
        if len(means) != len(weights) or len(covs) != len(weights):
            raise ValueError("weights, means and covs must have the same number of components")
        self.weights = weights / weights.sum()
        self.components = [GaussianDenoiser(m, c) for m, c in zip(means, covs, strict=True)]
        self.sample_shape = self.components[0].sample_shape
        self.dim = self.components[0].dim

    def _log_joint(self, x: Tensor, sigma) -> Tensor:
        """``N x K`` matrix of ``log w_k + log N_k(x; sigma)``."""
        return (
            torch.stack([c.log_prob(x, sigma) for c in self.components], dim=1) + self.weights.log()
        )

    def responsibilities(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Posterior component probabilities, ``N x K``."""
        return torch.softmax(self._log_joint(x, sigma), dim=1)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        r = self.responsibilities(x, sigma)
        out = sum(
            r[:, k : k + 1] * _flatten(c(x.to(torch.float64), sigma), self.dim)
            for k, c in enumerate(self.components)
        )
        return out.reshape(x.shape).to(x.dtype)

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Exact log-density (nats) of the noisy marginal at ``x``; shape ``(N,)``, float64."""
        return torch.logsumexp(self._log_joint(x, sigma), dim=1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """``n`` exact samples of the noisy marginal at ``sigma`` and their component labels:
        ``(n x sample_shape float64, (n,) int64)``."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        out = torch.empty(n, self.dim, dtype=torch.float64)
        for k, c in enumerate(self.components):
            sel = labels == k
            out[sel] = c._draw(eps[sel], sigma)
        return out.reshape(n, *self.sample_shape), labels


class EmpiricalDenoiser:
    """The ideal denoiser of a finite data set ``{p_1..p_M}`` (uniform weights):
    ``D(x, sigma) = sum_i softmax_i(-||x - p_i||^2 / (2 sigma^2)) p_i``.

    Args:
        points: ``M x d`` or ``M x sample_shape`` data points.
        labels: optional ``(M,)`` integer class of each point; with it, ``D(x, sigma, cond)``
            is the ideal class-conditional denoiser (the sum runs over the points of class
            ``cond[n]`` only), and rows whose ``cond`` equals ``null_cond`` use all points.
        null_cond: the label that stands for "no class" (classifier-free guidance's null class).

    Sampling its probability-flow ODE to sigma = 0 reproduces training points (memorisation),
    which makes it a reference for what a perfectly trained network would do.
    """

    def __init__(self, points: Tensor, labels: Tensor | None = None, null_cond: int | None = None):
        points = torch.as_tensor(points, dtype=torch.float64)
        if points.ndim < 2 or len(points) == 0:
            raise ValueError("points must be M x d (or M x sample_shape) with M >= 1")
        self.sample_shape = tuple(points.shape[1:])
        self.points = points.reshape(len(points), -1)
        self.dim = self.points.shape[1]
        self._sq_norms = (self.points**2).sum(dim=1)
        self.labels = None if labels is None else torch.as_tensor(labels, device=points.device)
        if self.labels is not None and self.labels.shape != (len(points),):
            raise ValueError(f"labels must have shape ({len(points)},)")
        self.null_cond = null_cond

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None) -> Tensor:
        flat = _flatten(x, self.dim)
        s = _sigma_column(sigma, len(flat))
        if bool((s <= 0).any()):
            raise ValueError("EmpiricalDenoiser needs sigma > 0")
        # ||x - p||^2 up to a per-row constant, which softmax ignores.
        logits = (flat @ self.points.T - 0.5 * self._sq_norms) / s**2
        if cond is not None:
            if self.labels is None:
                raise ValueError("cond needs points with labels")
            cond = torch.as_tensor(cond, device=self.labels.device).reshape(-1, 1)
            allowed = (self.labels[None, :] == cond) | (cond == self.null_cond)
            if not bool(allowed.any(1).all()):
                raise ValueError("cond names a class without points")
            logits = logits.masked_fill(~allowed, -math.inf)
        out = torch.softmax(logits, dim=1) @ self.points
        return out.reshape(x.shape).to(x.dtype)

    def class_log_posterior(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Exact ``log p(c | x, sigma)`` of the labelled data (uniform over points, so a class's
        prior is its share of the points): ``log sum_{i in c} softmax_i``. Shape ``N x K`` with
        ``K = max label + 1``, float64; a class without points gets ``-inf``."""
        if self.labels is None:
            raise ValueError("class_log_posterior needs points with labels")
        flat = _flatten(x, self.dim)
        s = _sigma_column(sigma, len(flat))
        if bool((s <= 0).any()):
            raise ValueError("EmpiricalDenoiser needs sigma > 0")
        log_w = torch.log_softmax((flat @ self.points.T - 0.5 * self._sq_norms) / s**2, dim=1)
        classes = int(self.labels.max()) + 1
        out = torch.full((len(flat), classes), -math.inf, dtype=torch.float64)
        for c in range(classes):
            members = self.labels == c
            if bool(members.any()):
                out[:, c] = torch.logsumexp(log_w[:, members], dim=1)
        return out

    def log_prob(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Log-density (nats) of the mixture ``(1/M) sum_i N(p_i, sigma^2 I)``; shape ``(N,)``."""
        flat = _flatten(x, self.dim)
        s = _sigma_column(sigma, len(flat))
        sq = ((flat[:, None, :] - self.points[None]) ** 2).sum(-1)
        log_norm = self.dim * (s.log() + 0.5 * _LOG_2PI) + math.log(len(self.points))
        return torch.logsumexp(-0.5 * sq / s**2, dim=1) - log_norm[:, 0]
