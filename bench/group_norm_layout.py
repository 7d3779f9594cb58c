"""Group norm of bfloat16 channels-last CPU tensors: as they are, or as a contiguous copy
(`nets.unet.norm_as_contiguous`: few channels per group and few pixels).

Two tables: `F.group_norm` on batches of 128 at the U-Net's channel and group counts and sizes,
run on the channels-last tensor or on a contiguous copy turned back to channels-last (copies
included), the two alternated; and the photos prior's U-Net (one forward call on 128 tiles of
32 px, bf16 autocast, channels-last weights; untrained weights, which do not change its speed)
with the limit set to each of several values. Medians of --repeats calls after 2, malloc tuned
as the `diffvision` command tunes it.

Run: python bench/group_norm_layout.py -> bench/results/group_norm_layout.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import diffvision.nets.unet as unet
from diffvision.allocator import tune_malloc
from diffvision.denoiser import Denoiser
from diffvision.process import EDM
from restoration import RESULTS
from run_header import machine_words, run_header, save_result

#: (channels, groups): the photos prior's 4, 8 and 12 channels per group (8 groups), 16 per
#: group, and the 32 groups of the `cifar` preset at 4 and 8 per group.
NORMS = ((32, 8), (64, 8), (96, 8), (128, 8), (128, 32), (256, 32))
SIDES = (4, 8, 16, 32)
LIMITS = (0, 64, 256, 1024)
#: The photos prior's network (`train --data photos --size 32`: the `small` preset, RGB).
PHOTOS_NET = unet.UNetConfig(in_channels=3, out_channels=3, **unet.PRESETS["small"])


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per median")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    cl = torch.channels_last
    norms = []
    with torch.no_grad():
        for c, g in NORMS:
            for side in SIDES:
                x = torch.randn(128, c, side, side).to(torch.bfloat16, memory_format=cl)
                w, b = torch.randn(c), torch.randn(c)
                as_is = median_ms(lambda: F.group_norm(x, g, w, b), args.repeats)  # noqa: B023
                copied = median_ms(
                    lambda: F.group_norm(x.contiguous(), g, w, b).contiguous(memory_format=cl),  # noqa: B023
                    args.repeats,
                )
                norms.append(
                    {"channels": c, "groups": g, "side": side, "as_is": as_is, "copy": copied}
                )
        den = Denoiser(unet.UNet(PHOTOS_NET).eval(), "edm", EDM()).to(memory_format=cl)
        den.autocast = torch.bfloat16
        x = torch.randn(128, 3, 32, 32).contiguous(memory_format=cl)
        sigma = torch.full((128,), 0.5)
        kept = unet.NORM_AS_CONTIGUOUS_MAX_PIXELS
        forward = {}
        for _ in range(2):  # two alternated rounds
            for limit in LIMITS:
                unet.NORM_AS_CONTIGUOUS_MAX_PIXELS = limit
                ms = median_ms(lambda: den(x, sigma), args.repeats)
                forward.setdefault(str(limit), []).append(ms)
        unet.NORM_AS_CONTIGUOUS_MAX_PIXELS = kept
    result = {
        **run_header("group_norm_layout"),
        "settings": {
            "repeats": args.repeats,
            "out": str(args.out),
            "limit": kept,
            "max_group_channels": unet.NORM_AS_CONTIGUOUS_MAX_GROUP_CHANNELS,
        },
        "group_norm_ms": norms,
        "forward_ms": forward,
    }
    save_result(args.out, "group_norm_layout", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# Group norm of bf16 channels-last CPU tensors: as they are, or as a contiguous copy",
        "",
        f"`{r['command']}` on {machine_words(r)}, {r['date']}. Milliseconds, medians of "
        f"{r['settings']['repeats']} calls after 2; malloc tuned (`tune_malloc`).",
        "",
        "`F.group_norm` on a batch of 128 (copy: `x.contiguous()`, the norm, and back to "
        "channels-last):",
        "",
        "| channels | groups | side (px) | as it is | contiguous copy | copy / as it is |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["group_norm_ms"]:
        lines.append(
            f"| {row['channels']} | {row['groups']} | {row['side']} | {row['as_is']:.2f} "
            f"| {row['copy']:.2f} | {row['copy'] / row['as_is']:.2f} |"
        )
    lines += [
        "",
        "The photos prior's U-Net, one forward call on 128 tiles of 32 px (bf16 autocast, "
        "channels-last weights), with `NORM_AS_CONTIGUOUS_MAX_PIXELS` at each value (two "
        f"alternated rounds; the library's value: {r['settings']['limit']}, for at most "
        f"{r['settings']['max_group_channels']} channels per group):",
        "",
        "| limit (pixels) | forward (ms), each round | median |",
        "|---|---|---|",
    ]
    for limit, times in r["forward_ms"].items():
        lines.append(
            f"| {limit} | {', '.join(f'{t:.0f}' for t in times)} | {statistics.median(times):.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
