"""A picture of restoration results: one held-out photo crop, each task with one solver.

Rows: denoise (sigma 25, mmse), box inpainting (dps), 4x super-resolution (dps), deblur (dps),
colorize (ddnm). Columns: measurement (brought to full size by the pseudo-inverse) | result |
ground truth. Same settings as bench/restoration.py.

Run: python bench/restoration_figure.py --model runs/photos/model -> bench/results/restoration.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.io.images import make_grid, to_pil
from diffvision.restore.tiles import solve_tiled
from restoration import tasks

SOLVER = {
    "denoise": "mmse",
    "inpaint": "dps",
    "superres": "dps",
    "deblur": "dps",
    "colorize": "ddnm",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--photo", default="coffee")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    model = diffvision.load(args.model)
    x = held_out_photos(3)[args.photo].float()[None] / 127.5 - 1
    h, w = x.shape[-2:]
    c = args.crop
    x = x[..., (h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    panels = []
    for task, (op, _, _) in tasks(c, c).items():
        y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
        with torch.no_grad():
            est = solve_tiled(
                model,
                op,
                y,
                tile=32,
                overlap=8,
                solver=SOLVER[task],
                steps=args.steps,
                generator=torch.Generator().manual_seed(1),
            )
        shown = op.pinv(y).expand_as(x)
        panels += [shown[0].clamp(-1, 1), est[0].clamp(-1, 1), x[0]]
        print(task, "done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    grid = make_grid(torch.stack(panels), nrow=3, pad=2)
    to_pil(grid, upscale=2).save(args.out / "restoration.png")
    print(args.out / "restoration.png")


if __name__ == "__main__":
    main()
