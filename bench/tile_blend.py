"""Cost of restoring whole images in tiles, apart from the network: (1) the blend of one
denoiser call, `TiledDenoiser` (one scatter-add of all tiles) against the same estimate written
out tile by tile (`blend_tile_by_tile`, an image-sized add per tile: how TiledDenoiser blended
before 2026-12-05), with a 3 x 3 convolution as the denoiser, so that the blend is nearly all
the time; (2) one value-and-gradient call, what `dps` makes each step, with the tiny U-Net
(random weights) in 8 px tiles, blended tile by tile as before or by the scatter-add, its
batches kept, checkpointed, or checkpointed only where keeping them would not fit (auto, now),
and with the photos prior's network in 32 px tiles: seconds and the process's peak resident
memory, each in a fresh process.

Run: python bench/tile_blend.py -> bench/results/tile_blend.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffvision.denoiser import Denoiser
from diffvision.memory import available_bytes
from diffvision.nets.unet import build_unet
from diffvision.process import get_schedule
from diffvision.restore.tiles import (
    KEEP_SHARE,
    TiledDenoiser,
    blend_tile_by_tile,
    tile_starts,
)
from restoration import RESULTS
from run_header import machine_words, run_header, save_result


def seconds(call, repeats: int, warm_up: bool = True) -> tuple[float, object]:
    """Median wall-clock seconds of ``call()`` over ``repeats`` runs (after one warm-up run
    with ``warm_up``), and the last run's result."""
    if warm_up:
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def blend_row(size: int, tile: int, overlap: int, repeats: int, written_out: bool) -> dict:
    """Seconds per call of both blends on a 1 x 3 x size x size image (the written-out one
    only with ``written_out``; above 1024 px one call, no warm-up: minutes each), and their
    largest difference."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(1, 3, size, size)
    sigma = torch.full((1,), 0.5)
    tiled = TiledDenoiser(lambda t, s: conv(t), tile, overlap, shift=False)
    rows = cols = tile_starts(size, tile, overlap)
    row = {"size": size, "tiles": len(rows) * len(cols)}
    with torch.no_grad():
        row["scatter_add_s"], out = seconds(lambda: tiled(x, sigma), repeats)
        if written_out:
            big = size > 1024
            row["tile_by_tile_s"], reference = seconds(
                lambda: blend_tile_by_tile(lambda t, s: conv(t), x, sigma, rows, cols, tile,
                                           overlap),
                1 if big else repeats, warm_up=not big,
            )  # fmt: skip
            row["max_difference"] = float((out - reference).abs().max())
    return row


#: the gradient's modes: how the tiles are blended, and whether their batches are checkpointed
#: (``TiledDenoiser``'s ``checkpoint``: False, True, "auto")
GRADIENT_MODES = (
    "tile by tile (before)",
    "scatter-add, kept",
    "scatter-add, checkpointed",
    "scatter-add, auto (now)",
)
CHECKPOINT = {GRADIENT_MODES[1]: False, GRADIENT_MODES[2]: True, GRADIENT_MODES[3]: "auto"}

#: the networks in tiles: the tiny U-Net in 8 px tiles (many tiles on a small image), and the
#: photos prior's network (the small preset, RGB) in the tiles and batches that ``restore``
#: gives it for a model trained on 32 px patches
SETUPS = {
    "tiny": {"preset": "tiny", "channels": 1, "tile": 8, "overlap": 2, "batch": 128},
    "photos": {"preset": "small", "channels": 3, "tile": 32, "overlap": 8, "batch": 256},
}


def gradient_child(setup: str, size: int, mode: str) -> None:
    """In a fresh process: a value-and-gradient call of the tiled network of ``setup``
    (:data:`SETUPS`, random weights) on a size x size image in ``mode``
    (:data:`GRADIENT_MODES`), timed the second time; prints JSON with whether the batches were
    checkpointed, the activations that keeping them all would hold (``kept_bytes``, the count
    that "auto" decides by) and the memory free before the call. "tile by tile" is how
    TiledDenoiser ran before 2026-12-05: all tiles denoised in batches, then blended by an
    image-sized add per tile."""
    torch.manual_seed(0)
    spec = SETUPS[setup]
    tile, overlap, batch = spec["tile"], spec["overlap"], spec["batch"]
    net = build_unet(spec["preset"], in_channels=spec["channels"])
    model = Denoiser(net, "edm", get_schedule("edm")).eval()
    tiled = TiledDenoiser(
        model, tile, overlap, batch, shift=False, checkpoint=CHECKPOINT.get(mode, False)
    )
    starts = tile_starts(size, tile, overlap)
    sigma = torch.full((1,), 0.7)

    def by_tile(x):
        tiles = torch.cat([x[..., r : r + tile, c : c + tile] for r in starts for c in starts])
        sigmas = sigma.expand(len(tiles))
        out = torch.cat([model(tiles[i : i + batch], sigmas[i : i + batch])
                         for i in range(0, len(tiles), batch)])  # fmt: skip
        index = iter(range(len(tiles)))  # each tile's estimate sliced out of all, as before
        return blend_tile_by_tile(lambda t, s: out[(k := next(index)) : k + 1], x, sigma, starts,
                                  starts, tile, overlap)  # fmt: skip

    call = by_tile if mode == GRADIENT_MODES[0] else lambda x: tiled(x, sigma)
    x = torch.randn(1, spec["channels"], size, size, requires_grad=True)
    free = available_bytes(x.device)
    tiles = torch.zeros(len(starts) ** 2, spec["channels"], tile, tile, requires_grad=True)
    sigmas = sigma.expand(len(tiles))
    checkpointed = None if mode == GRADIENT_MODES[0] else tiled.checkpoints(tiles, sigmas)
    counted = tiled.kept_bytes(tiles, sigmas)
    for _ in range(2):  # the second call timed: the first pays one-time set-up
        t0 = time.perf_counter()
        (grad,) = torch.autograd.grad(call(x).square().sum(), x)
        took = time.perf_counter() - t0
    # VmHWM, the peak resident memory of this process image (ru_maxrss would carry the
    # parent's peak over the exec)
    status = Path("/proc/self/status").read_text().split("\n")
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": took, "peak_bytes": peak, "grad_norm": float(grad.norm()),
                      "checkpointed": checkpointed, "kept_bytes": counted,
                      "free_bytes": free}))  # fmt: skip


def gradient_row(setup: str, size: int, mode: str) -> dict:
    mode_index = str(GRADIENT_MODES.index(mode))
    command = [sys.executable, __file__, "--child", setup, str(size), mode_index]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {"setup": setup, "size": size, "mode": mode, **json.loads(done.stdout)}


def markdown(result: dict) -> str:
    """The tables of a result of :func:`main`, from its JSON alone."""
    lines = [
        "# Tiled restoration: the blend's cost and the gradient's memory",
        "",
        f"`{result['command']}` on {machine_words(result)}, {result['date']}.",
        "",
        "One denoiser call on a 3 x size x size image, 32 px tiles overlapping by 8, a 3 x 3 "
        f"convolution as the denoiser; seconds: median of {result['settings']['repeats']} "
        "calls after a warm-up (the tile-by-tile blend above 1024 px: one call).",
        "",
        "| size | tiles | scatter-add (now) | tile by tile (before) | ratio | largest difference |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["blend"]:
        old = row.get("tile_by_tile_s")
        ratio = f"{old / row['scatter_add_s']:.0f}x" if old else "-"
        lines.append(
            f"| {row['size']} | {row['tiles']} | {row['scatter_add_s']:.3f} s | "
            f"{f'{old:.3f} s' if old else '-'} | {ratio} | "
            f"{row.get('max_difference', '-')} |"
        )
    lines += [
        "",
        "One value-and-gradient call (what `dps` makes each step), each in a fresh process, "
        "the second of two calls timed, with random weights: the tiny U-Net (1 channel) in 8 px "
        "tiles overlapping by 2, batches of 128 tiles; the photos prior's network (the small "
        "preset, RGB) in 32 px tiles overlapping by 8, batches of 256, as `restore` runs a "
        "model trained on 32 px patches. Peak: the process's maximum resident memory (Python, "
        "torch and the model included). Counted: the activations that keeping every batch "
        "would hold (`TiledDenoiser.kept_bytes`, from one tile and two); the auto mode keeps "
        f"them where that is at most {result['library_keep_share']:g} of the memory free "
        f"({result['gradient'][0]['free_bytes'] / 2**30:.1f} GiB at the first call).",
        "",
        "| network | size | tiles | blend | checkpointed | seconds | peak memory | counted | "
        "gradient norm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["gradient"]:
        spec = SETUPS[row["setup"]]
        tiles = len(tile_starts(row["size"], spec["tile"], spec["overlap"])) ** 2
        checkpointed = {None: "-", True: "yes", False: "no"}[row["checkpointed"]]
        lines.append(
            f"| {row['setup']} | {row['size']} | {tiles} | {row['mode']} | {checkpointed} | "
            f"{row['seconds']:.2f} | {row['peak_bytes'] / 2**30:.2f} GiB | "
            f"{row['kept_bytes'] / 2**30:.2f} GiB | {row['grad_norm']:.6g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048])
    parser.add_argument(
        "--written-out-up-to",
        type=int,
        default=2048,
        help="largest size to time the tile-by-tile blend at (1 call above 1024)",
    )
    parser.add_argument("--gradient-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument(
        "--auto-only-sizes",
        type=int,
        nargs="*",
        default=[2048],
        help="sizes for the tiny U-Net's gradient in the auto mode alone (keeping would not fit)",
    )
    parser.add_argument(
        "--photo-sizes",
        type=int,
        nargs="*",
        default=[512],
        help="sizes for the photos network's gradient, checkpointed and auto",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    if args.child:
        gradient_child(args.child[0], int(args.child[1]), GRADIENT_MODES[int(args.child[2])])
        return
    blends = [
        blend_row(size, 32, 8, args.repeats, size <= args.written_out_up_to) for size in args.sizes
    ]
    gradients = [gradient_row("tiny", s, m) for s in args.gradient_sizes for m in GRADIENT_MODES]
    gradients += [gradient_row("tiny", s, GRADIENT_MODES[3]) for s in args.auto_only_sizes]
    gradients += [
        gradient_row("photos", s, m) for s in args.photo_sizes for m in GRADIENT_MODES[2:]
    ]
    result = {
        **run_header("tile_blend"),
        "settings": vars(args) | {"out": str(args.out)},
        "blend": blends,
        "gradient": gradients,
        "library_keep_share": KEEP_SHARE,  # the auto mode's share of the free memory
    }
    save_result(args.out, "tile_blend", result, markdown(result))


if __name__ == "__main__":
    main()
