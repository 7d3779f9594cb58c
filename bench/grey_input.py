"""A grey noisy photo restored by an RGB model (`restore denoise` of a grey file with the
README's photos model): its grey, noise and all, fills the three channels, so the noise is one
noise, not three independent ones. PSNR of `mmse` on the luma of the held-out photos (whole,
noise of std sigma, clipped and rounded to 8 bits) with the model's noise level taken as
sigma (as before 2026-12-07) and as sqrt(3) sigma (what the command now takes, see
`GREY_NOISE` in `diffvision/cli/restore.py`); the result's channel mean against the clean luma.
Then the same for the other noisy measurements, where the reasoning is the same (each operator
acts on every channel alike, so y's colour part is noise-free and its channel mean carries the
grey's noise): 4x bicubic super-resolution and deblurring of a 2 px Gaussian blur (the
command's `gauss:2`), noise of std 10, with the command's default solver (`repaint`, 50 steps,
one pass), on the centre 128 x 128 px of each luma.

Run: python bench/grey_input.py --model runs/photos/model -> bench/results/grey_input.{json,md}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.metrics import psnr
from diffvision.restore import Deblur, Denoise, SuperResolution, gaussian_kernel
from diffvision.restore.tiles import solve_tiled
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
SIGMAS = (10, 25, 50)
SCALES = {"s = sigma": 1.0, "s = sqrt(3) sigma": math.sqrt(3)}
#: The other noisy measurements: name -> operator at noise level s (model units).
TASKS = {
    "superres 4x": lambda s: SuperResolution(4, "bicubic", s),
    "deblur gauss:2": lambda s: Deblur(gaussian_kernel(13, 2.0), s),
}
TASK_SIGMA, CROP, STEPS = 10, 128, 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    rows = []
    for name, photo in held_out_photos(1).items():
        clean = photo[None].double()
        x = (clean / 127.5 - 1).float()
        for sigma in SIGMAS:
            gen = torch.Generator().manual_seed(sigma)
            noisy = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
            y = (noisy.clamp(0, 255).round() / 127.5 - 1).float().expand(1, 3, -1, -1)
            row = {"photo": name, "sigma": sigma, "noisy": float(psnr(y[:, :1], x))}
            with torch.no_grad():
                for label, scale in SCALES.items():
                    op = Denoise(scale * sigma / 127.5)
                    est = solve_tiled(model, op, y, tile=32, overlap=8, solver="mmse")
                    row[label] = float(psnr(est.mean(1, keepdim=True).clamp(-1, 1), x))
            rows.append(row)
            print(row, flush=True)
    tasks = []
    for name, photo in held_out_photos(1).items():
        h, w = photo.shape[-2:]
        top, left = (h - CROP) // 2, (w - CROP) // 2
        x = (photo[None, :, top : top + CROP, left : left + CROP].double() / 127.5 - 1).float()
        for task, make in TASKS.items():
            gen = torch.Generator().manual_seed(TASK_SIGMA)
            measured = (make(0.0).forward(x.double()) + 1) * 127.5
            noise = TASK_SIGMA * torch.randn(measured.shape, generator=gen, dtype=torch.float64)
            y = (measured + noise).clamp(0, 255).round() / 127.5 - 1
            y = y.float().expand(1, 3, -1, -1)
            row = {"photo": name, "task": task, "sigma": TASK_SIGMA}
            with torch.no_grad():
                for label, scale in SCALES.items():
                    op = make(scale * TASK_SIGMA / 127.5)
                    draws = torch.Generator().manual_seed(0)  # the same for both levels
                    est = solve_tiled(model, op, y, tile=32, overlap=8, solver="repaint",
                                      steps=STEPS, generator=draws, jump_n_sample=1)  # fmt: skip
                    row[label] = float(psnr(est.mean(1, keepdim=True).clamp(-1, 1), x))
            tasks.append(row)
            print(row, flush=True)
    result = {**run_header("grey_input"), "model": str(args.model), "rows": rows, "tasks": tasks}
    save_result(args.out, "grey_input", result, markdown(result))


def markdown(result: dict) -> str:
    lines = [
        "# A grey noisy photo restored by an RGB model (`mmse`)",
        "",
        f"`{result['command']}`, {result['date']}, {machine_words(result)}, model "
        f"`{result['model']}`. The luma of each held-out photo, whole, with noise of std sigma "
        "(0-255), clipped and rounded, in all three channels; PSNR (dB) of the result's channel "
        "mean against the clean luma, with the model's noise level s taken as sigma or as "
        "sqrt(3) sigma.",
        "",
        "| photo | sigma | noisy | " + " | ".join(SCALES) + " |",
        "|---|---|---|" + "---|" * len(SCALES),
    ]
    for row in result["rows"]:
        cells = [f"{row[label]:.2f}" for label in SCALES]
        lines.append(f"| {row['photo']} | {row['sigma']} | {row['noisy']:.2f} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += [
        "",
        f"The other noisy measurements, noise of std {TASK_SIGMA} (0-255) in all three "
        f"channels, on the centre {CROP} x {CROP} px of each luma; `repaint`, {STEPS} steps, one "
        "pass (the command's default for them); PSNR (dB) of the result's channel mean.",
        "",
        "| photo | task | " + " | ".join(SCALES) + " |",
        "|---|---|" + "---|" * len(SCALES),
    ]
    for row in result["tasks"]:
        cells = [f"{row[label]:.2f}" for label in SCALES]
        lines.append(f"| {row['photo']} | {row['task']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
