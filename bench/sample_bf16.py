"""Generation with the network in float32 and in bf16 (`Denoiser.autocast`, `sample --bf16`):
seconds for one batch, alternated over --repeats rounds in one process, and how far the bf16
samples move from the float32 ones (same seed, same sampler).

Run: python bench/sample_bf16.py --model runs/photos/model -> bench/results/sample_bf16.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import diffvision
from diffvision.samplers import sample
from restoration import RESULTS
from run_header import run_header, save_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--n", type=int, default=128, help="images per batch")
    parser.add_argument("--sampler", default="unipc")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    shape = (args.n, *model.config["sample_shape"])
    seconds = {"float32": [], "bf16": []}
    images = {}
    for _ in range(args.repeats):
        for mode, dtype in (("float32", None), ("bf16", torch.bfloat16)):
            model.autocast = dtype
            t0 = time.perf_counter()
            with torch.no_grad():
                images[mode] = sample(
                    model, shape, sampler=args.sampler, steps=args.steps,
                    generator=torch.Generator().manual_seed(0),
                )  # fmt: skip
            seconds[mode].append(time.perf_counter() - t0)
    change = (images["bf16"] - images["float32"]).abs()
    result = {
        **run_header("sample_bf16"),
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "seconds": seconds,
        "median_seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "mean_abs_change": float(change.mean()),
        "max_abs_change": float(change.max()),
    }
    save_result(args.out, "sample_bf16", result, markdown(result))


def markdown(r: dict) -> str:
    s, m = r["settings"], r["median_seconds"]
    return "\n".join(
        [
            "# Generation with the network in bf16 against float32",
            "",
            f"`{r['command']}` on {r['machine']}, torch {r['torch']}, {r['threads']} threads, "
            f"{r['date']}. One batch of {s['n']} images, `{s['sampler']}` with {s['steps']} steps, "
            f"the two modes alternated {s['repeats']} times in one process (the first round "
            "includes warm-up).",
            "",
            "| network | seconds per batch (each round) | median | speed-up |",
            "|---|---|---|---|",
            f"| float32 | {', '.join(f'{t:.1f}' for t in r['seconds']['float32'])} "
            f"| {m['float32']:.1f} | 1 |",
            f"| bf16 | {', '.join(f'{t:.1f}' for t in r['seconds']['bf16'])} | {m['bf16']:.1f} "
            f"| {m['float32'] / m['bf16']:.2f}x |",
            "",
            f"bf16 samples against float32 ones (same seed; images in [-1, 1]): mean |change| "
            f"{r['mean_abs_change']:.4f}, largest {r['max_abs_change']:.3f}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
