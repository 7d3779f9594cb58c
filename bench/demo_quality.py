"""Quality of the demo configuration on digits: trains exactly what `diffvision demo` trains, then

- a digit classifier (SVM on scikit-learn's digits; held-out accuracy reported) labels the
  class-conditional samples (100 per class): the fraction labelled as the class asked for;
- unconditional samples (1,000, null class): class counts and a chi-square test against uniform,
  for the demo's draw, three more sampling seeds of the same model, and all four pooled;
- time and peak memory of the whole run on this machine.

Run: python bench/demo_quality.py [--seed 0]  ->  bench/results/demo_quality.json and .md
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chisquare

import diffvision
from diffvision.demo import run_demo, unconditional_counts

RESULTS = Path(__file__).parent / "results"


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
        extra = {seed: unconditional_counts(model, seed) for seed in (1001, 1002, 1003)}
    checks = summary["checks"]
    # All four draws together (4,000 samples): sees a bias that one draw of 1,000 passes by luck.
    pooled = np.sum([checks["unconditional_counts"], *(c for c, _ in extra.values())], axis=0)
    pooled_p = float(chisquare(pooled).pvalue)
    pooled_counts = ", ".join(map(str, pooled))
    result = {
        "benchmark": "demo_quality",
        "command": f"python bench/demo_quality.py --seed {args.seed}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "wall_seconds": round(wall, 1),
        **{k: summary[k] for k in ("train_seconds", "peak_memory_mib", "threads", "settings")},
        "checks": checks,
        "unconditional_extra_seeds": {str(k): {"counts": c, "p": p} for k, (c, p) in extra.items()},
        "unconditional_pooled": {"counts": pooled.tolist(), "p": pooled_p},
        "goals": {
            "conditional_agreement_at_least_0.90": checks["conditional_agreement"] >= 0.90,
            "unconditional_uniform_p_above_0.05": checks["chi_square_p"] > 0.05,
            "unconditional_uniform_p_above_0.05_extra_seeds": [p > 0.05 for _, p in extra.values()],
            "unconditional_uniform_p_above_0.05_pooled": pooled_p > 0.05,
            "demo_under_10_minutes": wall <= 600,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_quality.json").write_text(json.dumps(result, indent=1))
    counts = ", ".join(map(str, checks["unconditional_counts"]))
    conditional = (
        f"class-conditional samples labelled as asked ({checks['samples_per_check']}, "
        f"guidance {checks['guidance']})"
    )
    chi = f"{checks['chi_square']:.1f}, p = {checks['chi_square_p']:.3g}"
    extra_rows = "".join(
        f"| same model, sampling seed {seed}: counts {', '.join(map(str, c))} | p = {p:.3g} "
        "| p > 0.05 |\n"
        for seed, (c, p) in extra.items()
    )
    md = f"""# Demo quality on digits

Made by `{result["command"]}` on {result["date"]} ({result["machine"]}, {result["threads"]}
threads, torch {result["torch"]}). Whole run (training, sampling, checks, report):
{result["wall_seconds"]} s; training {result["train_seconds"]} s; peak memory
{result["peak_memory_mib"]} MiB.

| check | value | goal |
|---|---|---|
| classifier held-out accuracy (SVM, 30% split) | {checks["classifier_held_out_accuracy"]:.3f} | |
| {conditional} | {checks["conditional_agreement"]:.3f} | >= 0.90 |
| unconditional class counts (1,000 samples) | {counts} | |
| chi-square vs uniform (9 dof) | {chi} | p > 0.05 |
{extra_rows}| four draws pooled (4,000): counts {pooled_counts} | p = {pooled_p:.3g} | p > 0.05 |
| whole demo wall time | {result["wall_seconds"]} s | <= 600 s |

Sampler: {checks["sampler"]}.
"""
    (args.out / "demo_quality.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
