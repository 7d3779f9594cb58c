"""Unconditional digits: the null branch against the class-posterior mixture of the class branches.

By Bayes, the unconditional denoiser is the class-posterior mixture of the conditional ones:
``E[x0 | x] = sum_c p(c | x) E[x0 | x, c]`` for ``x = x0 + sigma n``. `diffvision demo` samples
unconditionally this way (:class:`diffvision.denoiser.ClassMixture`, with ``p`` from
:func:`diffvision.train.classifier.train_noise_classifier`) because the null branch's class
balance falls short (`demo_checkpoints.md`). This benchmark draws N samples of one model for each
unconditional denoiser, from the same noise, and tests their digit counts against uniform:

- the null branch (label dropout), as the demo sampled before;
- the mixture with classifiers of several seeds and lengths (pruned below p = 1e-4, the default);
- the same mixture unpruned (all ten branches every step), for the cost and the counts.

The class is not fixed up front; the mixture settles it as sigma falls, so the counts depend on
how well calibrated the classifier is.

Run: python bench/demo_mixture.py --model runs/demo/model
     ->  bench/results/demo_mixture.{json,md}  (23 minutes on 2 CPU cores, 2026-11-27)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import diffvision
from demo_checkpoints import balance  # bench/, next to this script
from diffvision.data import digits
from diffvision.demo import digit_classifier
from diffvision.denoiser import ClassMixture
from diffvision.train.classifier import train_noise_classifier
from run_header import run_header, save_result  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"


def timed(denoiser, clf, n: int, seed: int, *, null) -> dict:
    start = time.time()
    row = balance(denoiser, clf, n, seed, null=null)
    row["sample_seconds"] = round(time.time() - start, 1)
    if isinstance(denoiser, ClassMixture):
        row["classes_per_call"] = round(denoiser.evaluations / denoiser.rows, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a digits model folder")
    parser.add_argument("--n", type=int, default=4000, help="samples per row")
    parser.add_argument("--seed", type=int, default=2001, help="sampling seed (same for all rows)")
    parser.add_argument(
        "--classifiers", default="4000:0,4000:1,8000:0,8000:1,8000:2", help="steps:seed,..."
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    digit_clf, held_out = digit_classifier(0)
    result = {
        **run_header("demo_mixture"),
        "model": str(args.model),
        "n": args.n,
        "sampling_seed": args.seed,
        "classifier_held_out_accuracy": held_out,
        "rows": {},
    }
    rows = result["rows"]
    rows["null branch"] = timed(model, digit_clf, args.n, args.seed, null=10)
    for i, spec in enumerate(args.classifiers.split(",")):
        steps, seed = map(int, spec.split(":"))
        clf, info = train_noise_classifier(digits(), steps=steps, seed=seed)
        for min_prob in (1e-4, 0.0) if i == 0 else (1e-4,):
            mixture = ClassMixture(model, clf, min_prob=min_prob)
            row = timed(mixture, digit_clf, args.n, args.seed, null=None)
            row["classifier_train_seconds"] = info["seconds"]
            pruned = f"pruned below p = {min_prob:g}" if min_prob else "all ten branches"
            rows[f"mixture, classifier {steps} steps, seed {seed}, {pruned}"] = row
            print(spec, min_prob, row, file=sys.stderr, flush=True)
    save_result(args.out, "demo_mixture", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# Unconditional digits: null branch vs class-posterior mixture of the class branches",
        "",
        f"Made by `{r['command']}` on {r['date']} ({r['machine']}, torch {r['torch']}, "
        f"{r['threads']} threads). Model `{r['model']}`; each row {r['n']} samples (UniPC, 20 "
        f"steps, sampling seed {r['sampling_seed']}, the same noise for every row), labelled by "
        f"the demo's digit classifier (held-out accuracy {r['classifier_held_out_accuracy']:.3f});"
        " chi-square against uniform, 9 degrees of freedom (a balanced model averages 9). "
        "Branches: class branches evaluated per sample and step (of 10).",
        "",
        "| unconditional denoiser | counts (0-9) | chi-square | p | branches | classifier s | "
        "sampling s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in r["rows"].items():
        lines.append(
            f"| {name} | {', '.join(map(str, row['counts']))} | {row['chi2']:.1f} | "
            f"{row['p']:.2g} | {row.get('classes_per_call', 1)} | "
            f"{row.get('classifier_train_seconds', '-')} | {row['sample_seconds']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
