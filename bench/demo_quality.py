"""Quality of the demo configuration on digits: trains exactly what `diffvision demo` trains, then

- a digit classifier (SVM on scikit-learn's digits; held-out accuracy reported) labels the
  class-conditional samples (100 per class): the fraction labelled as the class asked for;
- unconditional samples (1,000; the demo draws them as the class-posterior mixture of the class
  branches, mixed by the noise classifier the demo trains): class counts and a chi-square test
  against uniform, for the demo's draw, three more sampling seeds of the same model, and all four
  pooled; to compare, the model's null branch (label dropout) for four sampling seeds and pooled;
- time and peak memory of the whole run on this machine.

Run: python bench/demo_quality.py [--seed 0]  ->  bench/results/demo_quality.json and .md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import chisquare

import diffvision
from diffvision.demo import demo_mixture, run_demo, unconditional_counts
from run_header import machine_words, run_header, save_result  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"
SEEDS = (1001, 1002, 1003)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        run_demo(Path(tmp), seed=args.seed, progress=False)
        wall = time.time() - start
        summary = json.loads((Path(tmp) / "demo.json").read_text())
        # The same model, more unconditional draws: how much the balance test varies by seed.
        model = diffvision.load(Path(tmp) / "model")
        mixture = demo_mixture(model, Path(tmp) / "model")
        extra = {seed: unconditional_counts(mixture, seed, null=None) for seed in SEEDS}
        extra_null = {seed: unconditional_counts(model, seed) for seed in (1000, *SEEDS)}
    checks = summary["checks"]
    assert checks["unconditional"] == "class-posterior mixture"
    draws = {
        "mixture": [checks["unconditional_counts"], *(c for c, _ in extra.values())],
        "null": [c for c, _ in extra_null.values()],
    }
    # All four draws together (4,000 samples): sees a bias that one draw of 1,000 passes by luck.
    pooled = {k: np.sum(v, axis=0) for k, v in draws.items()}
    pooled_p = {k: float(chisquare(v).pvalue) for k, v in pooled.items()}
    result = {
        **run_header("demo_quality"),
        "command": f"python bench/demo_quality.py --seed {args.seed}",
        "wall_seconds": round(wall, 1),
        **{
            k: summary[k]
            for k in ("train_seconds", "classifier_seconds", "peak_memory_mib", "threads")
        },
        "settings": summary["settings"],
        "checks": checks,
        "unconditional_extra_seeds": {str(k): {"counts": c, "p": p} for k, (c, p) in extra.items()},
        "unconditional_pooled": {"counts": pooled["mixture"].tolist(), "p": pooled_p["mixture"]},
        "null_class_extra_seeds": {
            str(k): {"counts": c, "p": p} for k, (c, p) in extra_null.items()
        },
        "null_class_pooled": {"counts": pooled["null"].tolist(), "p": pooled_p["null"]},
        "goals": {
            "conditional_agreement_at_least_0.90": checks["conditional_agreement"] >= 0.90,
            "unconditional_uniform_p_above_0.05": checks["chi_square_p"] > 0.05,
            "unconditional_uniform_p_above_0.05_extra_seeds": [p > 0.05 for _, p in extra.values()],
            "unconditional_uniform_p_above_0.05_pooled": pooled_p["mixture"] > 0.05,
            "demo_under_10_minutes": wall <= 600,
        },
    }
    save_result(args.out, "demo_quality", result, markdown(result))


def markdown(result: dict) -> str:
    """The result's table and notes (re-rendered from its JSON as written)."""
    checks = result["checks"]
    conditional = (
        f"class-conditional samples labelled as asked ({checks['samples_per_check']}, "
        f"guidance {checks['guidance']})"
    )

    def rows(name: str, draws: dict, pooled: dict) -> str:
        lines = [
            f"| {name}, sampling seed {seed}: counts {', '.join(map(str, d['counts']))} | "
            f"p = {d['p']:.3g} | p > 0.05 |"
            for seed, d in draws.items()
        ]
        lines.append(
            f"| {name}, four draws pooled (4,000): counts {', '.join(map(str, pooled['counts']))} "
            f"| p = {pooled['p']:.3g} | p > 0.05 |"
        )
        return "\n".join(lines)

    demo_draw = (
        f"| mixture, the demo's draw (1,000): counts "
        f"{', '.join(map(str, checks['unconditional_counts']))} | chi-square "
        f"{checks['chi_square']:.1f}, p = {checks['chi_square_p']:.3g} | p > 0.05 |"
    )
    mixture = rows("mixture", result["unconditional_extra_seeds"], result["unconditional_pooled"])
    null = rows(
        "null class (for comparison)", result["null_class_extra_seeds"], result["null_class_pooled"]
    )
    return f"""# Demo quality on digits

Made by `{result["command"]}` on {result["date"]} ({machine_words(result)}).
Whole run (training, sampling, checks, report): {result["wall_seconds"]} s; training
{result["train_seconds"]} s; peak memory {result["peak_memory_mib"]} MiB.

| check | value | goal |
|---|---|---|
| classifier held-out accuracy (SVM, 30% split) | {checks["classifier_held_out_accuracy"]:.3f} | |
| {conditional} | {checks["conditional_agreement"]:.3f} | >= 0.90 |
{demo_draw}
{mixture}
{null}
| whole demo wall time | {result["wall_seconds"]} s | <= 600 s |

Unconditional samples are the class-posterior mixture ``sum_c p(c | x, sigma) D(x, sigma, c)``
of the model's class branches, with ``p`` from the noise classifier the demo trains after the
U-Net ({result["classifier_seconds"]} s, part of the training time); pruned below p = 1e-4, it
evaluates {checks["mixture_classes_per_call"]:.2f} of 10 branches per sample and step. The null
class rows sample the model's null branch (the same sampling seeds as the mixture's extra draws,
and seed 1000). Chi-square against uniform has 9 degrees of freedom.

Sampler: {checks["sampler"]}.
"""


if __name__ == "__main__":
    main()
