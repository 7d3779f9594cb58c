"""Tiles per network call (`restore --batch`): seconds of one whole-image denoiser call of
`TiledDenoiser` (what `mmse`, the default denoising solver, makes, and what every step of the
other solvers makes) on a held-out photo enlarged to --side px, for several tile batches, in
float32 and in bf16 autocast, both with channels-last weights (the modes `diffvision restore`
uses on the CPU, with and without `--bf16`). Batches and modes alternated over --repeats rounds
in one process after one warm-up call each; the estimate is the same for every batch (checked).

Run: python bench/tile_batch.py --model runs/photos/model
     -> bench/results/tile_batch.{json,md}
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
from diffvision.cli.common import fast_inference
from diffvision.data import held_out_photos
from diffvision.restore.tiles import TiledDenoiser, tile_starts
from restoration import RESULTS, patch_size, prepare
from run_header import machine_words, malloc_words, run_header, save_result

#: mode -> bf16 autocast (both with the weights channels-last, as the command runs them)
MODES = {"float32": False, "bf16": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--photo", default="astronaut", help="a held-out photo")
    parser.add_argument("--side", type=int, default=1024, help="enlarged to side x side px")
    parser.add_argument("--batches", default="16,32,64,128,256,512,1024")
    parser.add_argument("--repeats", type=int, default=3, help="alternated rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tuned = tune_malloc()  # as the diffvision command does
    batches = [int(b) for b in args.batches.split(",")]
    tile = patch_size(json.loads((args.model / "config.json").read_text()))
    x = prepare(held_out_photos(3)[args.photo], 0)
    x = torch.nn.functional.interpolate(x, size=(args.side, args.side), mode="bicubic")
    sigma = 25 / 127.5
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    models = {}
    for mode, bf16 in MODES.items():
        models[mode] = diffvision.load(args.model)
        fast_inference(models[mode], torch.device("cpu"), bf16=bf16)
    seconds = {m: {b: [] for b in batches} for m in MODES}
    first = {}
    with torch.no_grad():
        for mode, model in models.items():  # warm-up, and the estimates to compare
            for b in batches:
                out = TiledDenoiser(model, tile, tile // 4, b, shift=False)(y, sigma)
                first.setdefault(mode, out)
                gap = float((out - first[mode]).abs().max())
                assert gap < (1e-4 if mode == "float32" else 2e-2), (mode, b, gap)
        for _ in range(args.repeats):
            for mode, model in models.items():
                for b in batches:
                    tiled = TiledDenoiser(model, tile, tile // 4, b, shift=False)
                    t0 = time.perf_counter()
                    tiled(y, sigma)
                    seconds[mode][b].append(time.perf_counter() - t0)
    tiles = len(tile_starts(args.side, tile, tile // 4)) ** 2  # the grid of every call
    result = {
        **run_header("tile_batch"),
        "malloc": tuned,
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "tile": tile,
        "tiles": tiles,
        "seconds": seconds,
        "median_seconds": {
            m: {b: statistics.median(v) for b, v in s.items()} for m, s in seconds.items()
        },
    }
    save_result(args.out, "tile_batch", result, markdown(result))


def markdown(r: dict) -> str:
    s = r["settings"]
    med = r["median_seconds"]
    batches = list(next(iter(med.values())))
    lines = [
        "# Tiles per network call (`restore --batch`)",
        "",
        f"`{r['command']}` on {machine_words(r)}, {r['date']}. One call of the tiled denoiser "
        f"on the held-out photo `{s['photo']}` enlarged to {s['side']} x {s['side']}: "
        f"{r['tiles']} tiles of {r['tile']} px overlapping by {r['tile'] // 4}, weights "
        f"channels-last; batches and modes alternated {s['repeats']} times in one process "
        "after a warm-up call each. Seconds per call, median over rounds (in brackets: "
        "tiles per second; against the command's default, 128)." + malloc_words(r),
        "",
        "| mode | " + " | ".join(str(b) for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for mode, by_batch in med.items():
        base = by_batch.get(128, by_batch.get("128"))
        cells = [
            f"{t:.2f} s ({r['tiles'] / t:.0f}/s" + (f", {base / t:.2f}x)" if base else ")")
            for t in by_batch.values()
        ]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
