"""Unconditional digits from the class-conditional branches, mixed by a noise-aware classifier.

By Bayes, the unconditional denoiser is the class-posterior mixture of the conditional ones:
``E[x0 | x] = sum_c p(c | x) E[x0 | x, c]`` for ``x = x0 + sigma n``. The demo samples
unconditionally with its null branch, whose class balance falls short (`demo_checkpoints.md`).
This probe replaces the null branch by ``sum_c p_phi(c | x, sigma) D(x, sigma, c)``, where
``p_phi`` is a small MLP classifier trained with cross-entropy on noised training digits
(log-uniform sigma from 0.05 to 80), and tests the class counts of N samples against uniform, next
to the null branch's counts for the same model, sampler and noise. Classifier-free: the class is
not chosen up front; each trajectory's class is settled by the mixture as sigma falls, so the
counts depend on how well calibrated the classifier is (a constant p would give blends).

A probe, not a feature: each step costs 10 conditional evaluations per sample.

Run: python bench/demo_mixture.py --model runs/demo/model
     ->  bench/results/demo_mixture.{json,md}  (33 minutes on 2 CPU cores with --n 4000)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

import diffvision
from demo_checkpoints import balance  # bench/, next to this script
from diffvision.data import digits
from diffvision.demo import digit_classifier

RESULTS = Path(__file__).parent / "results"
SIGMA_RANGE = (0.05, 80.0)  # classifier training noise, log-uniform


class NoiseClassifier(nn.Module):
    """MLP on the flattened image scaled to unit variance (``x / sqrt(sigma^2 + 0.25)``) and
    Fourier features of ``log sigma``: ``N x 1 x 8 x 8`` and ``(N,)`` -> ``N x 10`` logits."""

    def __init__(self, pixels: int = 64, classes: int = 10, hidden: int = 256):
        super().__init__()
        self.register_buffer("freqs", 2 * torch.randn(8))
        self.net = nn.Sequential(
            nn.Linear(pixels + 16, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x, sigma):
        x = x.flatten(1) / (sigma[:, None] ** 2 + 0.25).sqrt()
        angle = sigma.log()[:, None] / 4 * self.freqs
        return self.net(torch.cat([x, angle.sin(), angle.cos()], 1))


def train_classifier(steps: int, seed: int, batch: int = 256) -> tuple[NoiseClassifier, float]:
    """AdamW, lr 1e-3 with cosine decay; returns the classifier and the training seconds."""
    torch.manual_seed(seed)
    data = digits()
    images, labels = data.batch(torch.arange(len(data)))
    clf = NoiseClassifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=1e-4)
    lo, hi = math.log(SIGMA_RANGE[0]), math.log(SIGMA_RANGE[1])
    start = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,))
        sigma = torch.empty(batch).uniform_(lo, hi).exp()
        x = images[idx] + sigma.view(-1, 1, 1, 1) * torch.randn_like(images[idx])
        loss = nn.functional.cross_entropy(clf(x, sigma), labels[idx])
        for group in opt.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval(), time.time() - start


def class_mixture(model, clf, classes: int = 10):
    """``D(x, sigma) = sum_c softmax(clf(x, sigma))_c D(x, sigma, c)`` (all classes, one call);
    ``null`` (the null label the demo's counting passes) is not used: the mixture replaces it."""

    def denoiser(x, sigma, null):
        n = len(x)
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(n)
        weights = clf(x, sigma).softmax(1).T  # classes x n
        labels = torch.arange(classes).repeat_interleave(n)
        each = model(x.repeat(classes, 1, 1, 1), sigma.repeat(classes), labels)
        return torch.einsum("kn,kn...->n...", weights, each.view(classes, *x.shape))

    return denoiser


def timed(denoiser, clf, n: int, seed: int) -> dict:
    start = time.time()
    row = balance(denoiser, clf, n, seed)
    return {**row, "sample_seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a digits model folder")
    parser.add_argument("--n", type=int, default=2000, help="samples per row")
    parser.add_argument("--seed", type=int, default=2001, help="sampling seed (same for all rows)")
    parser.add_argument("--classifiers", default="4000:0,4000:1,8000:0", help="steps:seed,...")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    digit_clf, held_out = digit_classifier(0)
    result = {
        "benchmark": "demo_mixture",
        "command": " ".join(["python bench/demo_mixture.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": str(args.model),
        "n": args.n,
        "sampling_seed": args.seed,
        "classifier_held_out_accuracy": held_out,
        "rows": {},
    }

    result["rows"]["null branch (the demo's)"] = timed(model, digit_clf, args.n, args.seed)
    for spec in args.classifiers.split(","):
        steps, seed = map(int, spec.split(":"))
        clf, seconds = train_classifier(steps, seed)
        row = timed(class_mixture(model, clf), digit_clf, args.n, args.seed)
        row["classifier_train_seconds"] = round(seconds, 1)
        result["rows"][f"mixture, classifier {steps} steps, seed {seed}"] = row
        print(spec, row, file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_mixture.json").write_text(json.dumps(result, indent=1))
    (args.out / "demo_mixture.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# Unconditional digits: null branch vs class-posterior mixture of conditional branches",
        "",
        f"Made by `{r['command']}` on {r['date']} ({r['machine']}, torch {r['torch']}, "
        f"{r['threads']} threads). Model `{r['model']}`; each row {r['n']} samples (UniPC, 20 "
        f"steps, sampling seed {r['sampling_seed']}, the same noise for every row), labelled by "
        f"the demo's digit classifier (held-out accuracy {r['classifier_held_out_accuracy']:.3f});"
        " chi-square against uniform, 9 degrees of freedom (a balanced model averages 9).",
        "",
        "| unconditional denoiser | counts (0-9) | chi-square | p | classifier s | sampling s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in r["rows"].items():
        lines.append(
            f"| {name} | {', '.join(map(str, row['counts']))} | {row['chi2']:.1f} | "
            f"{row['p']:.2g} | {row.get('classifier_train_seconds', '-')} | "
            f"{row['sample_seconds']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
