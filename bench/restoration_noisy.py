"""Which solver for a noisy measurement at the restore command's 50 steps: `ddnm` (DDNM+) or
`repaint` (its replacement for noisy y), at 10 and 50 steps without resampling, and at 50
steps with RePaint's resampling (2 and 4 passes, jump length 10; 2x and 4x the network
calls).

Problems: 4x super-resolution (antialiased bicubic) with noise sigma 5, and inpainting of 50%
random pixels with noise sigma 10 (0-255 scale), on the central --crop x --crop pixels of the
held-out photos, 32 px tiles with 8 px overlap, one sample each (seed 1). Deblurring has its own
runs (`restoration.py --crop 128 --tasks deblur`, results restoration_deblur_steps*.md).

Run: python bench/restoration_noisy.py --model runs/photos/model
     -> bench/results/restoration_noisy.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.metrics import psnr
from diffvision.restore import Inpaint, SuperResolution, random_mask
from diffvision.restore.tiles import solve_tiled
from inpaint_probe import markdown as probe_table
from restoration import RESULTS, prepare
from run_header import run_header, save_result


def problems(h: int, w: int) -> dict:
    mask = random_mask(h, w, 0.5, torch.Generator().manual_seed(0))
    return {
        "4x SR, sigma 5": SuperResolution(4, "bicubic", sigma=5 / 127.5),
        "50% random pixels, sigma 10": Inpaint(mask, sigma=10 / 127.5),
    }


#: (solver, steps, RePaint passes) of each row.
RUNS = [
    ("ddnm", 10, 1),
    ("ddnm", 50, 1),
    ("repaint", 10, 1),
    ("repaint", 50, 1),
    ("repaint", 50, 2),
    ("repaint", 50, 4),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    rows, begin = {}, time.time()
    for name, image in held_out_photos(3).items():
        x = prepare(image, args.crop)
        rows[name] = {}
        for label, op in problems(*x.shape[-2:]).items():
            y = op.measure(x, torch.Generator().manual_seed(0))
            for solver, steps, passes in RUNS:
                options = {"jump_n_sample": passes} if solver == "repaint" else {}
                with torch.no_grad():
                    est = solve_tiled(
                        model, op, y, tile=32, overlap=8, solver=solver, steps=steps,
                        generator=torch.Generator().manual_seed(1), **options,
                    )  # fmt: skip
                key = f"{label}: {solver}, {steps} steps" + (
                    f", resample {passes}" if passes > 1 else ""
                )
                rows[name][key] = float(psnr(est.clamp(-1, 1), x))
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
    result = run_header("restoration_noisy") | {
        "seconds": round(time.time() - begin, 1),
        "crop": args.crop,
        "rows": rows,
    }
    save_result(args.out, "restoration_noisy", result, markdown(result))


def markdown(result: dict) -> str:
    return probe_table(
        result,
        "Noisy measurements: DDNM+ or repaint, at 10 and 50 steps, and with resampling",
        setting="PSNR (dB) of the central {crop} x {crop} crop; one sample each.",
    )


if __name__ == "__main__":
    main()
