"""Sampler accuracy against exact solutions: error versus NFE for every sampler and step sequence.

Problems (exact model = the closed-form denoiser of the data, so only the sampler is measured):

(a) a 64-d Gaussian with a decaying spectrum (variances 0.25 k^-2, k = 1..64, random rotation,
    non-zero mean). Deterministic samplers are affine maps of their starting noise here, so the
    output distribution is pushed forward exactly with 65 probe points and compared with the data
    by the closed-form 2-Wasserstein distance between Gaussians. Stochastic samplers use
    N samples (empirical mean and covariance); their "exact samples" floor is listed.
(b) a 2-D Gaussian mixture: sliced 2-Wasserstein distance (256 random directions) between
    N = 20000 samples and N exact samples; the floor is SW between two exact sample sets.

Every run starts from exact samples of p(x; sigma_start) at the sampler's own first noise level.
Where `diffusers` is installed its schedulers are driven with the same exact model (as an eps
model on the DDPM linear schedule, T = 1000) at the same NFE and appear in the same table.

Run: python bench/samplers.py  ->  bench/results/samplers.json and samplers.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import diffvision
from diffvision.analytic import GaussianDenoiser, GaussianMixtureDenoiser
from diffvision.process import DiscreteVP
from diffvision.samplers import DETERMINISTIC, SAMPLERS, get, nfe_of, sigma_steps, steps_for
from run_header import save_result  # bench/, next to this script

NFES = (5, 10, 20, 50)
STEP_KINDS = ("karras", "loglinear", "vp", "ddpm")
N_SAMPLES = 20000
RESULTS = Path(__file__).parent / "results"
SCHEDULE = DiscreteVP.linear()


# ----------------------------------------------------------------------------- problems
def gaussian_problem(d: int = 64, seed: int = 0) -> GaussianDenoiser:
    g = torch.Generator().manual_seed(seed)
    lam = 0.25 * torch.arange(1, d + 1, dtype=torch.float64) ** -2.0
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    mean = 0.2 * torch.randn(d, generator=g, dtype=torch.float64)
    return GaussianDenoiser(mean, (q * lam) @ q.T)


def mixture_problem() -> GaussianMixtureDenoiser:
    weights = torch.tensor([0.45, 0.3, 0.15, 0.1], dtype=torch.float64)
    means = torch.tensor([[-1.0, -0.3], [0.8, 0.6], [0.2, -1.1], [1.2, -0.6]], dtype=torch.float64)
    covs = torch.tensor(
        [
            [[0.08, 0.03], [0.03, 0.04]],
            [[0.03, -0.01], [-0.01, 0.05]],
            [[0.02, 0], [0, 0.02]],
            [[0.005, 0], [0, 0.01]],
        ],
        dtype=torch.float64,
    )
    return GaussianMixtureDenoiser(weights, means, covs)


# ----------------------------------------------------------------------------- metrics
def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def w2_gaussian(m1, s1, m2, s2) -> float:
    """Closed-form 2-Wasserstein distance between N(m1, s1) and N(m2, s2)."""
    s2h = _sqrtm_psd(s2)
    cross = _sqrtm_psd(s2h @ s1 @ s2h)
    w2sq = float(((m1 - m2) ** 2).sum() + torch.trace(s1 + s2 - 2 * cross))
    return math.sqrt(max(w2sq, 0.0))


def sliced_w2(a: torch.Tensor, b: torch.Tensor, n_dirs: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between equal-size sample sets (random unit directions)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_dirs, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a.double() @ dirs, dim=0)
    pb, _ = torch.sort(b.double() @ dirs, dim=0)
    return math.sqrt(float(((pa - pb) ** 2).mean()))


# ----------------------------------------------------------------------------- runners
class Run:
    """A sampler configuration: maps exact starting samples (sigma space) to outputs."""

    def __init__(self, label, family, start_sigma, fn, nfe, deterministic):
        self.label, self.family, self.start_sigma = label, family, start_sigma
        self.fn, self.nfe, self.deterministic = fn, nfe, deterministic


def our_runs(exact, nfe):
    for name in SAMPLERS:
        for kind in STEP_KINDS:
            n = steps_for(name, nfe)
            sigmas = (
                sigma_steps(kind, n, schedule=SCHEDULE) if kind == "ddpm" else sigma_steps(kind, n)
            )

            def fn(x, g, name=name, sigmas=sigmas):
                return get(name)(exact, x, sigmas, generator=g)

            yield Run(
                f"{name} / {kind}",
                "diffvision",
                float(sigmas[0]),
                fn,
                nfe_of(name, n),
                name in DETERMINISTIC,
            )


def diffusers_runs(exact, nfe):
    try:
        import diffusers
    except ImportError:
        return
    common = {
        "num_train_timesteps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
    }
    configs = [
        ("DDIM", diffusers.DDIMScheduler, {}),
        ("DPMSolverMultistep", diffusers.DPMSolverMultistepScheduler, {}),
        (
            "DPMSolverMultistep karras",
            diffusers.DPMSolverMultistepScheduler,
            {"use_karras_sigmas": True},
        ),
        ("DPMSolverMultistep order 3", diffusers.DPMSolverMultistepScheduler, {"solver_order": 3}),
        ("UniPCMultistep", diffusers.UniPCMultistepScheduler, {}),
        ("UniPCMultistep karras", diffusers.UniPCMultistepScheduler, {"use_karras_sigmas": True}),
        ("EulerDiscrete", diffusers.EulerDiscreteScheduler, {}),
        ("EulerDiscrete karras", diffusers.EulerDiscreteScheduler, {"use_karras_sigmas": True}),
        ("HeunDiscrete", diffusers.HeunDiscreteScheduler, {}),
        ("HeunDiscrete karras", diffusers.HeunDiscreteScheduler, {"use_karras_sigmas": True}),
    ]

    def eps_model(x_in, t, sigma_space: bool):
        # diffusers passes the VP input x_t (Euler/Heun after scale_model_input) and a timestep
        # that may be fractional; sigma(t) inverts its log-sigma interpolation exactly.
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(len(x_in))
        sigma = SCHEDULE.sigma(t)
        x = x_in.double() * (1 + sigma[:, None] ** 2).sqrt()
        return (x - exact(x, sigma)) / sigma[:, None]

    for label, cls, extra in configs:
        sched = cls(**common, **extra)
        steps = (nfe + 1) // 2 if cls is diffusers.HeunDiscreteScheduler else nfe
        sched.set_timesteps(steps)
        n_evals = len(sched.timesteps)
        sigma_space = hasattr(sched, "sigmas") and cls in (
            diffusers.EulerDiscreteScheduler,
            diffusers.HeunDiscreteScheduler,
        )
        if sigma_space:
            start = float(sched.sigmas[0])
        else:
            start = float(SCHEDULE.sigmas[int(sched.timesteps[0])])

        def fn(x, g, cls=cls, extra=extra, steps=steps, sigma_space=sigma_space, start=start):
            s = cls(**common, **extra)
            s.set_timesteps(steps)
            lat = x.double() if sigma_space else x.double() / math.sqrt(1 + start**2)
            for t in s.timesteps:
                inp = s.scale_model_input(lat, t)
                eps = eps_model(inp, t, sigma_space)
                lat = s.step(eps.to(lat.dtype), t, lat).prev_sample.double()
            return lat

        yield Run(f"{label}", f"diffusers {diffusers.__version__}", start, fn, n_evals, True)


# ----------------------------------------------------------------------------- evaluation
def gaussian_error(exact: GaussianDenoiser, run: Run, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    cov = exact.covariance()
    s0 = run.start_sigma
    if run.deterministic:
        chol = torch.linalg.cholesky(cov + s0**2 * torch.eye(exact.dim, dtype=torch.float64))
        probes = torch.cat([exact.mean[None], exact.mean[None] + chol.T], dim=0)
        out = run.fn(probes, g).double()
        mean_out = out[0]
        b = out[1:] - out[0]
        cov_out = b.T @ b
    else:
        out = run.fn(exact.sample(N_SAMPLES, g, sigma=s0), g).double()
        mean_out, cov_out = out.mean(0), torch.cov(out.T)
    if not torch.isfinite(cov_out).all():
        return float("nan")
    return w2_gaussian(mean_out, cov_out, exact.mean, cov)


def mixture_error(exact: GaussianMixtureDenoiser, run: Run, seed: int, reference) -> float:
    g = torch.Generator().manual_seed(seed)
    x, _ = exact.sample(N_SAMPLES, g, sigma=run.start_sigma)
    out = run.fn(x, g).double()
    if not torch.isfinite(out).all():
        return float("nan")
    return sliced_w2(out, reference)


def floors(gauss, mix):
    g = torch.Generator().manual_seed(123)
    y = gauss.sample(N_SAMPLES, g)
    gauss_floor = w2_gaussian(y.mean(0), torch.cov(y.T), gauss.mean, gauss.covariance())
    a, _ = mix.sample(N_SAMPLES, g)
    b, _ = mix.sample(N_SAMPLES, g)
    return gauss_floor, sliced_w2(a, b)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nfe", default=",".join(map(str, NFES)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    nfes = [int(v) for v in args.nfe.split(",")]
    torch.set_num_threads(2)
    gauss, mix = gaussian_problem(), mixture_problem()
    reference, _ = mix.sample(N_SAMPLES, torch.Generator().manual_seed(999))
    t0 = time.time()
    rows: dict[str, dict] = {}
    for nfe in nfes:
        for problem, exact in (("gaussian64", gauss), ("mixture2d", mix)):
            for run in [*our_runs(exact, nfe), *diffusers_runs(exact, nfe)]:
                if problem == "gaussian64":
                    err = gaussian_error(exact, run, seed=nfe)
                else:
                    err = mixture_error(exact, run, seed=nfe, reference=reference)
                row = rows.setdefault(run.label, {"family": run.family, "results": {}})
                row["results"].setdefault(problem, {})[str(nfe)] = {"nfe": run.nfe, "error": err}
                print(f"{problem:10s} NFE {nfe:3d} {run.label:34s} {err:.3e}", file=sys.stderr)
    gauss_floor, mix_floor = floors(gauss, mix)
    result = {
        "benchmark": "samplers",
        "command": "python bench/samplers.py",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "versions": versions(),
        "seconds": round(time.time() - t0, 1),
        "nfes": nfes,
        "n_samples": N_SAMPLES,
        "floors": {"gaussian64": gauss_floor, "mixture2d": mix_floor},
        "rows": rows,
    }
    save_result(args.out, "samplers", result, markdown(result))
    return result


def versions() -> dict:
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "diffvision": diffvision.__version__,
    }
    try:
        import diffusers

        out["diffusers"] = diffusers.__version__
    except ImportError:
        out["diffusers"] = None
    return out


def markdown(result: dict) -> str:
    nfes = result["nfes"]
    lines = [
        "# Sampler error against exact solutions",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, "
        f"{result['cpu_threads']} threads, torch {result['versions']['torch']}, diffusers "
        f"{result['versions']['diffusers']}), {result['seconds']} s.",
        "",
    ]
    titles = {
        "gaussian64": "64-d Gaussian, 2-Wasserstein distance to the data (closed form)",
        "mixture2d": "2-D Gaussian mixture, sliced 2-Wasserstein distance to exact samples",
    }
    for problem, title in titles.items():
        floor = result["floors"][problem]
        lines += [f"## {title}", ""]
        if problem == "gaussian64":
            lines.append(
                f"Deterministic samplers: exact push-forward (no sampling error). Stochastic "
                f"samplers: N = {result['n_samples']} samples; exact samples score {floor:.2e}."
            )
        else:
            lines.append(f"N = {result['n_samples']}; two exact sample sets score {floor:.2e}.")
        lines += [
            "",
            "| sampler / steps | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
            "|---|" + "---:|" * len(nfes),
        ]
        best = _best_at(result, problem, "10")
        ranked = sorted(
            result["rows"].items(),
            key=lambda kv: _err(kv[1], problem, "10"),
        )
        for label, row in ranked:
            cells = []
            for n in nfes:
                cell = row["results"].get(problem, {}).get(str(n))
                if cell is None:
                    cells.append("")
                    continue
                text = "diverged" if math.isnan(cell["error"]) else f"{cell['error']:.2e}"
                if cell["nfe"] != n:
                    text += f" ({cell['nfe']})"
                if str(n) == "10" and label in best.values():
                    text = f"**{text}**"
                cells.append(text)
            name = label if row["family"] == "diffvision" else f"{row['family']}: {label}"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        ours, theirs = best.get("diffvision"), best.get("diffusers")
        if ours:
            verdict = (
                f"Best at NFE 10: diffvision `{ours}` "
                f"({_err(result['rows'][ours], problem, '10'):.2e})"
            )
            if theirs:
                verdict += (
                    f", diffusers `{theirs}` ({_err(result['rows'][theirs], problem, '10'):.2e})"
                )
            lines += ["", verdict + "."]
        lines.append("")
    lines.append(
        "A number in parentheses is the NFE actually used where it differs "
        "(Heun: 2 n - 1; predictor-corrector: 2 n)."
    )
    return "\n".join(lines) + "\n"


def _err(row, problem, nfe):
    cell = row["results"].get(problem, {}).get(nfe)
    if cell is None or math.isnan(cell["error"]):
        return math.inf
    return cell["error"]


def _best_at(result, problem, nfe):
    """Label of the lowest-error row at ``nfe`` for each family (diffvision, diffusers)."""
    best: dict[str, str] = {}
    for label, row in result["rows"].items():
        fam = "diffvision" if row["family"] == "diffvision" else "diffusers"
        if fam not in best or _err(row, problem, nfe) < _err(
            result["rows"][best[fam]], problem, nfe
        ):
            best[fam] = label
    return best


if __name__ == "__main__":
    main()
