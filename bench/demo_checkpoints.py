"""When in training does the demo's null branch get its class balance, and does autoguidance help?

Trains `diffvision.demo.DEMO_CONFIG` (same seed, steps and data as `diffvision demo`, so the last
checkpoint's EMA is the demo's model) keeping a checkpoint every K steps, then for each checkpoint's
EMA model draws N null-class samples (UniPC, 20 steps; the demo's sampler) and tests their digit
counts against uniform (chi-square, 9 degrees of freedom). A balanced model's statistic averages 9.

It also tries autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
itself", eq. 1): ``D_w = D_bad + w (D_good - D_bad)`` with the last checkpoint as the good model and
an earlier one of the same run as the bad one (the paper's "shorter training" degradation), both on
the null class. It corrects errors the bad model makes worse than the good one.

Run: python bench/demo_checkpoints.py  ->  bench/results/demo_checkpoints.{json,md}
     (28 minutes on 2 CPU cores on 2026-11-27: 11 to train, 17 to sample)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import diffvision
from diffvision.data import digits
from diffvision.demo import DEMO_CONFIG, digit_classifier, unconditional_samples
from diffvision.train import TrainConfig, train
from diffvision.train.checkpoint import list_checkpoints
from run_header import run_header, save_result  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"


def autoguided(good, bad, weight: float):
    """Autoguidance (Karras et al. 2024, eq. 1), a ``D(x, sigma, cond)`` like its two models."""

    def denoiser(x, sigma, cond):
        d_bad = bad(x, sigma, cond)
        return d_bad + weight * (good(x, sigma, cond) - d_bad)

    return denoiser


def balance(model, clf, n: int, seed: int, *, null: int | None = 10) -> dict:
    """Counts and chi-square of ``n`` unconditional samples of ``model`` (null-class samples; with
    ``null=None`` an unconditional denoiser's), as the demo draws them."""
    gen = torch.Generator().manual_seed(seed)
    _, counts, chi = unconditional_samples(model, n, gen, clf, null=null)
    return {"counts": counts.tolist(), "chi2": float(chi.statistic), "p": float(chi.pvalue)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo_checkpoints"))
    parser.add_argument("--every", type=int, default=250, help="checkpoint interval (steps)")
    parser.add_argument("--n", type=int, default=2000, help="null-class samples per row")
    parser.add_argument("--seed", type=int, default=1001, help="sampling seed (same for all rows)")
    parser.add_argument("--bad", default="500,1000,1500", help="steps of the bad models")
    parser.add_argument("--weights", default="1.5,2", help="autoguidance weights")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = TrainConfig(
        **{**asdict(DEMO_CONFIG), "checkpoint_every": args.every, "keep_checkpoints": 10**6}
    )
    start = time.time()
    train(cfg, digits(), args.run, resume=True, device="cpu", progress=False)  # resumes a run
    train_seconds = time.time() - start
    models = {
        int(p.name.split("_")[1]): diffvision.load(p)
        for p in list_checkpoints(args.run / "checkpoints")
    }
    clf, held_out = digit_classifier(0)
    last = max(models)
    result = {
        **run_header("demo_checkpoints"),
        "train_seconds": round(train_seconds, 1),
        "classifier_held_out_accuracy": held_out,
        "n": args.n,
        "sampling_seed": args.seed,
        "config": asdict(cfg),
        "checkpoints": {},
        "autoguidance": {},
    }
    for step, model in sorted(models.items()):
        result["checkpoints"][step] = balance(model, clf, args.n, args.seed)
        print(step, result["checkpoints"][step], file=sys.stderr, flush=True)
    for bad in map(int, args.bad.split(",")):
        for w in map(float, args.weights.split(",")):
            row = balance(autoguided(models[last], models[bad], w), clf, args.n, args.seed)
            result["autoguidance"][f"{bad} {w}"] = {"bad": bad, "weight": w, **row}
            print(bad, w, row, file=sys.stderr, flush=True)
    result["seconds"] = round(time.time() - start, 1)
    save_result(args.out, "demo_checkpoints", result, markdown(result, last))


def markdown(r: dict, last: int) -> str:
    def cells(row):
        return f"{', '.join(map(str, row['counts']))} | {row['chi2']:.1f} | {row['p']:.2g}"

    lines = [
        "# Class balance of the demo's null branch along its training run",
        "",
        f"Made by `{r['command']}` on {r['date']} ({r['machine']}, torch {r['torch']}, "
        f"{r['threads']} threads), {r['seconds']} s in all (training {r['train_seconds']} s; "
        f"0 when the run folder was there). The demo recipe with a checkpoint every "
        f"{r['config']['checkpoint_every']} steps; each row: {r['n']} null-class samples (UniPC, "
        f"20 steps, sampling seed {r['sampling_seed']}, the same noise for every row), digit "
        f"classifier (held-out accuracy {r['classifier_held_out_accuracy']:.3f}); chi-square "
        "against uniform, 9 degrees of freedom (a balanced model averages 9).",
        "",
        "| EMA model at step | counts (0-9) | chi-square | p |",
        "|---:|---|---:|---:|",
    ]
    lines += [f"| {step} | {cells(row)} |" for step, row in r["checkpoints"].items()]
    lines += [
        "",
        f"Autoguidance (Karras et al. 2024): good = step {last}, bad = an earlier checkpoint.",
        "",
        "| bad model's step | weight | counts (0-9) | chi-square | p |",
        "|---:|---:|---|---:|---:|",
    ]
    lines += [
        f"| {row['bad']} | {row['weight']} | {cells(row)} |" for row in r["autoguidance"].values()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
