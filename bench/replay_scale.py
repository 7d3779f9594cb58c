"""How well replaying a solver one measurement down calibrates its std map, on the held-out
photos, and how the deblurring replay depends on its pooling scale (--set training: on the
prior's training photos instead, to choose a scale on before it is checked on the held-out ones).

For each photo (whole) and task, the solver of `bench/restoration.py` draws K samples (4x
super-resolution: ddnm; deblurring, --kernel, by default a 2 px Gaussian blur, with noise 2:
repaint). Their std map is compared with the true error of their mean as drawn, and scaled by
the factor that `diffvision.restore.replay.replay_factor` finds: for super-resolution with y as
the truth; for deblurring with y average-pooled by each of --scales as the truth, plain or, with
an "s" after the scale, with the blur left in it undone (`replay_truth`; its default, marked:
pooled by ceil(2 x the kernel's spread), 4 for the 2 px blur, and sharpened, since 2026-12-04;
plain before). A calibrated K-sample posterior gives RMS error / RMS std sqrt(1 + 1/K) and a
Student-t's share of errors within 2 std (`diffvision.metrics.uncertainty_calibration`).

Run: python bench/replay_scale.py --model runs/photos/model --bf16
     -> bench/results/replay_scale.{json,md}
     python bench/replay_scale.py --model runs/photos/model --bf16 --set training --tasks deblur \
         --photos rocket,sklearn-china,stereo_motorcycle,grace_hopper --scales 4s,6s,8s
     -> bench/results/replay_scale_training.{json,md}
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from diffvision.cli.restore import _kernel as blur_kernel
from diffvision.metrics import uncertainty_calibration
from diffvision.restore import Deblur
from diffvision.restore.replay import deblur_pooling, replay_factor
from restoration import RESULTS, named_photos, prepare, solver_run, solver_setup, tasks
from run_header import machine_words, run_header, save_result

#: task -> solver spec of bench/restoration.py: the restore command's defaults for them.
SOLVERS = {"superres": "ddnm", "deblur": "repaint"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument(
        "--set",
        choices=("held-out", "training"),
        default="held-out",
        help="the photos: the held-out ones, or the prior's training photos (to tune on)",
    )
    parser.add_argument("--photos", default="", help="comma-separated names from --set (all)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--scales",
        default="1,2,4,4s,8,8s",
        help="deblurring replays' pooling; with s (e.g. 4s) the blur left in pooled y undone",
    )
    parser.add_argument("--tasks", default="superres,deblur", help="of superres, deblur")
    parser.add_argument(
        "--kernel", default="gauss:2", help="deblurring's blur, as `restore --kernel` takes it"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, channels-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model, run_args = solver_setup(args.model, args.steps, args.bf16)
    photos = named_photos(parser, args.set, args.photos)
    k, rows = args.samples, []
    for name, image in photos.items():
        x = prepare(image, 0)
        for task, how in SOLVERS.items():
            if task not in args.tasks.split(","):
                continue
            op = tasks(*x.shape[-2:])[task][0]
            if isinstance(op, Deblur):
                op = Deblur(blur_kernel(args.kernel), sigma=op.sigma)
            y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
            run = solver_run(model, op, y, how, k, run_args)
            t0 = time.time()
            out = run(op, y)
            row = {
                "photo": name,
                "task": task,
                "seconds": round(time.time() - t0, 1),
                "drawn": uncertainty_calibration(out.mean, out.std, x, k),
                "replays": [],
            }
            scales = args.scales.split(",") if isinstance(op, Deblur) else [None]
            for spec in scales:
                scale = None if spec is None else int(spec.rstrip("s"))
                sharpen = spec is not None and spec.endswith("s")
                t0 = time.time()
                gen = torch.Generator().manual_seed(run_args.seed + 1)
                factor = float(replay_factor(op, y, run, k, gen, scale, sharpen)[0])
                row["replays"].append(
                    {
                        "scale": scale,
                        "sharpen": sharpen,
                        "factor": factor,
                        "seconds": round(time.time() - t0, 1),
                        "scaled": uncertainty_calibration(out.mean, out.std * factor, x, k),
                    }
                )
            rows.append(row)
            print(name, task, row["drawn"], [(r["scale"], r["factor"]) for r in row["replays"]])
    result = {
        **run_header("replay_scale"),
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "rows": rows,
    }
    name = "replay_scale" + ("_training" if args.set == "training" else "")
    save_result(args.out, name, result, markdown(result))


def markdown(r: dict) -> str:
    s, rows = r["settings"], r["rows"]
    k = s["samples"]
    photos = list(dict.fromkeys(row["photo"] for row in rows))
    first = rows[0]["drawn"]
    training = s.get("set") == "training"  # older results: held-out, with no "set"
    where = "Training photos (seen by the prior)" if training else "Held-out photos"
    lines = [
        "# Std maps recalibrated by replay",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}{', bf16 autocast' if s['bf16'] else ''}. {where} whole; deblurring "
        f"kernel {s.get('kernel', 'gauss:2')}, noise 2 on the 0-255 scale; mean of "
        f"K = {k} draws, {s['steps']} steps. Cells: RMS error / RMS std of the std map "
        f"(calibrated: {first['rms_error_over_std_calibrated']:.2f}); last columns: the share "
        f"of errors within 2 std (calibrated: {first['within_2std_calibrated']:.1%}) and the "
        "replay's factor and seconds, means over the photos. (default): the library's "
        "default now; the sharpened replay became it on 2026-12-04, after its first run here "
        "(its filter's floor chosen before, on the training photos: replay_truth.md).",
        "",
        f"| task | std map | {' | '.join(photos)} | mean | within 2 std | factor | replay s |",
        "|---|---|" + "---|" * (len(photos) + 4),
    ]
    for task in dict.fromkeys(row["task"] for row in rows):
        group = [row for row in rows if row["task"] == task]
        drawn = [row["drawn"] for row in group]
        lines.append(_line(task, "as drawn", drawn, None, None))
        for i, replay in enumerate(group[0]["replays"]):
            label = (
                "scaled by replay on y"
                if replay["scale"] is None
                else (
                    f"scaled by replay on y pooled by {replay['scale']}"
                    + (", its blur undone" if replay.get("sharpen") else "")
                    + (" (default)" if _is_default(replay, s.get("kernel", "gauss:2")) else "")
                )
            )
            reps = [row["replays"][i] for row in group]
            factor = np.mean([rep["factor"] for rep in reps])
            seconds = np.mean([rep["seconds"] for rep in reps])
            lines.append(_line(task, label, [rep["scaled"] for rep in reps], factor, seconds))
    return "\n".join(lines) + "\n"


def _is_default(replay: dict, kernel: str) -> bool:
    """Whether a deblurring replay is the library's default now: pooled by `deblur_pooling`,
    sharpened (results from before 2026-12-04 stored the plain one as their default)."""
    return replay["scale"] == deblur_pooling(blur_kernel(kernel)) and replay.get("sharpen", False)


def _line(task, label, stats, factor, seconds) -> str:
    ratios = [f"{u['rms_error_over_std']:.2f}" for u in stats]
    mean_ratio = np.mean([u["rms_error_over_std"] for u in stats])
    within = np.mean([u["within_2std"] for u in stats])
    tail = "- | -" if factor is None else f"{factor:.2f} | {seconds:.1f}"
    return f"| {task} | {label} | {' | '.join(ratios)} | {mean_ratio:.2f} | {within:.1%} | {tail} |"


if __name__ == "__main__":
    main()
