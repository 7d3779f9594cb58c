"""Distances between two sets of features (``N x F`` tensors or arrays), any feature extractor.

- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to the two sets
  (Heusel et al. 2017, "FID" when the features are Inception pool features);
- :func:`kernel_distance`: the unbiased squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / F + 1)^3`` averaged over random subsets (Bińkowski et al. 2018, "KID");
- :func:`precision_recall`: k-NN manifold precision and recall (Kynkäänniemi et al. 2019) and
  density and coverage (Naeem et al. 2020);
- :func:`sliced_wasserstein`: the sliced 2-Wasserstein distance (random unit directions).

All computations are in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..process import check_int


def _features(x) -> Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(torch.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be N x F with N >= 2, got shape {tuple(x.shape)}")
    return x.cpu()


def _feature_pair(feats_a, feats_b) -> tuple[Tensor, Tensor]:
    """Both sets as float64 ``N x F`` tensors, checked to have one dimension F."""
    a, b = _features(feats_a), _features(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sets must have the same dimension, not {a.shape[1]} and {b.shape[1]}"
        )
    return a, b


def _sqrtm_psd(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_from_moments(mu_a: Tensor, cov_a: Tensor, mu_b: Tensor, cov_b: Tensor) -> float:
    """``||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)`` (the squared
    2-Wasserstein distance between the two Gaussians)."""
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    value = float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)
    return max(value, 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between the Gaussians fitted (mean, unbiased covariance) to two feature
    sets ``N_a x F`` and ``N_b x F``. Returns a float (squared feature units)."""
    a, b = _feature_pair(feats_a, feats_b)
    return frechet_from_moments(
        a.mean(0),
        torch.cov(a.T).reshape(a.shape[1], -1),
        b.mean(0),
        torch.cov(b.T).reshape(b.shape[1], -1),
    )


def _mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
        + (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
        - 2 * k_xy.mean()
    )


def kernel_distance(
    feats_a,
    feats_b,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel (MMD) distance: mean and standard deviation over ``subsets`` random subsets of
    ``min(subset_size, N_a, N_b)`` samples of the unbiased squared MMD with the cubic polynomial
    kernel. Unbiased: its expectation is 0 when both sets come from the same distribution (it can
    then be negative)."""
    check_int("subsets", subsets, 1)  # 0 gave NaN
    check_int("subset_size", subset_size, 2)  # the unbiased estimate divides by m (m - 1)
    a, b = _feature_pair(feats_a, feats_b)
    size = min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        ia = torch.randperm(len(a), generator=generator)[:size]
        ib = torch.randperm(len(b), generator=generator)[:size]
        values.append(_mmd2_unbiased(a[ia], b[ib]))
    values = torch.tensor(values, dtype=torch.float64)
    return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0


def _kth_neighbour_radius(x: Tensor, k: int) -> Tensor:
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real, fake, *, k: int = 5) -> dict[str, float]:
    """Manifold precision / recall (Kynkäänniemi et al. 2019) and density / coverage
    (Naeem et al. 2020) with k-nearest-neighbour balls.

    precision: fraction of fake samples inside some real k-NN ball; recall: fraction of real
    samples inside some fake k-NN ball; density: average number of real balls containing a fake
    sample, divided by k; coverage: fraction of real balls containing at least one fake sample.
    """
    check_int("k", k, 1)  # 0 gave an infinite density
    r, f = _feature_pair(real, fake)
    if len(r) <= k or len(f) <= k:
        raise ValueError(f"need more than k = {k} samples in each set")
    r_rad, f_rad = _kth_neighbour_radius(r, k), _kth_neighbour_radius(f, k)
    d_fr = torch.cdist(f, r)  # fake x real
    inside_real = d_fr <= r_rad[None, :]
    inside_fake = d_fr.T <= f_rad[None, :]
    return {
        "precision": float(inside_real.any(dim=1).double().mean()),
        "recall": float(inside_fake.any(dim=1).double().mean()),
        "density": float(inside_real.double().sum(dim=1).mean() / k),
        "coverage": float((d_fr.min(dim=0).values <= r_rad).double().mean()),
    }


def sliced_wasserstein(
    feats_a, feats_b, *, directions: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance ``sqrt(E_dir W2^2(a.dir, b.dir))`` over random unit
    directions; unequal set sizes are compared through matched quantiles."""
    check_int("directions", directions, 1)
    a, b = _feature_pair(feats_a, feats_b)
    dirs = torch.randn(a.shape[1], directions, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    if len(pa) != len(pb):
        q = torch.linspace(0, 1, max(len(pa), len(pb)), dtype=torch.float64)
        pa, pb = torch.quantile(pa, q, dim=0), torch.quantile(pb, q, dim=0)
    return math.sqrt(float(((pa - pb) ** 2).mean()))


def random_patches(
    images: Tensor, patch: int = 7, per_image: int = 16, generator: torch.Generator | None = None
) -> Tensor:
    """Random ``patch x patch`` crops of ``N x C x H x W`` images flattened to
    ``(N * per_image) x (C * patch * patch)`` features (for patch-level sliced Wasserstein)."""
    check_int("patch", patch, 1)  # 0 gave empty features
    check_int("per_image", per_image, 1)
    if images.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, not of shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if patch > min(h, w):
        raise ValueError(f"patch {patch} is larger than the images ({h}x{w})")
    ys = torch.randint(0, h - patch + 1, (n, per_image), generator=generator)
    xs = torch.randint(0, w - patch + 1, (n, per_image), generator=generator)
    rows = []
    for i in range(n):
        for y, x in zip(ys[i].tolist(), xs[i].tolist(), strict=True):
            rows.append(images[i, :, y : y + patch, x : x + patch].reshape(-1))
    return torch.stack(rows)
