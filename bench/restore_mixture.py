"""Restoration with a class model: its null branch against the class-posterior mixture.

A class-conditional model has two unconditional denoisers: its null class (learnt on the
label-dropout share of the batches) and the mixture of its class branches weighted by a noise
classifier's p(c | x, sigma) (:class:`diffvision.ClassMixture`, what `diffvision sample` draws
from without --class). Restoration needs an unconditional prior; this compares the two on the
same model, images, measurements and noise: denoising (``mmse``, one call: the posterior mean
under each prior), central box inpainting and 2x average-pool super-resolution (``repaint`` and
``ddnm``, mean of --samples draws).

The images are --n of scikit-learn's digits from index --offset on, evenly spaced: by default
all 1,797, which the demo model trained on (the digits have no held-out split), so that run
compares priors and does not measure generalisation; a model trained on the first K digits
only (``--trained-on K``, see below) is measured on the rest (``--offset K``).
PSNR (dB, data range [-1, 1]) per image; the paired mean difference (mixture
minus null) with its standard error over the images; seconds of each solve (both on this
machine, one after the other).

Needs a model with classes, a null class and a noise classifier, e.g. the demo's:
  diffvision demo --out runs/demo
Run: python bench/restore_mixture.py --model runs/demo/model
     -> bench/results/restore_mixture.{json,md}
Held out: python bench/restore_mixture.py --trained-on 1497 --model runs/demo1497/model
     --offset 1497 --n 300 --name restore_mixture_held_out  (trains that model first, with the
     demo's settings, where the folder has none)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import diffvision
from diffvision.data import ImageData, digits
from diffvision.demo import DEMO_CONFIG
from diffvision.metrics import psnr
from diffvision.restore import Denoise, Inpaint, SuperResolution, box_mask, solve
from diffvision.train import train
from inpaint_mnist import paired
from restoration import RESULTS
from run_header import run_header, save_result

#: label -> (operator maker for N x C x H x W images, solver, solver options).
TASKS = {
    "denoise sigma 0.4, mmse": (lambda h, w: Denoise(0.4), "mmse", {}),
    "box 4 x 4, repaint 2 passes": (
        lambda h, w: Inpaint(box_mask(h, w, ((w - 4) // 2, (h - 4) // 2, 4, 4))),
        "repaint",
        {"jump_length": 5, "jump_n_sample": 2},
    ),
    "box 4 x 4, ddnm": (
        lambda h, w: Inpaint(box_mask(h, w, ((w - 4) // 2, (h - 4) // 2, 4, 4))),
        "ddnm",
        {},
    ),
    "superres 2x pool, ddnm": (lambda h, w: SuperResolution(2, "pool"), "ddnm", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--n", type=int, default=200, help="digits")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--offset", type=int, default=0, help="index of the first digit")
    parser.add_argument(
        "--trained-on", type=int, help="train --model first (demo settings) on digits 0..K-1"
    )
    parser.add_argument("--name", default="restore_mixture", help="result file name")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = digits()
    if args.trained_on and not (args.model / "classifier.json").is_file():
        part = ImageData(
            data.images[: args.trained_on], channels=1, size=8, name=f"digits[:{args.trained_on}]",
            labels=data.labels[: args.trained_on], class_names=data.class_names,
        )  # fmt: skip
        train(DEMO_CONFIG, part, args.model.parent)
    model = diffvision.load(args.model)
    classifier = diffvision.load_classifier(args.model)
    if classifier is None or getattr(model, "null_cond", None) is None:
        sys.exit(f"{args.model} needs classes, a null class and a noise classifier")
    priors = {"null branch": model, "mixture": diffvision.ClassMixture(model, classifier)}
    pick = args.offset + torch.arange(args.n) * ((len(data) - args.offset) // args.n)
    x = data.batch(pick)[0].float()  # N x 1 x 8 x 8 in [-1, 1]
    h, w = x.shape[-2:]
    begin, scores, seconds = time.time(), {}, {}
    for task, (make, solver, options) in TASKS.items():
        op = make(h, w)
        y = op.measure(x, generator=torch.Generator().manual_seed(0))
        k = 1 if solver == "mmse" else args.samples
        for name, prior in priors.items():
            t0 = time.time()
            r = solve(
                prior, op, y, solver=solver, steps=args.steps, n_samples=k,
                generator=torch.Generator().manual_seed(1), **options,
            )  # fmt: skip
            seconds.setdefault(task, {})[name] = round(time.time() - t0, 2)
            mean = r if k == 1 else r.mean
            scores.setdefault(task, {})[name] = psnr(mean.clamp(-1, 1), x).tolist()
            print(f"{task}: {name} {seconds[task][name]:.1f} s", file=sys.stderr, flush=True)
    result = run_header("restore_mixture") | {
        "seconds": round(time.time() - begin, 1),
        "n": args.n,
        "offset": args.offset,
        "trained_on": args.trained_on,
        "steps": args.steps,
        "samples": args.samples,
        "model": json.loads((args.model / "config.json").read_text()).get("training"),
        "psnr": scores,
        "solve_seconds": seconds,
    }
    save_result(args.out, args.name, result, markdown(result))


def markdown(result: dict) -> str:
    lines = [
        "# Restoring with a class model: null branch vs class-posterior mixture",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, torch "
        f"{result['torch']}, {result['threads']} threads), {result['seconds']} s. "
        f"{result['n']} of scikit-learn's digits (8 x 8), from index {result.get('offset', 0)} "
        f"on, {_seen(result)}; PSNR (dB) per image, averaged; ddnm and repaint: mean of "
        f"{result['samples']} draws, "
        f"{result['steps']} steps; the same measurements and noise for both priors.",
        "",
        "| task, solver | null branch | mixture | mixture - null (± s.e.) | better on | "
        "seconds (null, mixture) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for task, table in result["psnr"].items():
        null, mix = table["null branch"], table["mixture"]
        diff, se, share = paired(mix, null)
        s = result["solve_seconds"][task]
        lines.append(
            f"| {task} | {sum(null) / len(null):.2f} | {sum(mix) / len(mix):.2f} | {diff:+.2f} ± "
            f"{se:.2f} | {share:.0%} | {s['null branch']:.1f}, {s['mixture']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _seen(result: dict) -> str:
    """Whether the model trained on the images measured, in a table's words."""
    k = result.get("trained_on")
    if not k:
        return "which the model trained on"
    if result.get("offset", 0) >= k:
        return f"held out: the model trained on digits 0..{k - 1} only"
    return f"the model trained on digits 0..{k - 1}"


if __name__ == "__main__":
    main()
