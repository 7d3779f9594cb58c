"""The std map of a grey noisy photo restored by an RGB model (`restore denoise --samples K` of a
grey file with the README's photos model): written per channel, recalibrated by a replay that
compared each channel with the truth's (as the command did until 5cf73f8), or written as the
channels' mean, recalibrated by a replay of channel means (`replay_factor(..., grey=True)`,
what the command now does). The same draws serve both: `posterior`, K = 4, at the command's
noise level sqrt(3) sigma per channel (`GREY_NOISE`), on each held-out photo's luma (whole, or
a centre crop) with noise of std sigma (0-255), clipped and rounded, in all three channels.

Run: python bench/grey_map.py --model runs/photos/model --bf16
     -> bench/results/grey_map.{json,md}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import diffvision
from diffvision.cli.common import fast_inference
from diffvision.data import held_out_photos
from diffvision.metrics import psnr, uncertainty_calibration
from diffvision.restore import Denoise
from diffvision.restore.replay import replay_factor
from diffvision.restore.tiles import solve_tiled
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
WAYS = {"per channel": False, "channel mean": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--crop", type=int, default=0, help="side of a centre crop (px; 0: whole)")
    parser.add_argument("--sigmas", type=int, nargs="+", default=[25], help="0-255 scale")
    parser.add_argument("--samples", type=int, default=4, help="K, draws per image")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, channels-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    if args.bf16:  # as `restore --bf16` runs it on the CPU
        fast_inference(model, torch.device("cpu"), bf16=True)
    k, rows = args.samples, []
    for name, photo in held_out_photos(1).items():
        h, w = photo.shape[-2:]
        ch, cw = (args.crop, args.crop) if args.crop else (h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        clean = photo[None, :, top : top + ch, left : left + cw].double()
        x = (clean / 127.5 - 1).float()
        for sigma in args.sigmas:
            gen = torch.Generator().manual_seed(sigma)
            noisy = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
            y = (noisy.clamp(0, 255).round() / 127.5 - 1).float().expand(1, 3, -1, -1)
            op = Denoise(math.sqrt(3) * sigma / 127.5)

            def run(operator, measured, grey=False, seed=1):
                draws = torch.Generator().manual_seed(seed)  # the same draws for both ways
                with torch.no_grad():
                    result = solve_tiled(model, operator, measured, tile=32, overlap=8,
                                         solver="posterior", steps=args.steps, generator=draws,
                                         n_samples=k)  # fmt: skip
                return result.channel_mean() if grey else result

            rgb = run(op, y)
            row = {"photo": name, "sigma": sigma}
            for label, grey in WAYS.items():
                result = rgb.channel_mean() if grey else rgb
                truth = x if grey else x.expand(1, 3, -1, -1)
                again = lambda o, m, grey=grey: run(o, m, grey, seed=3)  # noqa: E731
                replay_gen = torch.Generator().manual_seed(2)  # the same replay for both
                factor = float(replay_factor(op, y, again, k, replay_gen, min_size=32,
                                             grey=grey)[0])  # fmt: skip
                mean = result.mean.clamp(-1, 1)
                drawn = uncertainty_calibration(mean, result.std, truth, k)
                used = factor if factor > 0 else 1.0  # 0: the command keeps the draws' map
                scaled = uncertainty_calibration(mean, result.std * used, truth, k)
                row[label] = {
                    "psnr": float(psnr(mean, truth)),
                    "factor": factor,
                    "ratio_drawn": drawn["rms_error_over_std"],
                    "ratio_scaled": scaled["rms_error_over_std"],
                    "within_2std_scaled": scaled["within_2std"],
                    "calibrated_ratio": scaled["rms_error_over_std_calibrated"],
                    "calibrated_within": scaled["within_2std_calibrated"],
                }
            rows.append(row)
            print(row, flush=True)
    result = {
        **run_header("grey_map"),
        "model": str(args.model),
        "crop": args.crop,
        "samples": k,
        "steps": args.steps,
        "bf16": args.bf16,
        "rows": rows,
    }
    save_result(args.out, "grey_map", result, markdown(result))


def markdown(result: dict) -> str:
    first = result["rows"][0]["channel mean"]
    lines = [
        "# The std map of a grey noisy photo restored by an RGB model (`posterior`)",
        "",
        f"`{result['command']}`, {result['date']}, {machine_words(result)}, model "
        f"`{result['model']}`{', bf16 autocast' if result['bf16'] else ''}. "
        + (
            f"The centre {result['crop']} x {result['crop']} px of each"
            if result["crop"]
            else "Each"
        )
        + " held-out photo's luma (whole) with noise of std sigma (0-255), "
        "clipped and rounded, in all three channels; "
        f"`posterior`, {result['steps']} steps, K = {result['samples']} draws "
        "at sqrt(3) sigma per channel. Per channel: the draws' mean and std map in RGB, "
        "scaled by a replay that compares each channel with the truth's; channel mean: both "
        "averaged over channels (`Restoration.channel_mean`), scaled by a replay of channel "
        "means (`replay_factor(..., grey=True)`). RMS error / RMS std of the map as drawn and "
        "as scaled, against a calibrated K-sample posterior's "
        f"{first['calibrated_ratio']:.2f} ({first['calibrated_within']:.0%} of errors within 2 "
        "std); PSNR (dB) of the mean.",
        "",
        "| photo | sigma | way | PSNR | factor | RMS err / std drawn | scaled | within 2 std |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for label in WAYS:
            c = row[label]
            lines.append(f"| {row['photo']} | {row['sigma']} | {label} | {c['psnr']:.2f} | "
                         f"{c['factor']:.2f} | {c['ratio_drawn']:.2f} | {c['ratio_scaled']:.2f} "
                         f"| {c['within_2std_scaled']:.0%} |")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
