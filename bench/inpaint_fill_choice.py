"""Can the prior tell which classical fill of a hole is closer to the truth? A probe on the
training photos: the denoising loss of each fill under the prior, as a likelihood score.

For every training photo (RGB, whole) and the two quarter-size square holes of
`bench/fill_blend.py` (centred, and moved), the biharmonic, Navier-Stokes and Telea fills and
their plain mean are scored by the prior's denoising error: the fill, cut to the hole grown by
40 px, is noised at each of --sigmas levels (one noise draw per level, the same for every fill),
denoised by the tiled prior (tiles of the model's size, a fixed grid), and the mean squared
error over the hole grown by 8 px is its score at that level (a diffusion model's negative
log-likelihood is a weighted integral of these over the levels). Reported per level: how often
the lower score picks the fill with the lower true error between the biharmonic fill and the
plain mean (the two best on average), beside how often the mean simply is better (the base
rate a score must beat); and the PSNR gain in the hole over the biharmonic fill of picking the
lowest-scoring of all four, against always taking the mean. The prior was trained on patches of
these photos, which can only help it here.

Run: python bench/inpaint_fill_choice.py --model runs/photos/model --bf16
     -> bench/results/inpaint_fill_choice.{json,md}  (about 20 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

import diffvision
from diffvision.cli.common import fast_inference
from diffvision.data.photos import training_photos
from diffvision.restore.starts import BLENDED, fill_hole
from diffvision.restore.tiles import TiledDenoiser
from fill_blend import gain_db, holes
from restoration import patch_size
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
CANDIDATES = (*BLENDED, "mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--sigmas", default="0.01,0.03,0.1,0.3,1,2.5", help="noise levels")
    parser.add_argument("--photos", type=int, default=0, help="only the first N photos")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, channels-last")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    model = diffvision.load(args.model)
    if args.bf16:  # what `restore --bf16` does on the CPU: channels-last, bf16 autocast
        fast_inference(model, torch.device("cpu"), bf16=True)
    tile = patch_size(json.loads((args.model / "config.json").read_text()))
    prior = TiledDenoiser(model, tile, tile // 4, shift=False)
    t0, rows = time.time(), []
    photos = list(training_photos().items())
    for name, picture in photos[: args.photos or None]:
        image = np.moveaxis(picture.astype(np.float64) / 127.5 - 1, -1, 0)
        for geometry, hole in holes(*image.shape[1:]).items():
            if "/ 4" not in geometry:
                continue
            fills = np.stack([fill_hole(image, hole, m) for m in BLENDED])
            fills = np.concatenate([fills, fills.mean(0, keepdims=True)])
            rows.append(
                {
                    "photo": name,
                    "geometry": geometry,
                    "gain_db": [
                        gain_db(f[:, hole], fills[0][:, hole], image[:, hole]) for f in fills
                    ],
                    "score": scores(prior, fills, hole, sigmas),
                }
            )
            print(name, geometry, np.round(rows[-1]["gain_db"], 2), flush=True)
    result = {
        **run_header("inpaint_fill_choice"),
        "seconds": round(time.time() - t0, 1),
        "sigmas": sigmas,
        "candidates": CANDIDATES,
        "rows": rows,
    }
    save_result(args.out, "inpaint_fill_choice", result, markdown(result))


def scores(prior, fills: np.ndarray, hole: np.ndarray, sigmas) -> list[list[float]]:
    """``[level][fill]``: the prior's mean squared denoising error over the hole grown by 8 px,
    one noise draw per level shared by the fills."""
    rows, cols = np.nonzero(hole)
    h, w = hole.shape
    r0, r1 = max(rows.min() - 40, 0), min(rows.max() + 41, h)
    c0, c1 = max(cols.min() - 40, 0), min(cols.max() + 41, w)
    region = torch.from_numpy(binary_dilation(hole, iterations=8)[r0:r1, c0:c1])
    x = torch.from_numpy(fills[:, :, r0:r1, c0:c1]).float()
    gen, out = torch.Generator().manual_seed(0), []
    with torch.no_grad():
        for sigma in sigmas:
            noisy = x + sigma * torch.randn(x.shape[1:], generator=gen)
            err = (prior(noisy, sigma).float() - x).square().mean(1)[:, region].mean(1)
            out.append(err.tolist())
    return out


def markdown(r: dict) -> str:
    rows = r["rows"]
    gain = np.array([row["gain_db"] for row in rows])  # cases x fills, dB over biharmonic
    score = np.array([row["score"] for row in rows])  # cases x levels x fills
    mean_better = gain[:, 3] > 0
    lines = [
        "# Can the prior choose the classical fill?",
        "",
        f"`{r['command']}` on {machine_words(r)}, "
        f"{r['date']}; {r['seconds'] / 60:.0f} min. Training photos whole, "
        f"{len(rows)} holes (side min(H, W) / 4, centred and moved). Fills: biharmonic, "
        "Navier-Stokes, Telea, their plain mean; mean gain in the hole over the biharmonic fill: "
        + ", ".join(f"{c} {g:+.2f} dB" for c, g in zip(CANDIDATES, gain.mean(0), strict=True))
        + f"; picking the best fill for each hole (an oracle) {gain.max(1).mean():+.2f} dB. "
        "The mean beats the biharmonic fill on "
        f"{mean_better.mean():.0%} of the holes: a score that knows nothing is right that often.",
        "",
        "| noise level | score picks the better of biharmonic and mean | gain of the lowest "
        "score of all four | worst hole |",
        "|---|---|---|---|",
    ]
    cases = np.arange(len(rows))
    for i, sigma in enumerate(r["sigmas"]):
        right = ((score[:, i, 3] < score[:, i, 0]) == mean_better).mean()
        picked = gain[cases, score[:, i].argmin(1)]
        lines.append(
            f"| {sigma:g} | {right:.0%} | {picked.mean():+.2f} dB | {picked.min():+.2f} dB |"
        )
    lines += [
        f"| (always the mean) | {mean_better.mean():.0%} | {gain[:, 3].mean():+.2f} dB | "
        f"{gain[:, 3].min():+.2f} dB |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
