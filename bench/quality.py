"""Sample quality against NFE for every sampler, on the demo digits model.

Domain features: a small CNN digit classifier trained on the digits (its held-out accuracy is
reported) gives the Fréchet distance (FD) and the accuracy of class-conditional samples. For each
sampler and NFE: 300 class-balanced samples per seed, 3 seeds, against 300 random real digits;
the real-versus-real floor is two disjoint sets of 300 real digits. Goal (issue 5): at 10 NFE the
best sampler's FD is within 1.5x of its own 100-NFE value.

Run: python bench/quality.py [--model runs/demo/model]  ->  bench/results/quality.{json,md,png}
(trains the demo model first when --model does not exist: about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

import diffvision
from diffvision.data import digits
from diffvision.demo import run_demo
from diffvision.metrics import evaluate as ev
from diffvision.samplers import SAMPLERS
from diffvision.train.features import train_feature_net
from run_header import save_result  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"
NFES = (5, 10, 20, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    # ddim is left out by default: with eta = 0 it is euler, step for step.
    parser.add_argument("--samplers", default=",".join(s for s in SAMPLERS if s != "ddim"))
    parser.add_argument("--nfe", default=",".join(map(str, NFES)))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        run_demo(args.model.parent, progress=False)
    model = diffvision.load(args.model)
    data = digits()
    start = time.time()
    features, info = train_feature_net(data, steps=ev.FEATURE_STEPS, seed=0)
    names = args.samplers.split(",")
    nfes = [int(v) for v in args.nfe.split(",")]
    rows = ev.sweep(
        model,
        data,
        features,
        samplers=names,
        nfes=nfes,
        n=args.n,
        seeds=list(range(args.seeds)),
        progress=lambda r: print(
            f"{r['sampler']:>15} NFE {r['nfe']:>3}: FD {r['metrics']['fd']['mean']:.3f} "
            f"acc {r['accuracy']:.3f}",
            flush=True,
        ),
    )
    fd = {(r["sampler"], r["budget"]): r["metrics"]["fd"]["mean"] for r in rows}
    goal = {k: fd[(k, 10)] / fd[(k, 100)] for k in names if (k, 10) in fd and (k, 100) in fd}
    best = min(goal, key=lambda k: fd[(k, 10)]) if goal else None
    result = {
        "benchmark": "quality",
        "command": shlex.join(["python", "bench/quality.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "model": str(args.model),
        "feature_net": info,
        "seconds": round(time.time() - start, 1),
        "rows": rows,
        "fd_ratio_10_to_100": goal,
        "best_at_10": best,
        "goal_best_at_10_within_1.5x_of_its_100": bool(best and goal[best] <= 1.5),
    }
    save_result(args.out, "quality", result, markdown(result))
    ev.plot_sweep(rows, args.out / "quality.png", title="demo digits model: quality against NFE")


def markdown(result: dict) -> str:
    rows = result["rows"]
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    nfes = sorted({r["budget"] for r in rows})
    by = {(r["sampler"], r["budget"]): r for r in rows}
    floor = rows[0]["floor"]["fd"]
    info = result["feature_net"]
    lines = [
        "# Quality against NFE: demo digits model",
        "",
        f"`{result['command']}` on {result['machine']}, torch {result['torch']}, "
        f"{result['date']}; {result['seconds']} s.",
        f"Model: `{result['model']}`.",
        f"Features: digit CNN classifier (held-out accuracy {info['holdout_accuracy']:.3f}). "
        f"N = {rows[0]['n']} class-balanced samples per seed, {len(rows[0]['seeds'])} seeds; "
        "mean ± std over seeds. Columns are NFE budgets: heun (2 evaluations per step but one "
        "at the last) and pc (2 per step) use the most steps within the budget.",
        "",
        f"Real-versus-real floor: FD {floor['mean']:.3f} ± {floor['std']:.3f}.",
        "",
        "## Fréchet distance (domain features; lower is better)",
        "",
        "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---|" + "---|" * len(nfes),
    ]
    for name in names:
        cells = []
        for n in nfes:
            fd = by[(name, n)]["metrics"]["fd"] if (name, n) in by else None
            cells.append(f"{fd['mean']:.3f} ± {fd['std']:.3f}" if fd else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Classifier accuracy on class-conditional samples", ""]
    lines += ["| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |"]
    lines += ["|---|" + "---|" * len(nfes)]
    for name in names:
        cells = [f"{by[(name, n)]['accuracy']:.3f}" if (name, n) in by else "-" for n in nfes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best = result["best_at_10"]
    met = result["goal_best_at_10_within_1.5x_of_its_100"]
    if best:
        lines += [
            "",
            f"Goal: best sampler at 10 NFE is `{best}`; its FD at 10 NFE is "
            f"{result['fd_ratio_10_to_100'][best]:.2f}x its FD at 100 NFE "
            f"(goal <= 1.5x: {'met' if met else 'NOT met'}).",
        ]
    lines += ["", "![quality against NFE](quality.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
