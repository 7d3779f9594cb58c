"""Why box inpainting loses to classical fills: two probes on the held-out photos.

Same photos, box (a central square of side min(H, W) / 4) and PSNR as `bench/restoration.py`.

- smooth start: scikit-image's biharmonic fill, noised to sigma_0 and brought back down by DDNM
  (10 Karras steps from sigma_0, DDPM ancestral, 32 x 32 tiles with a shifted grid), mean of
  --samples draws (the "come closer, diffuse faster" start of Chung, Sim & Ye 2022). If the prior
  knew more about the hole than a smooth fill does, the posterior mean would move towards the
  truth. The restoration runs on a window around the box (64 px margin, the tiles' reach being
  32 px) and is pasted back.
- whole image, coarse scale: the photo area-downsampled by f, inpainted by DDNM (20 steps from
  pure noise, mean of --samples) with the U-Net applied to the whole image at once (no tiles, so
  its attention sees the whole hole and its border), the hole upsampled bicubically.

Run: python bench/inpaint_probe.py --model runs/photos/model
     -> bench/results/inpaint_probe.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import diffvision
from diffvision.data import held_out_photos
from diffvision.metrics import psnr
from diffvision.restore import Inpaint, solve
from diffvision.restore.tiles import TiledDenoiser
from diffvision.samplers import get as get_sampler
from diffvision.samplers import sigma_steps
from restoration import RESULTS, classical_baselines, prepare, tasks
from run_header import save_result

MARGIN = 64


def score(est: torch.Tensor, x: torch.Tensor) -> float:
    return float(psnr(est.clamp(-1, 1), x))


def smooth_start(model, y, mask, start, sigma0: float, k: int, steps: int = 10) -> torch.Tensor:
    """DDNM from ``start`` noised to ``sigma0`` on a window around the hole; mean of k draws."""
    rows = torch.nonzero((mask == 0).any(1)).flatten()
    cols = torch.nonzero((mask == 0).any(0)).flatten()
    r0, c0 = max(int(rows[0]) - MARGIN, 0), max(int(cols[0]) - MARGIN, 0)
    r1 = min(int(rows[-1]) + 1 + MARGIN, mask.shape[0])
    c1 = min(int(cols[-1]) + 1 + MARGIN, mask.shape[1])
    window = (..., slice(r0, r1), slice(c0, c1))
    op = Inpaint(mask[r0:r1, c0:c1])
    y_w = y[window].expand(k, -1, -1, -1)
    prior = TiledDenoiser(model, 32, 8, 256, shift=True)

    def projected(z, sigma):  # DDNM, Eq. 7: the observed pixels from y
        return op.project(prior(z, sigma), y_w)

    gen = torch.Generator().manual_seed(1)
    z = start[window].expand(k, -1, -1, -1)
    z = z + sigma0 * torch.randn(z.shape, generator=gen)
    sigmas = sigma_steps("karras", steps, 0.002, sigma0)
    with torch.no_grad():
        out = get_sampler("ddpm")(projected, z, sigmas, generator=gen)
    full = start.clone()
    full[window] = out.mean(0, keepdim=True)
    return full


def coarse_whole(model, x, y, mask, f: int, k: int, steps: int = 20) -> torch.Tensor:
    """DDNM on the photo downsampled by f, untiled; mean of k draws; hole upsampled."""
    h, w = x.shape[-2:]
    size = (h // f // 8 * 8, w // f // 8 * 8)
    small = F.interpolate(x, size=size, mode="area")
    small_mask = (F.interpolate(mask[None, None], size=size, mode="area") > 0.999).float()
    op = Inpaint(small_mask)
    with torch.no_grad():
        out = solve(
            model, op, op.forward(small), solver="ddnm", steps=steps, n_samples=k,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
    up = F.interpolate(out.mean if k > 1 else out, size=(h, w), mode="bicubic")
    return torch.where(mask.bool(), y, up)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--sigmas", default="0.3,1.0", help="sigma_0 of the smooth start")
    parser.add_argument("--factors", default="8,4,2", help="downsampling factors")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = diffvision.load(args.model)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    factors = [int(f) for f in args.factors.split(",")]
    rows, start_all = {}, time.time()
    for name, image in held_out_photos(3).items():
        x = prepare(image, 0)
        op = tasks(*x.shape[-2:])["inpaint"][0]
        y, mask = op.forward(x), op.mask[0, 0]
        base = classical_baselines("inpaint", y, op, 0)
        smooth = base["skimage_biharmonic"]()
        row = {
            "Navier-Stokes": score(base["opencv_navier_stokes"](), x),
            "biharmonic": score(smooth, x),
        }
        for s0 in sigmas:
            est = smooth_start(model, y, mask, smooth, s0, args.samples)
            row[f"biharmonic, DDNM from sigma {s0}"] = score(est, x)
        for f in factors:
            row[f"DDNM whole image at 1/{f}"] = score(
                coarse_whole(model, x, y, mask, f, args.samples), x
            )
        rows[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    result = {
        "benchmark": "inpaint_probe",
        "command": "python bench/inpaint_probe.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "samples": args.samples,
        "seconds": round(time.time() - start_all, 1),
        "rows": rows,
    }
    save_result(args.out, "inpaint_probe", result, markdown(result))


def markdown(
    result: dict,
    title: str = "Box inpainting probes",
    caveat: str = "",
    setting: str = "PSNR (dB) of the whole photo; central box of side min(H, W) / 4; means of "
    "{samples} draws.",
) -> str:
    """A table of PSNR per method (rows) and photo (columns) with the run's header; ``setting``
    (formatted with the result's fields) says what was measured."""
    methods = list(next(iter(result["rows"].values())))
    photos = list(result["rows"])
    lines = [
        f"# {title}",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, torch "
        f"{result['torch']}), {result['seconds']} s. {setting.format(**result)}{caveat}",
        "",
        "| method | " + " | ".join(photos) + " | mean |",
        "|---|" + "---:|" * (len(photos) + 1),
    ]
    for m in methods:
        values = [result["rows"][p][m] for p in photos]
        cells = " | ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {m} | {cells} | {np.mean(values):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
