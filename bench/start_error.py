"""Is `start_error_std` an error bar for the inpainting fill? Its std against the fill's true
errors on the held-out photos, for several masks, and what it costs.

For each held-out photo (whole, as in `bench/restoration.py`) and mask: the biharmonic fill of
`diffvision.restore.starts.classical_start`, the std `start_error_std` estimates for it from the
observed pixels alone, and `uncertainty_calibration(fill, std, x, None)` over the hole (a
Gaussian error of the stated std would put 95.4% within 2 std, RMS error / RMS std 1). No model
is needed: this checks the estimate itself; `bench/restoration.py` checks it beside the draws
of a warm-started solver.

`--set training`: the 19 training photos instead, with the four box holes of
`bench/fill_blend.py` (side min(H, W) / 4 or / 8, centred or moved), to tell a bias of the
estimate (which a constant factor, chosen here, would mend) from its spread from photo to
photo (which no factor mends).

Run: python bench/start_error.py [--set training]
-> bench/results/start_error{,_training}.{json,md}
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from diffvision.data import held_out_photos
from diffvision.data.photos import training_photos
from diffvision.metrics import uncertainty_calibration
from diffvision.restore import Inpaint, random_mask, stroke_mask
from diffvision.restore.starts import classical_start, start_error_std
from fill_blend import holes
from restoration import RESULTS, prepare, tasks
from run_header import machine_words, run_header, save_result


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


def training_masks(h: int, w: int) -> dict[str, torch.Tensor]:
    """The box holes of `bench/fill_blend.py` as masks (1 observed, 0 hole)."""
    return {f"box, {name}": torch.from_numpy(~hole).float() for name, hole in holes(h, w).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=("held-out", "training"), default="held-out")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    training = args.set == "training"
    photos = (
        {n: torch.from_numpy(p).permute(2, 0, 1) for n, p in training_photos().items()}
        if training
        else held_out_photos(3)
    )
    rows = []
    for name, image in photos.items():
        x = prepare(image, 0)
        for kind, mask in (training_masks if training else masks)(*x.shape[-2:]).items():
            op = Inpaint(mask)
            y = op.forward(x)
            t0 = time.perf_counter()
            std = start_error_std(op, y, "biharmonic")  # the fill these results were made with
            seconds = time.perf_counter() - t0
            fill, hole = classical_start(op, y, "biharmonic"), mask == 0
            c = uncertainty_calibration(fill, std.expand_as(x), x, None)
            mse = float((fill - x)[..., hole].double().square().mean())
            ms = float(std[..., hole].double().square().mean())
            rows.append({"photo": name, "mask": kind, "seconds": seconds, **c, "mse": mse,
                         "mean_square_std": ms})  # fmt: skip
            print(name, kind, f"{c['rms_error_over_std']:.2f} {seconds:.1f} s", flush=True)
    result = {**run_header("start_error"), "set": args.set, "rows": rows}
    stem = "start_error_training" if training else "start_error"
    save_result(args.out, stem, result, (training_markdown if training else markdown)(result))


def training_markdown(r: dict) -> str:
    """Per hole geometry, over the photos: the spread of RMS error / RMS std (its geometric
    mean with the standard error of the mean log, median, range), the ratio pooled over the
    photos (sqrt of summed mean squared errors over summed mean squared stds: what one factor
    would have to mend) and the share of errors within 2 std."""
    lines = [
        "# The inpainting fill's estimated error against its true error, training photos",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}. {len({row['photo'] for row in r['rows']})} training photos of `photos` "
        "(never the held-out ones), whole; biharmonic fill; `start_error_std` as in "
        "start_error.md. Per hole: RMS error / RMS std over the hole (1 calibrated, above 1 "
        "overconfident); over the photos: its geometric mean (x/÷ the SE of the mean log), "
        "median and range; pooled: sqrt(sum of the holes' mean squared errors / sum of their "
        "mean squared stds); errors within 2 std (95.4% for a calibrated Gaussian).",
        "",
        "| hole | geometric mean | median | range | pooled | errors within 2 std |",
        "|---|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(row["mask"] for row in r["rows"]):
        mine = [row for row in r["rows"] if row["mask"] == kind]
        ratios = [row["rms_error_over_std"] for row in mine]
        logs = np.log(ratios)
        se = logs.std(ddof=1) / math.sqrt(len(logs))
        pooled = math.sqrt(sum(row["mse"] for row in mine) / sum(row["mean_square_std"]
                                                                 for row in mine))  # fmt: skip
        within = statistics.mean(row["within_2std"] for row in mine)
        lines.append(
            f"| {kind} | {math.exp(logs.mean()):.2f} (x/÷ {math.exp(se):.2f}) | "
            f"{statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} | "
            f"{pooled:.2f} | {within:.1%} |"
        )
    return "\n".join(lines) + "\n"


def markdown(r: dict) -> str:
    photos = list(dict.fromkeys(row["photo"] for row in r["rows"]))
    lines = [
        "# The inpainting fill's estimated error against its true error",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
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
