"""Restoration speed of the network's fast paths, end to end on one whole held-out photo: float32
or bf16 autocast (`--bf16`), each with the weights in the default or in channels-last memory
format (what `diffvision restore` uses on the CPU), the modes of `bench/sample_speed.py`. One
solver per task, the operators and settings of `bench/restoration.py` (tiles, classical starts,
FFTs and projections included); the modes alternated over --repeats rounds in one process;
PSNR per mode, to show the results stay put.

Run: python bench/restore_speed.py --model runs/photos/model
     -> bench/results/restore_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import diffvision
from diffvision.allocator import tune_malloc
from diffvision.data import held_out_photos
from diffvision.metrics import psnr
from restoration import RESULTS, build_parser, patch_size, prepare, run_solver, tasks
from run_header import machine_words, malloc_words, run_header, save_result
from sample_speed import MODES

#: task -> solver spec of bench/restoration.py (one sample each): the restore command's
#: defaults for these measurements (mmse; ddnm from the biharmonic fill; ddnm; repaint).
SOLVERS = {"denoise": "mmse", "inpaint": "ddnm+warm", "superres": "ddnm", "deblur": "repaint"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--photo", default="chelsea", help="a held-out photo, restored whole")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tuned = tune_malloc()  # as the diffvision command does
    run = build_parser().parse_args(["--steps", str(args.steps)])  # what run_solver reads
    run.tile = patch_size(json.loads((args.model / "config.json").read_text()))
    model = diffvision.load(args.model)
    x = prepare(held_out_photos(3)[args.photo], 0)
    problems = {
        task: (op, op.measure(x.double(), torch.Generator().manual_seed(0)).float())
        for task, (op, _, _) in tasks(*x.shape[-2:]).items()
        if task in SOLVERS
    }
    seconds = {task: {name: [] for name in MODES} for task in problems}
    quality = {task: {} for task in problems}
    for _ in range(args.repeats):
        for name, (dtype, layout) in MODES.items():
            model.autocast = dtype
            model.to(memory_format=layout)
            for task, (op, y) in problems.items():
                t0 = time.perf_counter()
                est, *_ = run_solver(model, op, y, SOLVERS[task], 1, run)
                seconds[task][name].append(time.perf_counter() - t0)
                quality[task][name] = float(psnr(est.clamp(-1, 1), x))
    result = {
        **run_header("restore_speed"),
        "malloc": tuned,
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "size": list(x.shape[-2:]),
        "solvers": SOLVERS,
        "seconds": seconds,
        "median_seconds": {
            t: {k: statistics.median(v) for k, v in s.items()} for t, s in seconds.items()
        },
        "psnr": quality,
    }
    save_result(args.out, "restore_speed", result, markdown(result))


def markdown(r: dict) -> str:
    s, (h, w) = r["settings"], r["size"]
    modes = list(MODES)
    lines = [
        "# Restoration speed: float32 or bf16, default or channels-last weights",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}. The held-out photo `{s['photo']}` whole ({w} x {h}), one sample, "
        f"{s['steps']} steps, 32 px tiles; the modes alternated {s['repeats']} times in one "
        "process (the first round includes warm-up). Seconds per image: median over rounds "
        "(speed-up against float32); PSNR (dB) of the last round." + malloc_words(r),
        "",
        "| task | solver | " + " | ".join(modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]
    for task, med in r["median_seconds"].items():
        cells = [
            f"{med[m]:.1f} s ({med['float32'] / med[m]:.2f}x), {r['psnr'][task][m]:.2f} dB"
            for m in modes
        ]
        lines.append(f"| {task} | `{r['solvers'][task]}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
