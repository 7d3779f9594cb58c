"""Generation speed of the network's fast paths: float32 or bf16 autocast (`Denoiser.autocast`,
`--bf16`), each with the weights in the default or in channels-last memory format (what the
`sample` and `restore` commands use on the CPU). Seconds for one batch, the modes alternated
over --repeats rounds in one process, and how far each mode's samples move from float32's
(same seed, same sampler).

Run: python bench/sample_speed.py --model runs/photos/model -> bench/results/sample_speed.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import diffvision
from diffvision.allocator import tune_malloc
from diffvision.samplers import sample
from restoration import RESULTS
from run_header import machine_words, malloc_words, run_header, save_result

#: name -> (autocast dtype, memory format of the weights)
MODES = {
    "float32": (None, torch.contiguous_format),
    "float32, channels-last": (None, torch.channels_last),
    "bf16": (torch.bfloat16, torch.contiguous_format),
    "bf16, channels-last": (torch.bfloat16, torch.channels_last),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--n", type=int, default=128, help="images per batch")
    parser.add_argument("--sampler", default="unipc")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tuned = tune_malloc()  # as the diffvision command does
    model = diffvision.load(args.model)
    shape = (args.n, *model.config["sample_shape"])
    seconds = {name: [] for name in MODES}
    images = {}
    for _ in range(args.repeats):
        for name, (dtype, layout) in MODES.items():
            model.autocast = dtype
            model.to(memory_format=layout)
            t0 = time.perf_counter()
            with torch.no_grad():
                images[name] = sample(
                    model, shape, sampler=args.sampler, steps=args.steps,
                    generator=torch.Generator().manual_seed(0),
                )  # fmt: skip
            seconds[name].append(time.perf_counter() - t0)
    change = {name: (images[name] - images["float32"]).abs() for name in MODES}
    result = {
        **run_header("sample_speed"),
        "malloc": tuned,
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "seconds": seconds,
        "median_seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "mean_abs_change": {k: float(v.mean()) for k, v in change.items()},
        "max_abs_change": {k: float(v.max()) for k, v in change.items()},
    }
    save_result(args.out, "sample_speed", result, markdown(result))


def markdown(r: dict) -> str:
    s, m = r["settings"], r["median_seconds"]
    lines = [
        "# Generation speed: float32 or bf16, default or channels-last weights",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}. One batch of {s['n']} images, `{s['sampler']}` with {s['steps']} steps, "
        f"the modes alternated {s['repeats']} times in one process (the first round "
        "includes warm-up)."
        f"{malloc_words(r)} Change: |sample - float32 sample| (same seed; images in [-1, 1]).",
        "",
        "| network | seconds per batch (each round) | median | speed-up | mean change "
        "| largest change |",
        "|---|---|---|---|---|---|",
    ]
    for name, times in r["seconds"].items():
        lines.append(
            f"| {name} | {', '.join(f'{t:.1f}' for t in times)} | {m[name]:.1f} "
            f"| {m['float32'] / m[name]:.2f}x | {r['mean_abs_change'][name]:.2g} "
            f"| {r['max_abs_change'][name]:.2g} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
