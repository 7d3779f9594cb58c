"""Is `start_error_std` an error bar for the inpainting fill? Its std against the fill's true
errors on the held-out photos, for several masks, and what it costs.

For each held-out photo (whole, as in `bench/restoration.py`) and mask: the biharmonic fill of
`diffvision.restore.starts.classical_start`, the std `start_error_std` estimates for it from the
observed pixels alone, and `uncertainty_calibration(fill, std, x, None)` over the hole (a
Gaussian error of the stated std would put 95.4% within 2 std, RMS error / RMS std 1). No model
is needed: this checks the estimate itself; `bench/restoration.py` checks it beside the draws
of a warm-started solver.

Run: python bench/start_error.py -> bench/results/start_error.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from diffvision.data import held_out_photos
from diffvision.metrics import uncertainty_calibration
from diffvision.restore import Inpaint, random_mask, stroke_mask
from diffvision.restore.starts import classical_start, start_error_std
from restoration import RESULTS, prepare, tasks
from run_header import run_header, save_result


def masks(h: int, w: int) -> dict[str, torch.Tensor]:
    """The masks tried (1 observed, 0 hole), the random ones drawn with seed 0."""
    box = {f"box, side {s or 'min(H, W) / 4'}": tasks(h, w, s)["inpaint"][0].mask for s in
           (0, 32, 64)}  # fmt: skip
    draw = torch.Generator().manual_seed
    return box | {
        "random, 50% missing": random_mask(h, w, 0.5, draw(0)),
        "random, 90% missing": random_mask(h, w, 0.9, draw(0)),
        "4 strokes, 3 px": stroke_mask(h, w, generator=draw(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for name, image in held_out_photos(3).items():
        x = prepare(image, 0)
        for kind, mask in masks(*x.shape[-2:]).items():
            op = Inpaint(mask)
            y = op.forward(x)
            t0 = time.perf_counter()
            std = start_error_std(op, y, "biharmonic")  # the fill these results were made with
            seconds = time.perf_counter() - t0
            c = uncertainty_calibration(
                classical_start(op, y, "biharmonic"), std.expand_as(x), x, None
            )
            rows.append({"photo": name, "mask": kind, "seconds": seconds, **c})
            print(name, kind, f"{c['rms_error_over_std']:.2f} {seconds:.1f} s", flush=True)
    result = {**run_header("start_error"), "rows": rows}
    save_result(args.out, "start_error", result, markdown(result))


def markdown(r: dict) -> str:
    photos = list(dict.fromkeys(row["photo"] for row in r["rows"]))
    lines = [
        "# The inpainting fill's estimated error against its true error",
        "",
        f"`{r['command']}` on {r['machine']}, torch {r['torch']}, {r['threads']} threads, "
        f"{r['date']}. Held-out photos whole; biharmonic fill; `start_error_std` (up to 8 "
        "copies of the hole, 3 for random pixels, errors pooled by distance to the nearest "
        "observed pixel). Per photo: RMS error / RMS std over the hole (1 for a calibrated map; "
        "above 1 overconfident) and, for all photos, errors within 2 std (95.4% calibrated) "
        "and seconds per photo (2-core CPU: the extra fills).",
        "",
        "| mask | " + " | ".join(photos) + " | errors within 2 std | seconds |",
        "|---|" + "---|" * (len(photos) + 2),
    ]
    for kind in dict.fromkeys(row["mask"] for row in r["rows"]):
        mine = [row for row in r["rows"] if row["mask"] == kind]
        ratios = " | ".join(f"{row['rms_error_over_std']:.2f}" for row in mine)
        within = statistics.mean(row["within_2std"] for row in mine)
        seconds = ", ".join(f"{row['seconds']:.1f}" for row in mine)
        lines.append(f"| {kind} | {ratios} | {within:.1%} | {seconds} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
