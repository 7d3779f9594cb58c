"""How strongly the blended inpainting fill shrinks its weights towards the fills' mean, asked of
the training photos only: the study that fixed `diffvision.restore.starts.BLEND_SHRINK`.

For every photo of the `photos` training set (RGB, whole) and four square holes (side
min(H, W) / 4 or / 8; at the centre, or moved one side down and one side left), the biharmonic,
Navier-Stokes and Telea fills are made once for the hole and once for each copy of it
(`held_out_fills`); the blend's weights (`blend_weights`) are then fitted for each --shrink and
scored in the real hole. Reported: the PSNR gain in the hole over the biharmonic fill (the best
classical fill on the held-out photos), averaged over the photos, on how many it is positive, and
the worst photo; the single fills and their plain mean (shrink -> infinity) for reference.

Run: python bench/fill_blend.py  ->  bench/results/fill_blend.{json,md}  (about 5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from diffvision.data.photos import training_photos
from diffvision.restore.starts import BLENDED, blend_weights, fill_hole, held_out_fills
from run_header import run_header, save_result

RESULTS = Path(__file__).parent / "results"
METHODS = BLENDED


def holes(h: int, w: int):
    """name -> H x W bool hole, for the four geometries."""
    out = {}
    for div in (4, 8):
        b = min(h, w) // div
        for where, (dr, dc) in (("centre", (0, 0)), ("moved", (b, -b))):
            hole = np.zeros((h, w), bool)
            r0, c0 = (h - b) // 2 + dr, (w - b) // 2 + dc
            hole[r0 : r0 + b, c0 : c0 + b] = True
            out[f"side min(H, W) / {div}, {where}"] = hole
    return out


def gain_db(estimate: np.ndarray, reference: np.ndarray, truth: np.ndarray) -> float:
    """PSNR gain of ``estimate`` over ``reference`` (same pixels): 10 log10 of the MSE ratio."""
    return float(
        10 * np.log10(((reference - truth) ** 2).mean() / ((estimate - truth) ** 2).mean())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shrink", default="0.1,0.3,1,3", help="comma-separated strengths")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    shrinks = [float(s) for s in args.shrink.split(",")]
    t0 = time.time()
    rows = []
    for name, picture in training_photos().items():
        image = np.moveaxis(picture.astype(np.float64) / 127.5 - 1, -1, 0)  # C x H x W, [-1, 1]
        for geometry, hole in holes(*image.shape[1:]).items():
            truth = image[:, hole]
            fills = np.stack([fill_hole(image, hole, m) for m in METHODS], -1)[:, hole]
            candidates, target, _ = held_out_fills(image, hole, METHODS)
            gains = {
                m: gain_db(fills[..., j], fills[..., 0], truth) for j, m in enumerate(METHODS) if j
            }
            gains["mean"] = gain_db(fills.mean(-1), fills[..., 0], truth)
            for s in shrinks:
                blend = fills @ blend_weights(candidates, target, s)
                gains[f"blend {s:g}"] = gain_db(blend, fills[..., 0], truth)
            rows.append({"photo": name, "geometry": geometry, "gain_db": gains})
            print(name, geometry, " ".join(f"{k} {v:+.2f}" for k, v in gains.items()), flush=True)
    result = {**run_header("fill_blend"), "seconds": round(time.time() - t0, 1), "rows": rows}
    save_result(args.out, "fill_blend", result, markdown(result))


def markdown(result: dict) -> str:
    rows = result["rows"]
    geometries = list(dict.fromkeys(r["geometry"] for r in rows))
    methods = list(rows[0]["gain_db"])
    lines = [
        "# The blended inpainting fill on the training photos",
        "",
        f"`{result['command']}` on {result['machine']}, {result['date']}; "
        f"{result['seconds']} s. {len({r['photo'] for r in rows})} training photos of `photos` "
        "(never the held-out ones), whole, RGB. Each cell: the PSNR gain in the hole over the "
        "biharmonic fill, mean over the photos (dB), then on how many photos it is positive and "
        "the worst photo's gain. `blend S`: the weights of `blend_weights` with shrink S; `mean`: "
        "the fills' plain mean (shrink -> infinity).",
        "",
        "| fill | " + " | ".join(geometries) + " |",
        "|---|" + "---|" * len(geometries),
    ]
    for m in methods:
        cells = []
        for g in geometries:
            v = np.array([r["gain_db"][m] for r in rows if r["geometry"] == g])
            cells.append(f"{v.mean():+.2f} ({(v > 0).sum()}/{len(v)}, worst {v.min():+.2f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
