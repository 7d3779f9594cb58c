"""How well `restore --sigma auto` estimates the noise level of a photograph
(`diffvision.restore.estimate_sigma`), next to scikit-image's `estimate_sigma` (Daubechies-2
wavelet, PyWavelets) where it is installed.

Each held-out photo (whole, RGB) gets white Gaussian noise of std sigma on the 0-255 scale,
clipped to 0-255 and rounded to 8 bits, as a saved noisy photo is; five noise draws per photo
and sigma. The table gives each estimator's mean estimate and, over the draws, its standard
deviation, and the median time per photo. Beside diffvision's estimate, the one it made until
2026-12-08 (`plain_median`: the median over every block without a clipped pixel, no weak-texture
selection, no grouped median), written out here for the comparison.

With --model, what the estimate costs in denoising: PSNR of `mmse` (the command's default for
denoise) at the estimated sigma, at the plain median's, at the true one and at 0.8x and 1.25x
the true one, on the first noise draw of each photo (whole, 32 px tiles with 8 px overlap: the
command's defaults for a model of 32 px patches).

Run: python bench/noise_level.py [--model runs/photos/model]
     -> bench/results/noise_level.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.metrics import psnr
from diffvision.restore import Denoise, estimate_sigma
from diffvision.restore.tiles import solve_tiled
from run_header import machine_words, run_header, save_result

RESULTS = Path(__file__).parent / "results"
SIGMAS = (2, 5, 10, 25, 50)
DRAWS = 5
#: The noise levels of the denoising table (--model).
DENOISE_SIGMAS = SIGMAS
#: The levels it denoises at besides the estimated and the true one: factors of the true one.
MISSED_BY = (0.8, 1.25)


def as_model(photo: np.ndarray) -> torch.Tensor:
    """An H x W x C uint8 photo as ``1 x C x H x W`` float in [-1, 1]."""
    return torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 127.5 - 1


def ours(noisy: np.ndarray) -> float:
    """diffvision's estimate, on the 0-255 scale, of an H x W x C uint8 photo."""
    return float(estimate_sigma(as_model(noisy))[0]) * 127.5


def plain_median(noisy: np.ndarray) -> float:
    """diffvision's estimate until 2026-12-08, on the 0-255 scale: the median of the absolute
    finest Haar diagonal coefficients of every 2 x 2 block without a clipped pixel (all blocks
    where every one has one), over 0.6745."""
    from diffvision.restore.noise_level import MEDIAN_ABS_NORMAL, _blocks

    image = as_model(noisy)
    a, b, c, d = _blocks(image[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2])
    diagonal = ((a - b - c + d) / 2).abs()
    unclipped = (torch.stack([a, b, c, d]).abs() != 1).all(0)
    kept = diagonal[unclipped] if unclipped.any() else diagonal
    return float(kept.median()) / MEDIAN_ABS_NORMAL * 127.5


def scikit_image(noisy: np.ndarray) -> float:
    """scikit-image's estimate (its defaults: db2, channels averaged), on the 0-255 scale."""
    from skimage.restoration import estimate_sigma as skimage_sigma

    return float(skimage_sigma(noisy / 255.0, channel_axis=-1, average_sigmas=True)) * 255


def denoised(model, clean: np.ndarray, noisy: np.ndarray, sigma: float) -> dict:
    """PSNR (dB) against ``clean`` of mmse denoising of ``noisy`` (H x W x C uint8 photos; noise
    of std ``sigma``) at the estimated sigma, the true one and its :data:`MISSED_BY` multiples."""
    x, y = as_model(clean).float(), as_model(noisy).float()
    estimated, plain = ours(noisy), plain_median(noisy)
    levels = {"estimated": estimated, "plain median": plain, "true": sigma}
    levels |= {f"{f:g}x true": f * sigma for f in MISSED_BY}
    scores = {}
    with torch.no_grad():
        for name, level in levels.items():
            est = solve_tiled(model, Denoise(level / 127.5), y, tile=32, overlap=8, solver="mmse")
            scores[name] = float(psnr(est.clamp(-1, 1), x))
    return {"estimated_sigma": estimated, "plain_median_sigma": plain, "psnr": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--model", type=Path, help="a photos model: add the denoising table")
    args = parser.parse_args()
    model = None if args.model is None else diffvision.load(args.model)
    estimators = {"diffvision": ours, "plain median (until 2026-12-08)": plain_median}
    try:
        import pywt  # noqa: F401  (scikit-image's estimate needs it)

        estimators["scikit-image"] = scikit_image
    except ImportError:
        print("PyWavelets is not installed: scikit-image's estimate is left out")
    rows, seconds, denoising = [], {name: [] for name in estimators}, []
    for name, photo in held_out_photos(3).items():
        clean = photo.permute(1, 2, 0).numpy()
        for sigma in SIGMAS:
            found = {est: [] for est in estimators}
            for draw in range(DRAWS):
                rng = np.random.default_rng([sigma, draw])
                noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255)
                noisy = noisy.round().astype(np.uint8)
                for est, fn in estimators.items():
                    start = time.perf_counter()
                    found[est].append(fn(noisy))
                    seconds[est].append(time.perf_counter() - start)
                if model is not None and draw == 0 and sigma in DENOISE_SIGMAS:
                    scores = denoised(model, clean, noisy, sigma)
                    denoising.append({"photo": name, "sigma": sigma, **scores})
                    print(denoising[-1], flush=True)
            rows.append({
                "photo": name,
                "size": list(photo.shape[1:]),
                "sigma": sigma,
                **{est: {"mean": statistics.mean(v), "sd": statistics.stdev(v), "draws": v}
                   for est, v in found.items()},
            })  # fmt: skip
    result = {
        **run_header("noise_level"),
        "draws": DRAWS,
        "rows": rows,
        "median_seconds": {est: statistics.median(v) for est, v in seconds.items()},
    }
    if model is not None:
        result |= {"model": str(args.model), "denoised": denoising}
    save_result(args.out, "noise_level", result, markdown(result))


def markdown(result: dict) -> str:
    names = list(result["median_seconds"])
    lines = [
        "# Noise level estimated from the noisy photo (`restore --sigma auto`)",
        "",
        f"`{result['command']}`, {result['date']}, {machine_words(result)}. Each held-out photo "
        f"(whole, RGB) with white Gaussian noise of std sigma (0-255), clipped and rounded to 8 "
        f"bits; {result['draws']} noise draws each: the mean estimate ± its standard deviation "
        "over the draws.",
        "",
        "| photo | sigma | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in result["rows"]:
        cells = [f"{row[n]['mean']:.2f} ± {row[n]['sd']:.2f}" for n in names]
        lines.append(f"| {row['photo']} | {row['sigma']} | " + " | ".join(cells) + " |")
    times = ", ".join(f"{n} {s * 1e3:.1f} ms" for n, s in result["median_seconds"].items())
    lines += [
        "",
        f"Median time per photo: {times}. diffvision takes the median of the finest Haar "
        "diagonal coefficients over the blocks of weak texture (whose neighbourhood holds no "
        "more across and down energy than the noise would: after Liu et al. 2013), at least 2 "
        "sigma from black and white, and of 8-bit data's grid as of grouped data (see "
        "`diffvision/restore/noise_level.py`). The plain median, and scikit-image's, err high "
        "at sigma 2-10, where the photos' own fine texture is of the noise's size, and low at "
        "sigma 50, where much of the noise is clipped at 0 and 255 and cut short near them; the "
        "plain median also moved in steps of 0.74 levels (half a level of 8-bit data over "
        "0.6745), hence its spread of 0 over most draws.",
        "",
    ]
    if "denoised" in result:
        levels = list(result["denoised"][0]["psnr"])
        lines += [
            f"## What it costs in denoising (`mmse`, model `{result['model']}`)",
            "",
            "PSNR (dB) of the first noise draw of each photo denoised at each noise level; the "
            "estimates in brackets.",
            "",
            "| photo | sigma | " + " | ".join(f"at {level}" for level in levels) + " |",
            "|---|---|" + "---|" * len(levels),
        ]
        for row in result["denoised"]:
            cells = [f"{row['psnr'][level]:.2f}" for level in levels]
            cells[0] += f" ({row['estimated_sigma']:.1f})"
            cells[1] += f" ({row['plain_median_sigma']:.1f})"
            lines.append(f"| {row['photo']} | {row['sigma']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
