"""A grey noisy photo restored by an RGB model (`restore denoise` of a grey file with the
README's photos model): its grey, noise and all, fills the three channels, so the noise is one
noise, not three independent ones. PSNR of `mmse` on the luma of the held-out photos (whole,
noise of std sigma, clipped and rounded to 8 bits) with the model's noise level taken as
sigma (as before 2026-12-07) and as sqrt(3) sigma (what the command now takes, see
`GREY_NOISE` in `diffvision/cli/restore.py`); the result's channel mean against the clean luma.

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
from diffvision.restore import Denoise
from diffvision.restore.tiles import solve_tiled
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
SIGMAS = (10, 25, 50)
SCALES = {"s = sigma": 1.0, "s = sqrt(3) sigma": math.sqrt(3)}


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
    result = {**run_header("grey_input"), "model": str(args.model), "rows": rows}
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
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
