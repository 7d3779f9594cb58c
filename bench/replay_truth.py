"""How close the deblurring replay's truth comes to a sharp image, on the training photos, without
a model: the floor of the filter that undoes the blur left in y pooled (`SHARPEN_FLOOR`).

The replay (`diffvision.restore.replay.replay_truth`) plays y pooled by p as the truth of the
same deblurring problem one measurement down. Pooled, y still carries the kernel's blur at
1 / p of its size (`pooled_blur_spectrum`); `sharpen` undoes it with the filter
conj(K) / (|K|^2 + lam), lam = (y's pooled noise / SIGNAL_STD)^2 + floor. The ideal truth is
the photo pooled before blurring. For each kernel (3 Gaussian, 3 motion), noise level (0 and 2 on
the 0-255 scale) and floor, this reports the RMS error of the truth against that ideal, as a
ratio to plain pooling's. The floor kept: of those never worse than plain pooling, the largest
(the most cautious) whose geometric mean ratio is within 1% of the lowest. Training photos
only: the held-out ones judge the replay.

Run: python bench/replay_truth.py -> bench/results/replay_truth.{json,md}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffvision.data.photos import training_photos
from diffvision.restore import Deblur, gaussian_kernel, motion_kernel
from diffvision.restore.replay import _sharpened, deblur_pooling, pooled_blur_spectrum
from restoration import RESULTS
from run_header import run_header, save_result

KERNELS = {
    "gauss:1": lambda: gaussian_kernel(7, 1.0),
    "gauss:2": lambda: gaussian_kernel(13, 2.0),
    "gauss:3": lambda: gaussian_kernel(19, 3.0),
    "motion:9:30": lambda: motion_kernel(9, 30.0),
    "motion:15:0": lambda: motion_kernel(15, 0.0),
    "motion:21:60": lambda: motion_kernel(21, 60.0),
}
FLOORS = (1 / 1024, 1 / 512, 1 / 256, 1 / 128, 1 / 64, 1 / 32, 1 / 16)


def as_image(photo: np.ndarray) -> torch.Tensor:
    """A training photo (H x W or H x W x C, uint8) as 1 x C x H x W in [-1, 1]."""
    x = torch.as_tensor(np.asarray(photo), dtype=torch.float64)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)[:3]
    return x[None] / 127.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    photos = {name: as_image(p) for name, p in training_photos().items()}
    rows = []
    for kname, make in KERNELS.items():
        for sigma255 in (0.0, 2.0):
            op = Deblur(make(), sigma=sigma255 / 127.5)
            p = deblur_pooling(op.kernel)
            err2 = {"plain": [], **{str(f): [] for f in FLOORS}}
            for x in photos.values():
                x = x[..., : x.shape[-2] // p * p, : x.shape[-1] // p * p]
                if min(x.shape[-2:]) // p < op.kernel.shape[0]:
                    continue
                y = op.measure(x, torch.Generator().manual_seed(0))
                ideal, pooled = F.avg_pool2d(x, p), F.avg_pool2d(y, p)
                err2["plain"].append(float((pooled - ideal).square().mean()))
                k = pooled_blur_spectrum(op.kernel, p, pooled.shape[-2:])
                for floor in FLOORS:
                    sharp = _sharpened(pooled, op.sigma**2 / p**2, k, floor)[0]
                    err2[str(floor)].append(float((sharp - ideal).square().mean()))
            rms = {key: math.sqrt(np.mean(v)) * 127.5 for key, v in err2.items()}
            rows.append({"kernel": kname, "sigma": sigma255, "pooling": p, "rms": rms})
            print(kname, sigma255, {key: round(v, 2) for key, v in rms.items()}, flush=True)
    summary = {}
    for floor in FLOORS:
        ratios = [row["rms"][str(floor)] / row["rms"]["plain"] for row in rows]
        summary[str(floor)] = {
            "geometric_mean_ratio": math.exp(np.mean(np.log(ratios))),
            "worst_ratio": max(ratios),
        }
    safe = [f for f in FLOORS if summary[str(f)]["worst_ratio"] <= 1]
    lowest = min(summary[str(f)]["geometric_mean_ratio"] for f in safe)
    best = max(f for f in safe if summary[str(f)]["geometric_mean_ratio"] <= 1.01 * lowest)
    result = {
        **run_header("replay_truth"),
        "photos": list(photos),
        "rows": rows,
        "summary": summary,
        "chosen_floor": best,
    }
    save_result(args.out, "replay_truth", result, markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# The deblurring replay's truth: how sharp, by the floor of its filter",
        "",
        f"`{r['command']}` on {r['machine']}, torch {r['torch']}, {r['date']}. The "
        f"{len(r['photos'])} training photos (never the held-out ones), whole; y = the photo "
        "blurred (circularly) plus noise; the truth is y pooled by p (`deblur_pooling`), "
        "plain or with the blur left in it undone by conj(K) / (|K|^2 + lam), lam = (noise / "
        "0.5)^2 + floor. Cells: RMS error against the photo pooled before blurring (0-255 "
        "scale), pooled over the photos; in brackets the ratio to plain pooling.",
        "",
        "| kernel | noise | p | plain | " + " | ".join(f"floor {_floor(f)}" for f in FLOORS) + " |",
        "|---|---|---|---|" + "---|" * len(FLOORS),
    ]
    for row in r["rows"]:
        plain = row["rms"]["plain"]
        cells = [f"{row['rms'][str(f)]:.2f} ({row['rms'][str(f)] / plain:.2f})" for f in FLOORS]
        lines.append(
            f"| {row['kernel']} | {row['sigma']:g} | {row['pooling']} | {plain:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    s = r["summary"]
    lines += [
        "| geometric mean ratio | | | 1 | "
        + " | ".join(f"{s[str(f)]['geometric_mean_ratio']:.3f}" for f in FLOORS)
        + " |",
        "| worst ratio | | | 1 | "
        + " | ".join(f"{s[str(f)]['worst_ratio']:.3f}" for f in FLOORS)
        + " |",
        "",
        "Chosen: of the floors never worse than plain pooling, the largest (the gain capped "
        "lowest) whose geometric mean ratio is within 1% of the lowest: floor "
        f"{_floor(r['chosen_floor'])}.",
    ]
    return "\n".join(lines) + "\n"


def _floor(f: float) -> str:
    return "0" if f == 0 else f"1/{round(1 / f)}"


if __name__ == "__main__":
    main()
