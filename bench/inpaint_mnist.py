"""Box inpainting where the prior knows the content: MNIST test digits with an MNIST model.

On the held-out photos the diffusion fill ties scikit-image's biharmonic fill at best
(`bench/results/restoration.md`), and the prior, trained on the 19 photographs that ship with
the packages, is the suspect. Here the prior is trained on the MNIST training set and the
images are the first --n digits of the MNIST test set (never seen in training), 28 x 28 grey,
with a central square hole of side --box. Same solvers and classical fills as
`bench/restoration.py` (OpenCV Telea and Navier-Stokes, scikit-image biharmonic); the
diffusion rows are the mean of --samples posterior draws (--steps Karras steps, DDPM
ancestral, the whole image at once). PSNR (dB, data range [-1, 1]) of each image, averaged;
for the best diffvision row against the best classical one, the paired mean difference with its
standard error over the images and the share of images where it is better.

Needs the MNIST IDX files (../shared/data/mnist in this workplace) and a model trained on them:
  diffvision train --data mnist:FOLDER --no-classes --steps 3000 --lr-schedule cosine --bf16
      --channels-last --out runs/mnist
Run: python bench/inpaint_mnist.py --model runs/mnist/model --mnist FOLDER
     -> bench/results/inpaint_mnist.{json,md}
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import diffvision
from diffvision.data import mnist
from diffvision.metrics import psnr
from diffvision.restore import Inpaint, box_mask, solve
from diffvision.restore.starts import classical_start
from restoration import RESULTS, classical_baselines
from run_header import run_header, save_result

#: label -> (solver, options) of the diffusion rows.
SOLVERS = {
    "ddnm": ("ddnm", {}),
    "repaint, 2 passes": ("repaint", {"jump_length": 5, "jump_n_sample": 2}),
    "ddnm from biharmonic at 0.3": ("ddnm", {"start_sigma": 0.3}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/mnist/model"))
    parser.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--n", type=int, default=200, help="test digits")
    parser.add_argument("--box", default="8,12", help="hole sides (pixels), comma-separated")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    data = mnist(args.mnist, split="test")
    x = data.batch(torch.arange(args.n))[0].float()  # N x 1 x 28 x 28 in [-1, 1]
    h, w = x.shape[-2:]
    begin, tables = time.time(), {}
    for side in map(int, args.box.split(",")):
        op = Inpaint(box_mask(h, w, ((w - side) // 2, (h - side) // 2, side, side)))
        y = op.forward(x)
        scores = {}
        for i in range(args.n):  # the classical fills work on one image at a time
            for name, fill in classical_baselines("inpaint", y[i : i + 1], op, 0).items():
                scores.setdefault(name, []).append(float(psnr(fill().clamp(-1, 1), x[i : i + 1])))
        for label, (solver, options) in SOLVERS.items():
            if "start_sigma" in options:
                options = options | {"start": classical_start(op, y, "biharmonic")}
            t0 = time.time()
            with torch.no_grad():
                r = solve(
                    model, op, y, solver=solver, steps=args.steps, n_samples=args.samples,
                    generator=torch.Generator().manual_seed(1), **options,
                )  # fmt: skip
            scores[f"diffvision {label}, mean of {args.samples}"] = psnr(
                r.mean.clamp(-1, 1), x
            ).tolist()
            print(f"box {side}: {label} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        tables[str(side)] = scores
    result = run_header("inpaint_mnist") | {
        "seconds": round(time.time() - begin, 1),
        "n": args.n,
        "steps": args.steps,
        "samples": args.samples,
        "model": json.loads((args.model / "config.json").read_text()).get("training"),
        "psnr": tables,
    }
    save_result(args.out, "inpaint_mnist", result, markdown(result))


def paired(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Mean difference, its standard error, and the share of images where ``ours`` is higher."""
    d = torch.tensor(ours) - torch.tensor(theirs)
    return float(d.mean()), float(d.std() / math.sqrt(len(d))), float((d > 0).double().mean())


def markdown(result: dict) -> str:
    lines = [
        "# Box inpainting of MNIST test digits with an MNIST prior",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, torch "
        f"{result['torch']}, {result['threads']} threads), {result['seconds']} s. The first "
        f"{result['n']} MNIST test digits, a central square hole; PSNR (dB) per image, averaged; "
        f"diffusion rows: mean of {result['samples']} posterior samples, {result['steps']} steps.",
        "",
        "| method | " + " | ".join(f"hole {s} x {s}" for s in result["psnr"]) + " |",
        "|---|" + "---:|" * len(result["psnr"]),
    ]
    methods = list(next(iter(result["psnr"].values())))
    for m in methods:
        cells = [sum(t[m]) / len(t[m]) for t in result["psnr"].values()]
        lines.append(f"| {m} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines += [
        "",
        "Best diffvision row against the best classical fill (paired over the digits):",
        "",
    ]
    for side, table in result["psnr"].items():
        mean = {m: sum(v) / len(v) for m, v in table.items()}
        ours = max((m for m in mean if m.startswith("diffvision")), key=mean.get)
        theirs = max((m for m in mean if not m.startswith("diffvision")), key=mean.get)
        diff, se, share = paired(table[ours], table[theirs])
        lines.append(
            f"- hole {side} x {side}: {ours} vs {theirs}: {diff:+.2f} +- {se:.2f} dB "
            f"(standard error), better on {share:.0%} of the digits"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
