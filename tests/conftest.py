"""Shared fixtures: exact reference distributions used across the tests, and a torchrun launcher
of ``ddp_worker.py``."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def torchrun_env():
    """The environment of a torchrun launch from the tests: one thread per rank, and this
    checkout importable (for ``ddp_worker.py``)."""
    paths = [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }


@pytest.fixture
def torchrun_worker(tmp_path, torchrun_env):
    """``run(nproc, device)`` trains ``ddp_worker.py`` under ``torchrun --standalone`` in tmp_path
    and returns each rank's digest (``world``, ``sha256``); fails with torchrun's stderr."""
    worker = Path(__file__).with_name("ddp_worker.py")

    def run(nproc: int, device: str = "cpu") -> list[dict]:
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc_per_node={nproc}", str(worker), str(tmp_path), device],
            capture_output=True, text=True, timeout=300, env=torchrun_env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]

    return run
