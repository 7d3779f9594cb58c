"""A picture of restoration results: one held-out photo crop, each task with one solver.

Rows: denoise (sigma 25, mmse), box inpainting (ddnm from the biharmonic fill, mean of 8),
4x super-resolution (ddnm, mean of 4 samples), deblur (repaint, mean of 4), colorize (ddnm): the
solvers of the README's table. Columns: measurement (brought to full size by the pseudo-inverse
where it is smaller) | result | ground truth. The operators and solver settings of
bench/restoration.py, on a central crop (the box is a quarter of the crop's side).

Run: python bench/restoration_figure.py --model runs/photos/model -> bench/results/restoration.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.io.images import make_grid, to_pil
from diffvision.restore.solvers import START_SIGMA
from restoration import patch_size, prepare, run_solver, tasks

SOLVER = {  # task -> (solver, samples averaged)
    "denoise": ("mmse", 1),
    "inpaint": ("ddnm+warm", 8),
    "superres": ("ddnm", 4),
    "deblur": ("repaint", 4),
    "colorize": ("ddnm", 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--photo", default="coffee")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--start-sigma", type=float, default=START_SIGMA, help="of the warm start")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.device, args.tile_batch, args.fill = "cpu", 256, "biharmonic"  # what run_solver reads too
    args.tile = patch_size(json.loads((args.model / "config.json").read_text()))
    model = diffvision.load(args.model)
    x = prepare(held_out_photos(3)[args.photo], args.crop)
    panels = []
    for task, (op, _, _) in tasks(*x.shape[-2:]).items():
        y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
        est, *_ = run_solver(model, op, y, *SOLVER[task], args)
        shown = (y if y.shape == x.shape else op.pinv(y)).expand_as(x)  # a blur: y itself
        panels += [shown[0].clamp(-1, 1), est[0].clamp(-1, 1), x[0]]
        print(task, "done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    grid = make_grid(torch.stack(panels), nrow=3, pad=2)
    to_pil(grid, upscale=2).save(args.out / "restoration.png")
    print(args.out / "restoration.png")


if __name__ == "__main__":
    main()
