"""How far to noise the warm start of box inpainting, asked of training photos, and whether a
coarse-scale pass first helps: a probe that never looks at the held-out photos.

Same box (a central square of side min(H, W) / 4) and PSNR as `bench/restoration.py`, on four
photos of the `photos` training set (their content is in the prior's training data, so a prior
that remembers them looks better than it would on new photos: a caveat on every number here).

- warm: `ddnm` from the biharmonic fill noised to sigma_0, 10 steps, mean of --samples draws,
  for each sigma_0 of --sigmas;
- two scales: the same at 1/--factor scale first (its change to the coarse biharmonic fill,
  upsampled bicubically, is added to the fine fill), then the fine pass from that start.

Run: python bench/inpaint_warm_train.py --model runs/photos/model
     -> bench/results/inpaint_warm_train.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import diffvision
from diffvision.data.photos import training_photos
from diffvision.metrics import psnr
from diffvision.restore import Inpaint
from diffvision.restore.starts import classical_start
from diffvision.restore.tiles import solve_tiled
from inpaint_probe import markdown as probe_table
from restoration import RESULTS, prepare, tasks
from run_header import run_header, save_result

PHOTOS = ("grace_hopper", "sklearn-china", "stereo_motorcycle", "sklearn-flower")


def warm(model, op, y, start, sigma0: float, k: int) -> torch.Tensor:
    """Mean of k ddnm draws from ``start`` noised to ``sigma0`` (10 steps, 32 px tiles)."""
    with torch.no_grad():
        r = solve_tiled(
            model, op, y, tile=32, overlap=8, solver="ddnm", steps=10, n_samples=k,
            generator=torch.Generator().manual_seed(1), start=start, start_sigma=sigma0,
        )  # fmt: skip
    return r.mean if k > 1 else r


def two_scales(model, x, op, y, factor: int, sigma0: float, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (h // factor, w // factor)
    coarse_op = Inpaint((F.interpolate(op.mask, size=size, mode="area") > 0.999).float())
    coarse_y = coarse_op.forward(F.interpolate(x, size=size, mode="area"))
    coarse_fill = classical_start(coarse_op, coarse_y, "biharmonic")
    change = warm(model, coarse_op, coarse_y, coarse_fill, sigma0, k) - coarse_fill
    up = F.interpolate(change, size=(h, w), mode="bicubic", align_corners=False)
    return warm(model, op, y, op.project(classical_start(op, y, "biharmonic") + up, y), sigma0, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--sigmas", default="0.15,0.3,0.6,1.0", help="sigma_0 of the warm start")
    parser.add_argument("--factor", type=int, default=4, help="coarse scale of the two-scale run")
    parser.add_argument("--two-scale-sigma", type=float, default=0.6)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    images = training_photos()
    rows, begin = {}, time.time()
    for name in PHOTOS:
        x = prepare(torch.from_numpy(images[name]).permute(2, 0, 1), 0)
        op = tasks(*x.shape[-2:])["inpaint"][0]
        y = op.forward(x)
        fill = classical_start(op, y, "biharmonic")
        row = {"biharmonic": fill}
        for s in sigmas:
            row[f"warm from sigma {s}"] = warm(model, op, y, fill, s, args.samples)
        s, f = args.two_scale_sigma, args.factor
        row[f"two scales (1/{f}, then 1), sigma {s}"] = two_scales(
            model, x, op, y, f, s, args.samples
        )
        rows[name] = {k: float(psnr(v.clamp(-1, 1), x)) for k, v in row.items()}
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
    result = run_header("inpaint_warm_train") | {
        "seconds": round(time.time() - begin, 1),
        "samples": args.samples,
        "rows": rows,
    }
    save_result(args.out, "inpaint_warm_train", result, markdown(result))


def markdown(result: dict) -> str:
    return probe_table(
        result,
        "Warm-start level for box inpainting, on training photos",
        " These photos are in the prior's training data.",
    )


if __name__ == "__main__":
    main()
