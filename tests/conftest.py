"""Shared fixtures: exact reference distributions used across the tests."""

import pytest
import torch

from diffvision.analytic import GaussianDenoiser, GaussianMixtureDenoiser


def make_gaussian(d: int, seed: int = 0, lam_min: float = 1e-2, lam_max: float = 1.0):
    """A d-dim Gaussian with variances spread log-uniformly in [lam_min, lam_max], a random
    rotation and a non-zero mean; for d = 1 the variance is 0.25 (sigma_data^2 of images)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.log10(torch.tensor(lam_min)), torch.log10(torch.tensor(lam_max))
    lam = torch.logspace(lo, hi, d, dtype=torch.float64) if d > 1 else torch.tensor([0.25]).double()
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    mean = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    return GaussianDenoiser(mean, (q * lam) @ q.T)


@pytest.fixture
def gaussian16():
    return make_gaussian(16)


@pytest.fixture
def mixture2d():
    """Three well-separated but overlapping-at-noise 2-D components with unequal weights."""
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], dtype=torch.float64)
    covs = torch.stack(
        [
            torch.tensor([[0.10, 0.03], [0.03, 0.05]]),
            torch.tensor([[0.05, -0.02], [-0.02, 0.08]]),
            torch.tensor([[0.04, 0.0], [0.0, 0.04]]),
        ]
    ).to(torch.float64)
    return GaussianMixtureDenoiser(weights, means, covs)


@pytest.fixture(scope="session")
def tiny_digits_model(tmp_path_factory):
    """A model folder of the tiny U-Net trained 3 steps on digits by the command line (for
    command tests that need a real folder, not a good model)."""
    from tests.cli_run import run

    out = tmp_path_factory.mktemp("tiny") / "run"
    result = run(
        "train",
        "--data",
        "digits",
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--batch",
        "8",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    return out / "model"
