"""How well the recorrupted replay calibrates a denoising std map, by its split of the noise.

For each photo, y is the photo plus Gaussian noise of --sigma (0-255 scale); the `posterior`
solver of `bench/restoration.py` draws K samples (tiled). Their std map is compared with the
true error of their mean as drawn, and scaled by the factor that
`diffvision.restore.replay.replay_factor` finds for each `a` of --recorrupt: the solver run again
on y + a z (noise sqrt(1 + a^2) times y's) against y - z / a as the truth, whose noise is
independent of what the solver sees and is taken off (`replay_problem`; Pang et al. 2021). A
calibrated K-sample posterior gives RMS error / RMS std sqrt(1 + 1/K) and a Student-t's share
of errors within 2 std (`diffvision.metrics.uncertainty_calibration`).

--set training: the first --photos training photos of `photos` (the prior has seen them), to
choose the library's RECORRUPT: the `a` whose scaled maps lie closest to calibrated, by the mean
over the photos of |log(RMS ratio / calibrated ratio)| (off in either direction, or noisy, both
count). --set held-out: the four held-out photos, to check the choice once.

Run: python bench/replay_denoise.py --model runs/photos/model --bf16 --set training --crop 256
     -> bench/results/replay_denoise_training.{json,md}
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from diffvision.metrics import psnr, uncertainty_calibration
from diffvision.restore import Denoise
from diffvision.restore.replay import RECORRUPT, replay_factor
from restoration import RESULTS, photo_set, prepare, solver_run, solver_setup
from run_header import machine_words, run_header, save_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--set", choices=("training", "held-out"), default="training")
    parser.add_argument("--photos", type=int, default=8, help="training photos: the first N")
    parser.add_argument("--crop", type=int, default=0, help="central crop (pixels, 0: whole)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise, 0-255 scale")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--recorrupt", default="0.5,1,2", help="the replays' a")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, channels-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model, run_args = solver_setup(args.model, args.steps, args.bf16)
    k, rows = args.samples, []
    splits = [float(a) for a in args.recorrupt.split(",")]
    for name, image in photo_set(args.set, args.photos).items():
        x = prepare(image, args.crop)
        op = Denoise(args.sigma / 127.5)
        y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
        run = solver_run(model, op, y, "posterior", k, run_args)
        t0 = time.time()
        out = run(op, y)
        row = {
            "photo": name,
            "size": list(x.shape[-2:]),
            "seconds": round(time.time() - t0, 1),
            "psnr_mean": float(psnr(out.mean.clamp(-1, 1), x).mean()),
            "drawn": uncertainty_calibration(out.mean, out.std, x, k),
            "replays": [],
        }
        for a in splits:
            t0 = time.time()
            gen = torch.Generator().manual_seed(run_args.seed + 1)
            factor = float(replay_factor(op, y, run, k, gen, recorrupt=a)[0])
            row["replays"].append(
                {
                    "recorrupt": a,
                    "factor": factor,
                    "seconds": round(time.time() - t0, 1),
                    "scaled": scaled(out, x, k, factor),
                }
            )
        rows.append(row)
        print(name, row["drawn"], [(r["recorrupt"], r["factor"]) for r in row["replays"]])
    result = {
        **run_header("replay_denoise"),
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "library_recorrupt": RECORRUPT,  # the library's default when this ran
        "rows": rows,
        "closest": closest(rows),
    }
    save_result(args.out, f"replay_denoise_{args.set}", result, markdown(result))


def scaled(out, x, k: int, factor: float) -> dict | None:
    """The calibration of the std map times ``factor``; None for a factor of 0 (the replay's
    error lost in its truth's noise: a map of zeros)."""
    return uncertainty_calibration(out.mean, out.std * factor, x, k) if factor > 0 else None


def _off(u: dict | None) -> float:
    """|log(RMS error / RMS std over its calibrated value)|: 0 when calibrated; infinite for a
    map of zeros."""
    if u is None:
        return math.inf
    return abs(math.log(u["rms_error_over_std"] / u["rms_error_over_std_calibrated"]))


def closest(rows: list[dict]) -> float:
    """The recorruption whose scaled maps are closest to calibrated: the least mean of
    :func:`_off` over the photos."""
    splits = [r["recorrupt"] for r in rows[0]["replays"]]
    off = [np.mean([_off(row["replays"][i]["scaled"]) for row in rows]) for i in range(len(splits))]
    return splits[int(np.argmin(off))]


def markdown(r: dict) -> str:
    s, rows = r["settings"], r["rows"]
    first = rows[0]["drawn"]
    photos = [row["photo"] for row in rows]
    where = "training photos (seen by the prior)" if s["set"] == "training" else "held-out photos"
    crop = f"central {s['crop']} px crops" if s["crop"] else "whole"
    lines = [
        "# Denoising std maps recalibrated by the recorrupted replay",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}{', bf16 autocast' if s['bf16'] else ''}. {len(rows)} {where}, {crop}; "
        f"noise {s['sigma']:g} on the 0-255 scale; the posterior solver, mean of K = "
        f"{s['samples']} draws, {s['steps']} steps (mean PSNR of the mean: "
        f"{np.mean([row['psnr_mean'] for row in rows]):.2f} dB). Cells: RMS error / RMS std of "
        f"the std map (calibrated: {first['rms_error_over_std_calibrated']:.2f}); then their "
        "mean of |log(ratio / calibrated)| (0: calibrated on every photo), the share of errors "
        f"within 2 std (calibrated: {first['within_2std_calibrated']:.1%}), and the replay's "
        "factor and seconds, means over the photos. a: y + a z denoised against y - z / a "
        "(`replay_problem`); the library's RECORRUPT is "
        f"{r.get('library_recorrupt', RECORRUPT):g}.",
        "",
        f"| std map | {' | '.join(photos)} | mean abs log off | within 2 std | factor | replay s |",
        "|---|" + "---|" * (len(photos) + 4),
        _line("as drawn", [row["drawn"] for row in rows], None, None),
    ]
    for i, replay in enumerate(rows[0]["replays"]):
        reps = [row["replays"][i] for row in rows]
        factor = np.mean([rep["factor"] for rep in reps])
        seconds = np.mean([rep["seconds"] for rep in reps])
        label = f"scaled by replay, a = {replay['recorrupt']:g}"
        lines.append(_line(label, [rep["scaled"] for rep in reps], factor, seconds))
    lines += ["", f"Closest to calibrated: a = {r['closest']:g}."]
    return "\n".join(lines) + "\n"


def _line(label, stats, factor, seconds) -> str:
    ratios = ["zero map" if u is None else f"{u['rms_error_over_std']:.2f}" for u in stats]
    off = np.mean([_off(u) for u in stats])
    within = np.mean([0.0 if u is None else u["within_2std"] for u in stats])
    tail = "- | -" if factor is None else f"{factor:.2f} | {seconds:.1f}"
    return f"| {label} | {' | '.join(ratios)} | {off:.3f} | {within:.1%} | {tail} |"


if __name__ == "__main__":
    main()
