"""Test-time adaptation for box inpainting: fine-tune the prior on the photo's own observed
pixels before filling its hole, and see whether the fill gets closer to the truth.

The prior was trained on other photos; the observed part of a held-out photo (15/16 of it) is
data about exactly the picture whose hole we fill (internal learning: Zontak & Irani 2011;
single-image diffusion, Kulikov et al. 2023). The adaptation sees only y: 32 x 32 windows that
lie wholly outside the hole, with horizontal flips, and the training loss of the prior
(EDM, Karras et al. 2022, eq. 2), with AdamW and a cosine learning rate decayed to 0.

Same photos, box (a central square of side min(H, W) / 4), measurement and PSNR as
`bench/restoration.py`. For each number of adaptation steps (0 = the prior as trained), each
solver's mean of --samples posterior draws: `ddnm` from the biharmonic fill noised to each
sigma of --sigmas, and `ddnm` from pure noise (cold). Each row also gives the RMS error / RMS
std of the draws (1 for a calibrated posterior).

Run: python bench/inpaint_adapt.py --model runs/photos/model -> bench/results/inpaint_adapt.*
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import diffvision
from diffvision.metrics import psnr
from diffvision.metrics.calibration import uncertainty_calibration
from diffvision.restore.starts import classical_start
from diffvision.restore.tiles import solve_tiled
from diffvision.train.loss import denoising_loss
from restoration import RESULTS, named_photos, patch_size, prepare, tasks
from run_header import run_header, save_result


def observed_windows(y, mask, size: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` windows of ``y`` (``1 x C x H x W``) that lie wholly in
    the observed part of ``mask`` (``1 x 1 x H x W``, 1 = observed), half of them mirrored."""
    inside = F.avg_pool2d(mask.float(), size, stride=1)[0, 0] > 1 - 1e-6
    corners = inside.nonzero().cpu()
    if not len(corners):
        raise ValueError(f"no {size} x {size} window is wholly observed")
    picks = corners[torch.randint(len(corners), (n,), generator=gen)].tolist()
    windows = torch.stack([y[0, :, i : i + size, j : j + size] for i, j in picks])
    flip = (torch.rand(n, generator=gen) < 0.5).to(y.device)
    return torch.where(flip[:, None, None, None], windows.flip(-1), windows)


def adapt(model, y, mask, size: int, steps: int, batch: int, lr: float, seed: int = 0):
    """A copy of ``model`` fine-tuned for ``steps`` steps on ``batch`` windows of ``size`` px
    per step from the observed pixels of ``y``."""
    model = copy.deepcopy(model)
    if not steps:
        return model
    device = y.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine decay to 0, 20 steps of warm-up
            group["lr"] = (
                lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
            )
        x0 = observed_windows(y, mask, size, batch, gen)
        sigma = model.schedule.sample_sigma(batch, generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = denoising_loss(model, x0, sigma, noise, weighting="edm").mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--adapt", default="0,300", help="adaptation steps to compare")
    parser.add_argument("--batch", type=int, default=32, help="windows per adaptation step")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak adaptation learning rate")
    parser.add_argument("--samples", type=int, default=8, help="posterior draws averaged")
    parser.add_argument("--sigmas", default="0.3,1.0", help="warm-start noise levels")
    parser.add_argument("--no-cold", action="store_true", help="skip ddnm from pure noise")
    parser.add_argument("--steps", type=int, default=10, help="solver steps")
    parser.add_argument("--photos", default=None, help="comma-separated held-out names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="inpaint_adapt", help="result file name")
    parser.add_argument("--merge", nargs="+", type=Path, help="only merge these result files")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out, args.name)
    device = torch.device(args.device)
    started = time.time()
    base = diffvision.load(args.model, device=device)
    size = patch_size(base.config)
    photos = named_photos(parser, "held-out", args.photos)
    methods = [f"warm{s}" for s in args.sigmas.split(",")] + ([] if args.no_cold else ["cold"])
    rows = []
    for name, image in photos.items():
        x = prepare(image, 0)
        op = tasks(*x.shape[-2:])["inpaint"][0]
        y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
        fill = classical_start(op, y, "biharmonic")
        base_psnr = float(psnr(fill.clamp(-1, 1), x).mean())
        rows.append({"photo": name, "adapt": 0, "method": "biharmonic", "psnr": base_psnr})
        y_dev, fill_dev = y.to(device), fill.to(device)
        mask = op.mask.expand(1, 1, *x.shape[-2:]).to(device)
        for steps in map(int, args.adapt.split(",")):
            t0 = time.time()
            model = adapt(base, y_dev, mask, size, steps, args.batch, args.lr)
            adapt_seconds = time.time() - t0
            for how in methods:
                opts = {}
                if how != "cold":
                    opts = {"start": fill_dev, "start_sigma": float(how[4:])}
                t0 = time.time()
                with torch.no_grad():
                    r = solve_tiled(
                        model, op, y_dev, tile=size, overlap=8,
                        batch=args.tile_batch, solver="ddnm", steps=args.steps,
                        n_samples=args.samples, generator=torch.Generator().manual_seed(1),
                        **opts,
                    )  # fmt: skip
                mean, std = r.mean.cpu(), r.std.cpu()
                row = {
                    "photo": name,
                    "adapt": steps,
                    "adapt_seconds": round(adapt_seconds, 1),
                    "method": how,
                    "psnr": float(psnr(mean.clamp(-1, 1), x).mean()),
                    "psnr_one": float(psnr(r.samples[0].cpu().clamp(-1, 1), x).mean()),
                    "calibration": uncertainty_calibration(mean, std, x, args.samples),
                    "seconds": round(time.time() - t0, 1),
                }
                rows.append(row)
                print(
                    f"{name:>10} adapt {steps:5d} {how:>8}: {row['psnr']:6.2f} "
                    f"({row['psnr'] - base_psnr:+.3f} vs fill) one draw {row['psnr_one']:6.2f}",
                    flush=True,
                )
            save(args, rows, started)  # after each level: a run cut short keeps its rows


def save(args, rows: list, started: float) -> None:
    result = {
        **run_header("inpaint_adapt"),
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "settings": vars(args) | {"model": str(args.model), "out": str(args.out)},
        "seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    save_result(args.out, args.name, result, markdown(result))


def merge(files: list[Path], out: Path, name: str) -> None:
    """One table from runs of this script on different photos (e.g. one process per photo)."""
    results = [json.loads(f.read_text()) for f in files]
    merged = {
        **results[0],
        "command": " ; ".join(dict.fromkeys(_generic(r["command"]) for r in results)),
        "seconds": max(r["seconds"] for r in results),
        "rows": [row for r in results for row in r["rows"]],
    }
    save_result(out, name, merged, markdown(merged))


def _generic(command: str) -> str:
    """The command with its --photos, --name and --out values left out (they differ by run)."""
    words = command.split()
    drop = {i + 1 for i, w in enumerate(words) if w in ("--photos", "--name", "--out")}
    return " ".join("..." if i in drop else w for i, w in enumerate(words))


def markdown(result: dict) -> str:
    rows, opts = result["rows"], result["settings"]
    photos = list(dict.fromkeys(r["photo"] for r in rows))
    fill = {r["photo"]: r["psnr"] for r in rows if r["method"] == "biharmonic"}
    where = result["gpu"] or f"{result['machine']} ({result['threads']} threads)"
    lines = [
        "# Box inpainting after test-time adaptation of the prior",
        "",
        f"`{result['command']}` on {where}, torch {result['torch']}, {result['date']}; "
        f"{result['seconds']:.0f} s in all. Held-out photos whole, central box of side "
        f"min(H, W) / 4, noise-free. Adaptation: {opts['batch']} windows per step wholly outside "
        f"the hole, peak lr {opts['lr']}, cosine to 0. Each diffvision row: mean of "
        f"{opts['samples']} ddnm draws, {opts['steps']} steps; PSNR in dB, in brackets the "
        "difference from the biharmonic fill; last column: RMS error / RMS std of the draws in "
        "the hole (calibrated: about 1).",
        "",
        "| adaptation steps | start | " + " | ".join(photos) + " | mean | error / std |",
        "|---|---|" + "---|" * (len(photos) + 2),
    ]
    for steps in dict.fromkeys(r["adapt"] for r in rows if r["method"] != "biharmonic"):
        for how in dict.fromkeys(r["method"] for r in rows if r["method"] != "biharmonic"):
            got = {r["photo"]: r for r in rows if r["adapt"] == steps and r["method"] == how}
            if set(got) != set(photos):
                continue
            cells = [f"{got[p]['psnr']:.2f} ({got[p]['psnr'] - fill[p]:+.2f})" for p in photos]
            mean = sum(got[p]["psnr"] for p in photos) / len(photos)
            ratio = sum(got[p]["calibration"]["rms_error_over_std"] for p in photos) / len(photos)
            start = "noise" if how == "cold" else f"fill at {how[4:]}"
            lines.append(
                f"| {steps} | {start} | " + " | ".join(cells) + f" | {mean:.2f} | {ratio:.1f} |"
            )
    mean_fill = sum(fill.values()) / len(fill)
    lines.append(
        "| - | biharmonic fill | "
        + " | ".join(f"{fill[p]:.2f}" for p in photos)
        + f" | {mean_fill:.2f} | - |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
