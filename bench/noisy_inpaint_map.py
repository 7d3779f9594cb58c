"""The hole's std map when inpainting from the biharmonic fill: with the fill's whole error?

Is the map calibrated when it adds the fill's whole error to the draws' spread, or only the
part a warm start keeps?

For each photo (the central --crop px of it; the training photos, or the held-out ones; --names
picks some) a hole hides pixels: by default a random mask hides --missing of them and y carries
noise --sigma (0-255 scale); with --hole strokes, --strokes random strokes --stroke-width px
wide (`stroke_mask`, seed 0), with --hole box a central square of side --crop / 4 (both
noise-free with --sigma 0). The solver (--solver) starts from the biharmonic fill at sigma 0.3
and draws K = --samples restorations: `repaint` with --resample passes (the restore command's
default for noisy holes) or `ddnm` (its default for noise-free ones). Their mean's error in
the hole is compared with three std maps:
- the draws' spread alone;
- the spread plus the fill's whole error estimated on y (`start_error_std(op, y)`, what
  `solve(..., start_std="estimate")` added before 2026-12-04);
- the spread plus the part of it a start at sigma 0.3 keeps (`start_error_std(op, y,
  kept=0.3)`, the error filtered by `kept_gain`: what it adds now).
Both sums are added in quadrature, as `solve` does.

References (`diffvision.metrics.uncertainty_calibration` with `stated=` the added std): a
calibrated K-sample spread gives RMS error / RMS std sqrt(1 + 1/K) and a Student-t's share
within 2 std; a stated Gaussian std 1 and 95.4%; a sum of the two lies between them.

Run: python bench/noisy_inpaint_map.py --model runs/photos/model --photos training --bf16
     -> bench/results/noisy_inpaint_map_training.{json,md}  (--photos held-out: ..._held-out)
     python bench/noisy_inpaint_map.py --hole strokes --sigma 0 --solver ddnm --crop 256 ...
     -> bench/results/inpaint_map_strokes_training.{json,md}  (inpaint_map_{hole}[_noisy]_...)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import diffvision
from diffvision.cli.common import fast_inference
from diffvision.metrics import uncertainty_calibration
from diffvision.restore import Inpaint, box_mask, random_mask, stroke_mask
from diffvision.restore.solvers import START_SIGMA
from diffvision.restore.starts import inpaint_start
from diffvision.restore.tiles import solve_tiled
from restoration import named_photos, patch_size
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
MAPS = ("spread only", "spread + whole fill error", "spread + kept fill error")


def crops(parser, which: str, size: int, names: str | None) -> dict[str, torch.Tensor]:
    """name -> 1 x 3 x size x size in [-1, 1], the central crop of each photo of the set
    (``names`` of it, comma-separated, where given) at least that big."""
    out = {}
    for name, image in named_photos(parser, which, names).items():
        h, w = image.shape[-2:]
        if min(h, w) >= size:
            r, c = (h - size) // 2, (w - size) // 2
            out[name] = image[None, :, r : r + size, c : c + size].double() / 127.5 - 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--photos", choices=("training", "held-out"), default="training")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--names", help="comma-separated photo names (default: all of the set)")
    parser.add_argument("--hole", choices=("random", "strokes", "box"), default="random")
    parser.add_argument("--missing", type=float, default=0.5, help="random: fraction hidden")
    parser.add_argument("--strokes", type=int, default=8, help="strokes: how many")
    parser.add_argument("--stroke-width", type=int, default=6, help="strokes: width (px)")
    parser.add_argument("--solver", choices=("repaint", "ddnm"), default="repaint")
    parser.add_argument("--sigma", type=float, default=10.0, help="noise, 0-255 scale")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--resample", type=int, default=2, help="repaint: passes")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, channels-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    tile = patch_size(json.loads((args.model / "config.json").read_text()))
    if args.bf16:  # what `restore --bf16` does on the CPU: channels-last, bf16 autocast
        fast_inference(model, torch.device("cpu"), bf16=True)
    photos = crops(parser, args.photos, args.crop, args.names)
    options = {"jump_n_sample": args.resample} if args.solver == "repaint" else {}
    k, rows = args.samples, []
    for name, x in photos.items():
        seed = torch.Generator().manual_seed(0)
        if args.hole == "random":
            mask = random_mask(args.crop, args.crop, args.missing, seed)
        elif args.hole == "box":
            side = args.crop // 4
            at = (args.crop - side) // 2
            mask = box_mask(args.crop, args.crop, (at, at, side, side))
        else:
            mask = stroke_mask(args.crop, args.crop, args.strokes, args.stroke_width, seed)
        op = Inpaint(mask, args.sigma / 127.5)
        y = op.measure(x, torch.Generator().manual_seed(0))
        t0 = time.time()
        fill, whole = inpaint_start(op, y, "biharmonic")
        kept = inpaint_start(op, y, "biharmonic", kept=START_SIGMA)[1]
        fill_s = time.time() - t0
        with torch.no_grad():
            out = solve_tiled(model, op, y.float(), tile=tile, overlap=tile // 4,
                              solver=args.solver, steps=args.steps, n_samples=k,
                              start=fill.float(), start_sigma=START_SIGMA,
                              generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
        mean, spread = out.mean.double(), out.std.double()
        hole = (op.mask == 0).expand_as(mean)
        row = {
            "photo": name,
            "psnr": float(10 * torch.log10(4 / (mean - x).square().mean())),
            "seconds": round(time.time() - t0, 1),
            "fill_seconds": round(fill_s, 1),
        }
        for label, extra in zip(MAPS, (None, whole, kept), strict=True):
            extra = torch.zeros_like(spread) if extra is None else extra.double().expand_as(mean)
            std = (spread.square() + extra.square()).sqrt()
            row[label] = uncertainty_calibration(mean[hole], std[hole], x[hole], k, extra[hole])
        rows.append(row)
        print(name, {m: round(_off(row[m]), 2) for m in MAPS}, flush=True)
    if args.hole == "random" and args.sigma:  # the first runs' name
        name = f"noisy_inpaint_map_{args.photos}"
    else:
        name = f"inpaint_map_{args.hole}{'_noisy' if args.sigma else ''}_{args.photos}"
    result = {
        **run_header("noisy_inpaint_map"),
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "rows": rows,
    }
    save_result(args.out, name, result, markdown(result))


def _off(c: dict) -> float:
    """RMS error / RMS std over its calibrated value: 1 calibrated, above 1 overconfident."""
    return c["rms_error_over_std"] / c["rms_error_over_std_calibrated"]


def markdown(r: dict) -> str:
    s, rows = r["settings"], r["rows"]
    hole, solver = s.get("hole", "random"), s.get("solver", "repaint")
    if hole == "random":
        title = f"{'Noisy r' if s['sigma'] else 'R'}andom-pixel inpainting"
        what = f"{s['missing']:.0%} of the pixels missing at random"
    elif hole == "box":
        title, what = "Box inpainting", f"a central box of side {s['crop'] // 4} px"
    else:
        title = "Stroke inpainting"
        what = f"{s['strokes']} random strokes {s['stroke_width']} px wide"
    how = f"--resample {s['resample']}, " if solver == "repaint" else ""
    lines = [
        f"# {title}: the hole's std map ({s['photos']} photos)",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}{', bf16 autocast' if s['bf16'] else ''}. Central {s['crop']} px crops; "
        f"{what}, noise {s['sigma']:g} (0-255); "
        f"`{solver}` from the biharmonic fill at sigma 0.3, {s['steps']} steps, "
        f"{how}mean of K = {s['samples']}. Cells: RMS error / RMS std "
        "over the hole, divided by its value for a calibrated map (1: calibrated; above 1 "
        "overconfident, below underconfident). A calibrated map's value is sqrt(1 + 1/K) for "
        "the spread alone, and between that and 1 where a stated error is added "
        "(`uncertainty_calibration(..., stated=...)`). Last rows: the median over the "
        "photos; the share of errors within 2 std, mean over the photos, with the calibrated "
        "share in brackets.",
        "",
        "| photo | PSNR | " + " | ".join(MAPS) + " |",
        "|---|---|" + "---|" * len(MAPS),
    ]
    for row in rows:
        cells = [f"{_off(row[m]):.2f}" for m in MAPS]
        lines.append(f"| {row['photo']} | {row['psnr']:.2f} | " + " | ".join(cells) + " |")
    medians = [statistics.median(_off(row[m]) for row in rows) for m in MAPS]
    psnr = statistics.mean(row["psnr"] for row in rows)
    lines.append(
        f"| **median** | {psnr:.2f} (mean) | " + " | ".join(f"**{v:.2f}**" for v in medians) + " |"
    )
    within = [
        f"{np.mean([row[m]['within_2std'] for row in rows]):.1%} "
        f"({np.mean([row[m]['within_2std_calibrated'] for row in rows]):.1%})"
        for m in MAPS
    ]
    lines.append("| within 2 std | | " + " | ".join(within) + " |")
    seconds = statistics.mean(row["seconds"] for row in rows)
    lines += ["", f"Seconds per photo (fills and solver): {seconds:.0f} on average.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
