"""Which settings of the demo recipe balance its unconditional (null-class) samples?

Trains variants of `diffvision.demo.DEMO_CONFIG` (one change each, same steps and batch unless the
variant says otherwise) and checks each EMA model as `diffvision demo` does: the digit classifier's
agreement on class-conditional samples (100 per class, UniPC 20 steps), and the class counts of
N null-class samples with a chi-square test against uniform, for a deterministic sampler (UniPC,
20 steps) and a stochastic one (DDPM ancestral, 100 steps). With N = 3,000 the test sees a
deviation that the demo's 1,000 samples would miss about half the time, so a variant that passes
here has margin there. Each check also reports the fraction of samples that a calibrated digit
classifier (Platt-scaled SVM, same split) is unsure of (top probability < 0.7): blends of two
digits, which the balance test's classifier labels unevenly.

For trained folders (`--model`) it also locates where the imbalance arises: held-out real digits
are noised to sigma and denoised by the null branch (UniPC, 20 steps from sigma); the fraction that
keeps its label and the chi-square p of the labels against those of the start are listed per
sigma, next to the same run of the exact (empirical) denoiser of the training digits. An exact
denoiser keeps the labels balanced from every sigma; the sigma where the model's p drops is where
its null branch goes wrong. It also measures how far samples are from the nearest training digit
(copies would be near 0; two training digits are about 0.25 apart, per-pixel RMS).

Meant for a GPU (each variant trains in well under a minute there); the same code runs on the CPU.
Run: python bench/demo_variants.py --device cuda  ->  bench/results/demo_variants.{json,md}
     python bench/demo_variants.py --device cpu --model runs/demo/model  (check a trained folder)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chisquare

import diffvision
from diffvision.analytic import EmpiricalDenoiser
from diffvision.data import digits
from diffvision.demo import DEMO_CONFIG, classify, digit_classifier, digit_split
from diffvision.samplers import get as get_sampler
from diffvision.samplers import sample, sigma_steps
from diffvision.train import TrainConfig, Trainer

RESULTS = Path(__file__).parent / "results"
# Changes to DEMO_CONFIG as it is when the run is made (each result file stores it as "base"; before
# 2026-11-27 03:00 UTC it trained on target "sample", since then on "empirical").
VARIANTS = {  # in order of interest (a run cut short keeps the rows it finished)
    "demo": {},
    "label_dropout 0.35": {"label_dropout": 0.35},
    "label_dropout 0.5": {"label_dropout": 0.5},
    "p_mean -0.6": {"schedule_options": {"p_mean": -0.6}},  # more training at high noise
    "demo seed 1": {"seed": 1},
    "ema_decay 0.9995": {"ema_decay": 0.9995},
    "dropout 0": {"dropout": 0.0},  # the preset's 0.1 costs ~8% of a CPU step (bernoulli_)
    "dropout 0 + 3000 steps": {"dropout": 0.0, "steps": 3000},  # same CPU time as the demo
    "4000 steps": {"steps": 4000},
    "label_dropout 0.1": {"label_dropout": 0.1},  # 0.35 and 0.5 were worse: try the other way
    "lr 2e-3": {"lr": 2e-3},  # faster fitting within the same 2,000 steps?
    "empirical targets": {"target": "empirical"},  # no target noise where classes are chosen
    "empirical targets + seed 1": {"target": "empirical", "seed": 1},
    "empirical targets + label_dropout 0.35": {"target": "empirical", "label_dropout": 0.35},
    # EDM's ln sigma ~ N(-1.2, 1.2^2) puts 6% of examples at sigma > 2, where an 8x8 digit's
    # class is chosen; with noise-free targets more training there costs no target variance.
    "empirical targets + p_mean -0.6": {
        "target": "empirical",
        "schedule_options": {"p_mean": -0.6},
    },
    "empirical targets + p_mean 0": {"target": "empirical", "schedule_options": {"p_mean": 0.0}},
    "p_mean -0.6 + seed 1": {"schedule_options": {"p_mean": -0.6}, "seed": 1},
    "p_mean -0.6 + ema_decay 0.9995": {"schedule_options": {"p_mean": -0.6}, "ema_decay": 0.9995},
}
UNCOND = {"unipc 20": ("unipc", 20), "ddpm 100": ("ddpm", 100)}
FROM_REAL_SIGMAS = (0.5, 1.0, 2.0, 3.0, 5.0)
UNSURE = 0.7  # a sample is "unsure" when the calibrated classifier's top probability is below


def calibrated_classifier(seed: int = 0):
    """A Platt-scaled SVM on the same 70% split as the demo's classifier; returns it and the
    fraction of real held-out digits it is unsure of."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    x_tr, x_te, y_tr, _ = digit_split(seed)
    clf = CalibratedClassifierCV(SVC(gamma=0.001, C=10.0), method="sigmoid", cv=5)
    clf.fit(x_tr, y_tr)
    return clf, float((clf.predict_proba(x_te).max(1) < UNSURE).mean())


def unsure(prob_clf, images: torch.Tensor) -> float:
    pixels = ((images.clamp(-1, 1) + 1) * 8).reshape(len(images), -1).cpu().numpy()
    return float((prob_clf.predict_proba(pixels).max(1) < UNSURE).mean())


def check(model, clf, prob_clf, n_uncond: int, device: str, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed + 100)
    labels = torch.arange(10).repeat_interleave(100)
    with torch.no_grad():
        images = sample(
            model, (len(labels), 1, 8, 8), sampler="unipc", steps=20,
            cond=labels.to(device), device=device, generator=gen,
        )  # fmt: skip
    out = {
        "conditional_agreement": float((classify(clf, images) == labels.numpy()).mean()),
        "conditional_unsure": unsure(prob_clf, images),
    }
    for name, (sampler, steps) in UNCOND.items():
        with torch.no_grad():
            images = sample(
                model, (n_uncond, 1, 8, 8), sampler=sampler, steps=steps,
                cond=torch.full((n_uncond,), 10, device=device), device=device, generator=gen,
            )  # fmt: skip
        counts = np.bincount(classify(clf, images), minlength=10)
        out[name] = {
            "counts": counts.tolist(),
            "p": float(chisquare(counts).pvalue),
            "unsure": unsure(prob_clf, images),
        }
    return out


def from_real(denoiser, clf, device: str, copies: int = 4, seed: int = 0) -> dict:
    """Held-out digits (``copies`` noise draws each) noised to each sigma of FROM_REAL_SIGMAS and
    denoised by ``denoiser(x, sigma)`` with UniPC (20 steps from sigma to 0.002): per sigma, the
    fraction whose label is kept and the chi-square p of the final labels against the start's."""
    _, x_te, _, y_te = digit_split(seed)
    real = torch.tensor(x_te, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8 - 1
    real, start = real.repeat(copies, 1, 1, 1).to(device), np.tile(y_te, copies)
    expected = np.bincount(start, minlength=10)
    gen = torch.Generator().manual_seed(seed + 200)
    out = {}
    for s in FROM_REAL_SIGMAS:
        x = real + s * torch.randn(real.shape, generator=gen).to(device)
        with torch.no_grad():
            x = get_sampler("unipc")(denoiser, x, sigma_steps("loglinear", 20, 0.002, s))
        labels = classify(clf, x)
        counts = np.bincount(labels, minlength=10)
        out[str(s)] = {
            "kept": float((labels == start).mean()),
            "p": float(chisquare(counts, expected).pvalue),
        }
    return out


def nearest_rms(images: torch.Tensor, train: torch.Tensor) -> float:
    """Median over ``images`` of the per-pixel RMS distance to the nearest of ``train``."""
    flat = images.clamp(-1, 1).reshape(len(images), -1).to(train)
    return float((torch.cdist(flat, train).min(1).values / flat.shape[1] ** 0.5).median())


def copies(model, train: torch.Tensor, device: str, n: int = 1000, seed: int = 5) -> dict:
    """Are samples copies of training digits? Nearest-training-digit distance (see
    :func:`nearest_rms`) of ``n`` null-class and ``n`` class-conditional samples (UniPC 20)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, cond in (("null", torch.full((n,), 10)), ("conditional", torch.arange(n) % 10)):
        with torch.no_grad():
            images = sample(
                model, (n, 1, 8, 8), sampler="unipc", steps=20, cond=cond.to(device),
                device=device, generator=gen,
            )  # fmt: skip
        out[name] = nearest_rms(images, train)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=3000, help="null-class samples per sampler")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--model", nargs="*", default=(), help="check these folders instead")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply training steps (smoke)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    clf, held_out = digit_classifier(0)
    prob_clf, real_unsure = calibrated_classifier(0)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {
        "benchmark": "demo_variants",
        "command": " ".join(["python bench/demo_variants.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": device_name,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "classifier_held_out_accuracy": held_out,
        "real_held_out_unsure": real_unsure,
        "n_unconditional": args.n,
        "base": asdict(DEMO_CONFIG),
        "checked_folders": bool(args.model),
        "rows": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.model:
        data = digits()
        train = data.batch(torch.arange(len(data)))[0].to(args.device)
        exact = EmpiricalDenoiser(train)
        result["from_real_exact"] = from_real(exact, clf, args.device)
        flat = train.reshape(len(train), -1)
        others = torch.cdist(flat, flat).fill_diagonal_(float("inf")).min(1).values
        result["train_nearest_rms"] = float((others / flat.shape[1] ** 0.5).median())
    for folder in args.model:
        model = diffvision.load(folder, device=args.device)
        row = {"change": "trained folder", "steps": model.config.get("training", {}).get("steps")}
        row.update(check(model, clf, prob_clf, args.n, args.device))

        def null_branch(x, sigma, model=model):
            return model(x, sigma, torch.full((len(x),), 10, device=x.device))

        row["from_real"] = from_real(null_branch, clf, args.device)
        row["nearest_training_rms"] = copies(model, flat, args.device)
        result["rows"][folder] = row
        write(result, args.out, "demo_folders")
    for name in [] if args.model else args.variants.split(","):
        change = VARIANTS[name]
        cfg = TrainConfig(**{**asdict(DEMO_CONFIG), **change})
        cfg.steps = max(1, round(cfg.steps * args.scale))
        cfg.checkpoint_every = cfg.steps
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, digits(), tmp, device=args.device)
            trainer.fit(progress=False)
            trainer.close()
            model = trainer.ema.module.eval()
            seconds = time.time() - start
            row = {"change": change, "steps": cfg.steps, "train_seconds": round(seconds, 1)}
            row.update(check(model, clf, prob_clf, args.n, args.device))
        result["rows"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
        write(result, args.out, "demo_variants")
    print(markdown(result))


def write(result: dict, out: Path, stem: str) -> None:
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(markdown(result))


def markdown(result: dict) -> str:
    lines = [
        "# Demo recipe variants: class balance of unconditional samples",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['device']}, torch "
        f"{result['torch']}). "
        + (
            "Model folders trained elsewhere, checked as they are"
            if result.get("checked_folders")
            else "Each variant changes one setting of the demo recipe (two in rows with +) and "
            "trains from scratch"
        )
        + f"; {result['n_unconditional']} null-class samples per "
        f"sampler; digit classifier held-out accuracy "
        f"{result['classifier_held_out_accuracy']:.3f}."
        + (
            f" Unsure: fraction of samples whose calibrated top class probability is below "
            f"{UNSURE} (real held-out digits: {result['real_held_out_unsure']:.3f})."
            if "real_held_out_unsure" in result
            else ""
        ),
        "",
        "| variant | train s | cond. agreement (unsure) | "
        + " | ".join(f"{k}: counts (0-9); chi-square p; unsure" for k in UNCOND)
        + " |",
        "|---|---:|---:|" + "---|" * len(UNCOND),
    ]

    def fraction(value):
        return "-" if value is None else f"{value:.3f}"

    for name, row in result["rows"].items():
        cells = " | ".join(
            f"{', '.join(map(str, row[k]['counts']))}; p = {row[k]['p']:.2g}; "
            f"{fraction(row[k].get('unsure'))}"
            for k in UNCOND
        )
        agreement = (
            f"{row['conditional_agreement']:.3f} ({fraction(row.get('conditional_unsure'))})"
        )
        lines.append(f"| {name} | {row.get('train_seconds', '-')} | {agreement} | {cells} |")
    if "from_real_exact" in result:
        lines += [
            "",
            "Held-out real digits noised to sigma and denoised by the null branch (UniPC 20 steps "
            "from sigma): fraction that keeps its label; chi-square p of the labels against the "
            "start's.",
            "",
            "| denoiser | " + " | ".join(f"from sigma {s}" for s in FROM_REAL_SIGMAS) + " |",
            "|---|" + "---:|" * len(FROM_REAL_SIGMAS),
        ]
        runs = {"exact (empirical) denoiser": result["from_real_exact"]}
        runs.update({k: r["from_real"] for k, r in result["rows"].items() if "from_real" in r})
        for name, run in runs.items():
            cells = " | ".join(
                f"{run[str(s)]['kept']:.3f}; p = {run[str(s)]['p']:.2g}" for s in FROM_REAL_SIGMAS
            )
            lines.append(f"| {name} | {cells} |")
    if "train_nearest_rms" in result:
        lines += [
            "",
            "Copies? Median per-pixel RMS distance of 1,000 samples (UniPC 20) to the nearest "
            f"training digit; between a training digit and the nearest other: "
            f"{result['train_nearest_rms']:.3f}.",
            "",
            "| model | null class | class-conditional |",
            "|---|---:|---:|",
        ]
        for name, row in result["rows"].items():
            if "nearest_training_rms" in row:
                near = row["nearest_training_rms"]
                lines.append(f"| {name} | {near['null']:.3f} | {near['conditional']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
