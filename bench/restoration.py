"""Restoration on the held-out photos: diffvision solvers with a `photos` model against classical
baselines, in one run on one machine.

For each held-out photo (scikit-image camera, astronaut, coffee, chelsea; RGB, the grey camera
replicated; whole, or the central --crop x --crop pixels; sides cut to a multiple of 4) and task
(--set training: the prior's training photos instead, to tune a choice on before it is checked
on the held-out ones; --photos: some of them, by name):

- denoise, Gaussian noise sigma 25 (0-255 scale): mmse, posterior, ddnm  vs  scikit-image
  NL-means, TV (Chambolle) and wavelet (BayesShrink) denoising, and BM3D if `bm3d` is installed;
- inpaint, a central square box of side min(H, W) / 4 (--box: another side in pixels; --random
  P: instead, a fraction P of the pixels missing at random; --strokes N: N random strokes),
  noise-free: ddnm, repaint, dps  vs
  OpenCV Telea and Navier-Stokes inpainting and scikit-image biharmonic inpainting;
- 4x super-resolution (antialiased bicubic downsampling): ddnm, dps  vs  bicubic and Lanczos
  upscaling (PIL);
- deblur, Gaussian kernel std 2 px (13 x 13, circular) with noise sigma 2: ddnm (DDNM+), repaint
  (its replacement for noisy y, no resampling), dps  vs  scikit-image Wiener and Richardson-Lucy
  (30 iterations);
- colorize: ddnm  vs  the grey image itself.

The model sees 32 x 32 tiles (--overlap pixels shared, blended); operators act on the whole
image (noise-free inpainting is solved on the hole grown by a tile, the rest is y). A solver
named "NAME+warm" starts from the classical start of `diffvision.restore.starts` (the --fill
of the hole, by default the biharmonic one; bicubic upscaling; Wiener deconvolution) noised to
--start-sigma, "NAME+warmS" to S (Chung, Sim & Ye 2022), instead of pure noise; the start itself
is scored too ("start: ... (no prior)"), so that what the prior adds to it shows. With
--samples K > 1 each sampling solver draws K restorations in one batch and two rows are written:
the first sample (seconds: the run's divided by K) and the mean of the K (the posterior-mean
estimate, which is what PSNR rewards; seconds: the whole run). --solvers picks the diffvision
solvers per task and their sample counts (to fit a time budget).

PSNR and SSIM (data range [0, 255], whole image) and seconds per image. Measurements and samples
are drawn with fixed seeds (--seed: the samples' seed, default 1). Goal (issue 4): the best
diffvision solver beats every classical baseline on PSNR for denoising, box inpainting and 4x SR
(the classical starts are diffvision's own, not baselines; the goals list what the best solver
adds to its start, per photo).

Run: python bench/restoration.py --model runs/photos/model  ->  bench/results/restoration.{json,md}
(needs pip install -e '.[bench]'; train the prior first, 49 min on a 2-core CPU: diffvision train
--data photos --size 32 --steps 6000 --batch 32 --lr-schedule cosine --hflip --bf16
--channels-last --out runs/photos; with --data photos+deadleaves instead, the prior of
bench/results/restoration_leaves.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch

import diffvision
from diffvision.data import held_out_photos
from diffvision.data.photos import training_photos
from diffvision.metrics import psnr, ssim, uncertainty_calibration
from diffvision.restore import (
    Colorize,
    Deblur,
    Denoise,
    Inpaint,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    random_mask,
    stroke_mask,
)
from diffvision.restore.replay import NoReplayError, replay_factor, replay_thins
from diffvision.restore.solvers import START_SIGMA
from diffvision.restore.starts import FILLS, NoCopiesError, classical_start, fill_hole
from diffvision.restore.tiles import solve_tiled
from run_header import machine_words, run_header, save_result  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"


def to_np(x: torch.Tensor) -> np.ndarray:
    """1 x C x H x W in [-1, 1] -> H x W x C float in [0, 1]."""
    return ((x[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).double().numpy()


def from_np(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() * 2 - 1


def classical_baselines(task: str, y: torch.Tensor, op, sigma255: float) -> dict:
    """name -> (callable returning the estimate in [-1, 1])."""
    from PIL import Image
    from skimage.restoration import (
        denoise_nl_means,
        denoise_tv_chambolle,
        denoise_wavelet,
        estimate_sigma,
        richardson_lucy,
        wiener,
    )

    if task == "denoise":
        img = to_np(y)
        s = sigma255 / 255
        out = {
            "nl_means": lambda: from_np(
                denoise_nl_means(
                    img,
                    h=0.8 * s,
                    sigma=s,
                    fast_mode=True,
                    patch_size=5,
                    patch_distance=6,
                    channel_axis=-1,
                )
            ),
            "tv_chambolle": lambda: from_np(
                denoise_tv_chambolle(img, weight=0.08, channel_axis=-1)
            ),
            "wavelet": lambda: from_np(
                denoise_wavelet(
                    img,
                    method="BayesShrink",
                    mode="soft",
                    rescale_sigma=True,
                    sigma=float(np.mean(estimate_sigma(img, channel_axis=-1))),
                    channel_axis=-1,
                )
            ),
        }
        try:
            import bm3d

            out["bm3d"] = lambda: from_np(bm3d.bm3d(img, sigma_psd=s))
        except ImportError:
            pass
        return out
    if task == "inpaint":  # the library's fills: OpenCV's 8-bit calls, scikit-image's in float
        image, hole = y[0].double().numpy(), op.mask[0, 0].numpy() == 0

        def fill(how):
            return lambda: torch.from_numpy(fill_hole(image, hole, how))[None].float()

        return {
            "opencv_telea": fill("telea"),
            "opencv_navier_stokes": fill("navier_stokes"),
            "skimage_biharmonic": fill("biharmonic"),
        }
    if task == "superres":
        small = Image.fromarray((to_np(y) * 255).round().astype(np.uint8))
        size = (small.width * op.factor, small.height * op.factor)
        return {
            name: (lambda m=m: from_np(np.asarray(small.resize(size, m)) / 255))
            for name, m in (
                ("bicubic", Image.Resampling.BICUBIC),
                ("lanczos", Image.Resampling.LANCZOS),
            )
        }
    if task == "deblur":
        img = to_np(y)
        psf = op.kernel.numpy()

        def per_channel(fn):
            return from_np(np.stack([fn(img[..., c]) for c in range(img.shape[-1])], -1))

        return {
            "wiener": lambda: per_channel(lambda c: wiener(c, psf, balance=0.01)),
            "richardson_lucy": lambda: per_channel(
                lambda c: richardson_lucy(np.clip(c, 1e-6, 1), psf, num_iter=30)
            ),
        }
    return {"grey": lambda: op.pinv(y)}


def photo_set(which: str, n: int) -> dict[str, torch.Tensor]:
    """uint8 ``C x H x W`` photos by name: the held-out ones, or the first ``n`` training ones
    (``n`` 0: all)."""
    if which == "held-out":
        return held_out_photos(3)
    chosen = list(training_photos().items())[: n or None]
    return {name: torch.from_numpy(np.array(a)).permute(2, 0, 1) for name, a in chosen}


def named_photos(parser, which: str, names: str | None) -> dict[str, torch.Tensor]:
    """``photo_set(which, 0)``, only ``names`` (comma-separated; all where empty) in their order;
    an unknown name is ``parser``'s usage error."""
    photos = photo_set(which, 0)
    if not names:
        return photos
    unknown = set(names.split(",")) - set(photos)
    if unknown:
        parser.error(f"no such photo in the {which} set: {', '.join(sorted(unknown))}")
    return {name: photos[name] for name in names.split(",")}


def prepare(image: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 ``C x H x W`` photo -> ``1 x C x H x W`` in [-1, 1]: the central ``crop`` x ``crop``
    pixels (0: whole), sides cut to a multiple of 4 (for 4x super-resolution)."""
    x = image.float()[None] / 127.5 - 1
    if crop:
        h, w = x.shape[-2:]
        c = min(crop, h, w)
        x = x[..., (h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    return x[..., : x.shape[-2] // 4 * 4, : x.shape[-1] // 4 * 4]


def tasks(h: int, w: int, box_side: int = 0, missing: float = 0.0, strokes=(0, 0)):
    """task -> (operator, diffvision solvers, noise sigma on the 0-255 scale); the inpainting
    hole is a central square of side ``box_side`` pixels (0: min(h, w) / 4), or with
    ``missing`` > 0 that fraction of the pixels, drawn independently, or with ``strokes``
    ``(n, width)``, n > 0, n random strokes ``width`` pixels wide (``stroke_mask``; seed 0)."""
    b = box_side or min(h, w) // 4
    box = ((w - b) // 2, (h - b) // 2, b, b)
    if missing:
        hole = random_mask(h, w, missing, torch.Generator().manual_seed(0))
    elif strokes[0]:
        hole = stroke_mask(h, w, *strokes, generator=torch.Generator().manual_seed(0))
    else:
        hole = box_mask(h, w, box)
    return {
        "denoise": (Denoise(25 / 127.5), ("mmse", "posterior", "ddnm"), 25),
        "inpaint": (Inpaint(hole), ("ddnm", "repaint", "dps"), 0),
        "superres": (SuperResolution(4, "bicubic"), ("ddnm", "dps"), 0),
        "deblur": (
            Deblur(gaussian_kernel(13, 2.0), sigma=2 / 127.5),
            ("ddnm", "repaint", "dps"),
            2,
        ),
        "colorize": (Colorize(), ("ddnm",), 0),
    }


def solver_plan(task: str, defaults, spec: str | None, samples: int) -> dict[str, int]:
    """solver -> samples for one task: the defaults with ``samples`` each, or the entries of
    ``spec`` ("solver", "task:solver", optionally "+warm" and "*K": e.g.
    "mmse,inpaint:ddnm+warm*4")."""
    if not spec:
        return {s: samples for s in defaults}
    plan = {}
    for item in spec.split(","):
        name, _, k = item.partition("*")
        where, _, solver = name.rpartition(":")
        if where in ("", task) and split_spec(solver)[0] in defaults:
            plan[solver] = int(k) if k else samples
    return plan


def split_spec(how: str, default_sigma: float = START_SIGMA) -> tuple[str, float | None]:
    """A solver spec's solver and warm-start sigma: "ddnm+warm0.6" -> ("ddnm", 0.6),
    "ddnm+warm" -> ("ddnm", default_sigma), "ddnm" -> ("ddnm", None)."""
    solver, warm, given = how.partition("+warm")
    if not warm:
        return solver, None
    return solver, float(given) if given else default_sigma


def start_label(op, fill: str) -> str:
    """The row name of a classical start (see ``diffvision.restore.starts.classical_start``)."""
    what = {
        Inpaint: f"{fill} fill",
        SuperResolution: "bicubic",
        Deblur: "Wiener",
    }.get(type(op), "A^+ y")
    return f"start: {what} (no prior)"


def patch_size(config: dict) -> int:
    """The model's training patch size (its tiles' side) from its config."""
    return config["sample_shape"][-1]


def solver_setup(model_dir: Path, steps: int, bf16: bool):
    """For benches that call :func:`solver_run`: the model loaded from ``model_dir`` (with
    ``bf16``, as `restore --bf16` runs it on the CPU: channels-last, bf16 autocast) and this
    script's default options with ``steps`` and the model's tile."""
    from diffvision.cli.common import fast_inference

    run_args = build_parser().parse_args(["--steps", str(steps)])
    run_args.tile = patch_size(json.loads((model_dir / "config.json").read_text()))
    model = diffvision.load(model_dir)
    if bf16:
        fast_inference(model, torch.device("cpu"), bf16=True)
    return model, run_args


def solver_run(model, op, y, how: str, k: int, args):
    """``run(operator, y) -> Restoration`` (or images, for k = 1): one diffvision solver on
    whole images (tiled), as :func:`run_solver` runs it.

    ``how``: a solver name, with "+warm" for a warm start from the classical start (the --fill
    of the hole, bicubic upscaling, Wiener deconvolution) of the y that ``run`` is given, noised
    to --start-sigma ("+warmS": to S). From an inpainting fill with k > 1, the std adds the
    fill's own error on ``y`` (``start_error_std``; for a scattered hole, ``replay.scattered``,
    the part a start at its level keeps, ``kept=``: the whole error until 2026-12-04, the kept
    part for every hole on 2026-12-04 and 05, the rule since), and ``stated`` holds it."""
    solver, warm = split_spec(how, args.start_sigma)
    options = {}
    if solver == "repaint":  # resampling for inpainting only (2 passes; the command's default: 10)
        options = {"jump_length": 5, "jump_n_sample": 2 if isinstance(op, Inpaint) else 1}
    if warm:  # named: made from the y that run is given (the replay's too)
        options.update(start=args.fill if isinstance(op, Inpaint) else "classical")
        options.update(start_sigma=warm)
    if warm and k > 1 and isinstance(op, Inpaint):
        options["start_std"] = "estimate"

    def run(o, measured):
        with torch.no_grad():  # dps turns gradients on where it needs them
            return solve_tiled(
                model,
                o,
                measured.to(args.device),
                tile=args.tile,
                overlap=args.overlap,
                batch=args.tile_batch,
                solver=solver,
                steps=args.steps,
                n_samples=k,
                generator=torch.Generator().manual_seed(args.seed),
                **options,
            )

    return run


def run_solver(model, op, y, how: str, k: int, args):
    """One diffvision solver on the whole image (tiled, :func:`solver_run`): (estimate, first
    sample, per-pixel std, its stated part, replay), the last four None for one sample.

    With k > 1 the estimate is the mean of k posterior samples (mmse is one estimate); the
    stated part is the inpainting fill's own error that the std adds to the samples' spread
    (None without one; ``uncertainty_calibration(..., stated=)`` rates it). Without one (with
    one: for a scattered hole, ``replay_thins``, as the command does, or with --replay-warm),
    ``replay`` holds the factor for the std map that replaying the solver one measurement down
    (denoising: on y recorrupted; inpainting: with copies of the hole hidden in y) finds
    (``replay_factor``, its defaults) and the replay's seconds; None where there is no replay
    (colorizing, noisy inpainting)."""
    k = 1 if how == "mmse" else k
    run = solver_run(model, op, y, how, k, args)
    out = run(op, y)
    if k == 1:
        return out.cpu(), None, None, None, None
    replay = None
    if out.stated is None or args.replay_warm or replay_thins(op):  # else: a box's fill error
        t0 = time.time()
        try:
            factor = replay_factor(op, y, run, k, torch.Generator().manual_seed(args.seed + 1))
            replay = {"factor": float(factor[0]), "seconds": round(time.time() - t0, 2)}
        except (NoReplayError, NoCopiesError):  # colorizing, noisy inpainting; no copies
            pass
    stated = None if out.stated is None else out.stated.cpu()
    return out.mean.cpu(), out.samples[0].cpu(), out.std.cpu(), stated, replay


def build_parser() -> argparse.ArgumentParser:
    """This script's options (other benches read its defaults for :func:`run_solver`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/photos/model"))
    parser.add_argument("--crop", type=int, default=0, help="central crop (pixels, 0: whole)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=8, help="tile overlap (pixels)")
    parser.add_argument("--tile-batch", type=int, default=256, help="tiles per denoiser call")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the solvers' device)")
    parser.add_argument("--samples", type=int, default=1, help="posterior samples averaged")
    parser.add_argument(
        "--start-sigma",
        type=float,
        default=START_SIGMA,
        help="noise level of +warm starts ([-1, 1] units)",
    )
    parser.add_argument("--tasks", default="denoise,inpaint,superres,deblur,colorize")
    parser.add_argument(
        "--solvers",
        default=None,
        help='only these diffvision solvers, e.g. "mmse,posterior,inpaint:ddnm+warm*4" (*K: '
        "samples; +warm: from the classical start)",
    )
    parser.add_argument(
        "--set",
        choices=("held-out", "training"),
        default="held-out",
        help="the photos: the held-out ones, or the prior's training photos (to tune on)",
    )
    parser.add_argument("--photos", default=None, help="comma-separated names from --set")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the solvers' noise (the measurement's: 0)"
    )
    parser.add_argument(
        "--box", type=int, default=0, help="inpaint: side of the hole (pixels, 0: min(H, W) / 4)"
    )
    parser.add_argument(
        "--random",
        type=float,
        default=0.0,
        help="inpaint: this fraction of the pixels missing at random instead of a box",
    )
    parser.add_argument(
        "--strokes",
        type=int,
        default=0,
        help="inpaint: this many random strokes instead of a box (stroke_mask, seed 0)",
    )
    parser.add_argument("--stroke-width", type=int, default=6, help="inpaint: strokes' width (px)")
    parser.add_argument(
        "--fill", default="biharmonic", choices=FILLS, help="inpaint: the classical fill of +warm"
    )
    parser.add_argument(
        "--replay-warm",
        action="store_true",
        help="inpaint: replay warm starts for boxes and strokes too (scattered holes' always)",
    )
    parser.add_argument("--bf16", action="store_true", help="the network in bf16 autocast")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if sum(bool(v) for v in (args.box, args.random, args.strokes)) > 1:
        parser.error("one inpainting hole at a time: --box, --random or --strokes")
    if importlib.util.find_spec("pywt") is None:  # wavelet denoising, a classical baseline
        parser.error("pywt is missing: pip install -e '.[bench]'")
    if not (args.model / "config.json").is_file():
        parser.error(
            f"no model folder at {args.model}: train the prior first (command at the top of "
            "this script)"
        )
    model = diffvision.load(args.model, device=args.device)
    if args.bf16:
        model.autocast = torch.bfloat16
    config = json.loads((args.model / "config.json").read_text())
    args.tile = patch_size(config)
    photos = named_photos(parser, args.set, args.photos)
    rows = []
    start_all = time.time()

    def record(name, task, label, est, x, seconds, std=None, k=1, replay=None, stated=None):
        shown = est.clamp(-1, 1).float()
        row = {
            "photo": name,
            "task": task,
            "method": label,
            "psnr": float(torch.as_tensor(psnr(shown, x)).mean()),
            "ssim": float(torch.as_tensor(ssim(shown, x)).mean()),
            "seconds": round(seconds, 2),
        }
        if std is not None:
            row["uncertainty"] = uncertainty_calibration(est, std, x, k, stated)
        if replay is not None:  # the std map scaled by the replay's factor
            row["replay"] = replay
            scaled = std * replay["factor"]
            kept = None if stated is None else stated * replay["factor"]
            row["uncertainty_replay"] = uncertainty_calibration(est, scaled, x, k, kept)
        rows.append(row)
        print(
            f"{name:>10} {task:>9} {label:>30}: PSNR {row['psnr']:6.2f} "
            f"SSIM {row['ssim']:.3f} {seconds:7.1f} s",
            flush=True,
        )

    for name, image in photos.items():
        x = prepare(image, args.crop)
        h, w = x.shape[-2:]
        for task, (op, solvers, sigma255) in tasks(
            h, w, args.box, args.random, (args.strokes, args.stroke_width)
        ).items():
            if task not in args.tasks.split(","):
                continue
            if task == "colorize" and bool((x[:, 0] == x[:, 1]).all()):
                continue  # a grey photo: nothing to colorize
            plan = solver_plan(task, solvers, args.solvers, args.samples)
            y = op.measure(x.double(), torch.Generator().manual_seed(0)).float()
            for how, k in plan.items():
                t0 = time.time()
                est, first, std, stated, replay = run_solver(model, op, y, how, k, args)
                seconds = time.time() - t0 - (replay["seconds"] if replay else 0)
                solver, warm = split_spec(how, args.start_sigma)
                label = f"diffvision {solver}" + (f" from classical at {warm}" if warm else "")
                if first is None:
                    record(name, task, label, est, x, seconds)
                else:  # one sample, and the mean of all (seconds: per sample, and for all)
                    record(name, task, label, first, x, seconds / k)
                    label_k = f"{label}, mean of {k}"
                    record(name, task, label_k, est, x, seconds, std, k, replay, stated)
            if any(split_spec(how)[1] for how in plan):  # the warm start alone
                t0 = time.time()
                est = classical_start(op, y, args.fill)
                record(name, task, start_label(op, args.fill), est, x, time.time() - t0)
            for label, baseline in classical_baselines(task, y, op, sigma255).items():
                t0 = time.time()
                est = baseline()
                record(name, task, label, est, x, time.time() - t0)
    result = {
        **run_header("restoration"),
        "set": args.set,
        "crop": args.crop,
        "steps": args.steps,
        "overlap": args.overlap,
        "tile_batch": args.tile_batch,
        "box": args.box,
        "random": args.random,
        "strokes": [args.strokes, args.stroke_width] if args.strokes else None,
        "fill": args.fill,
        "seed": args.seed,
        "device": str(args.device),
        "bf16": args.bf16,
        "gpu": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else None,
        "model": {
            "training": config.get("training"),
            "data": config.get("data"),
            "hardware": config.get("hardware"),
        },
        "seconds": round(time.time() - start_all, 1),
        "rows": rows,
        "goals": goals(rows),
    }
    save_result(args.out, "restoration", result, markdown(result))


def _mean_by(rows, key):
    out = {}
    for r in rows:
        out.setdefault((r["task"], r["method"]), []).append(r[key])
    return {k: float(np.mean(v)) for k, v in out.items()}


def goals(rows) -> dict:
    """Per task: the best diffvision method and the best classical baseline by mean PSNR, and
    the per-photo PSNR differences between those two. "met": better on every photo (a higher
    mean alone can be one photo's luck: with four photos, a sign test's p = 1/16 when all four
    agree). Classical starts ("start: ...") are neither; where the best method started from one,
    "over_start" holds its per-photo gain over that start alone."""
    mean_psnr = _mean_by(rows, "psnr")
    out = {}
    for task in ("denoise", "inpaint", "superres"):
        ours = {m: v for (t, m), v in mean_psnr.items() if t == task and m.startswith("diffvision")}
        starts = [m for (t, m) in mean_psnr if t == task and m.startswith("start:")]
        theirs = {
            m: v
            for (t, m), v in mean_psnr.items()
            if t == task and m not in ours and m not in starts
        }
        if ours and theirs:
            a, b = max(ours, key=ours.get), max(theirs, key=theirs.get)
            by = {(r["photo"], r["method"]): r["psnr"] for r in rows if r["task"] == task}
            photos = sorted({p for p, _ in by})
            out[task] = {
                "best_ours": ours[a],
                "best_ours_method": a,
                "best_classical": theirs[b],
                "best_classical_method": b,
                "per_photo_gain": {p: by[p, a] - by[p, b] for p in photos},
                "met": all(by[p, a] > by[p, b] for p in photos),
            }
            if starts and " from classical" in a:
                out[task]["start_method"] = starts[0]
                out[task]["over_start"] = {p: by[p, a] - by[p, starts[0]] for p in photos}
    return out


def _training_extras(training: dict) -> str:
    """ ", cosine lr, flips, bf16" for the settings that differ from the trainer's defaults."""
    extras = [f"{training['lr_schedule']} lr"] if training.get("lr_schedule") == "cosine" else []
    extras += ["flips"] if training.get("hflip") else []
    extras += ["bf16 autocast"] if training.get("bf16") else []
    return "".join(f", {e}" for e in extras)


def _trained_on(result: dict) -> str:
    """Where the prior was trained, from its config's hardware record (older models have none;
    those in this repository's results were all trained on the benchmark's own CPU)."""
    hw = result["model"].get("hardware")
    if not hw:
        return "trained on this CPU"
    where = f"{hw['name']} GPU" if hw["device"] == "cuda" else f"CPU ({hw['name']})"
    if hw.get("native_bf16") is not None:  # recorded since 2026-12-05
        where += f" {'with' if hw['native_bf16'] else 'without'} native bf16"
    return f"trained on {where}, {hw['processes']} process(es)"


def _uncertainty_lines(rows) -> list[str]:
    """Markdown table of the rows' uncertainty calibration, averaged over the photos: the std map
    as drawn, and where there is a replay, scaled by its factor."""
    rated = [r for r in rows if "uncertainty" in r]
    if not rated:
        return []
    lines = [
        "",
        "Uncertainty of the sample means (values the measurement leaves uncertain; a calibrated "
        "posterior would give the bracketed values: for K samples a Student-t's; for inpainting "
        "from a classical fill, whose std adds the fill's own error as `start_error_std` "
        "estimates it (for every hole the part the start keeps on 2026-12-04 and 05; since "
        "then only for scattered holes, the whole error for boxes and strokes), the mixed "
        "reference of "
        "`uncertainty_calibration(..., stated=)`; older result files: a Gaussian's). Scaled by "
        "replay: the std map times the factor that "
        "`replay_factor` finds by solving again one measurement down, with y as the truth "
        "(deblurring: y pooled by `replay_truth`'s default, 4 for this blur, and the blur left "
        "in it undone; denoising: y plus more noise, against y less that noise; noise-free "
        "inpainting from pure noise: y with copies of the hole hidden too, against y on "
        "them; `replay_problem`; "
        "`bench/results/replay_scale.md`); factor and seconds: means over the photos:",
        "",
        "| task | method | errors within 2 std | RMS error / RMS std | scaled by replay: within "
        "2 std | RMS error / RMS std | factor | replay s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cells(u: list[dict]) -> str:
        mean = {key: float(np.mean([v[key] for v in u])) for key in u[0]}
        return (
            f"{mean['within_2std']:.1%} ({mean['within_2std_calibrated']:.1%}) | "
            f"{mean['rms_error_over_std']:.2f} ({mean['rms_error_over_std_calibrated']:.2f})"
        )

    for task, method in dict.fromkeys((r["task"], r["method"]) for r in rated):
        group = [r for r in rated if (r["task"], r["method"]) == (task, method)]
        replayed = "- | - | - | -"
        if all("replay" in r for r in group):
            factor = np.mean([r["replay"]["factor"] for r in group])
            seconds = np.mean([r["replay"]["seconds"] for r in group])
            replayed = (
                f"{cells([r['uncertainty_replay'] for r in group])} | {factor:.2f} | {seconds:.1f}"
            )
        lines.append(
            f"| {task} | {method} | {cells([r['uncertainty'] for r in group])} | {replayed} |"
        )
    return lines


def markdown(result: dict) -> str:
    rows = result["rows"]
    p, s, t = _mean_by(rows, "psnr"), _mean_by(rows, "ssim"), _mean_by(rows, "seconds")
    photos = sorted({r["photo"] for r in rows})
    training = result["model"].get("training") or {}
    data = result["model"].get("data") or {}
    size, data_name = data.get("size", "?"), data.get("name", "photos")
    lines = [
        f"# Restoration on {result.get('set', 'held-out')} photos",
        "",
        f"`{result['command']}` on {machine_words({'device': 'cpu'} | result)}, "
        f"{result['date']}; {result['seconds']} s in all.",
        f"Model: `{data_name}` {size} x {size} RGB patches, {training.get('steps')} steps, batch "
        f"{training.get('batch')}{_training_extras(training)} ({_trained_on(result)}). "
        f"Photos: {', '.join(photos)} "
        f"({'central crops' if result.get('crop') else 'whole, tiled'}); PSNR / SSIM averaged "
        "over them; seconds per image (for one sample where a mean of several is listed too)."
        + (
            f" Inpainting hole: a central box of side {result['box']} px."
            if result.get("box")
            else ""
        )
        + (
            f" Inpainting hole: {result['random']:.0%} of the pixels, missing at random."
            if result.get("random")
            else ""
        )
        + (
            " Inpainting hole: {} random strokes {} px wide.".format(*result["strokes"])
            if result.get("strokes")
            else ""
        )
        + (
            f" Inpainting's warm starts: the {result['fill']} fill."
            if result.get("fill", "biharmonic") != "biharmonic"
            else ""
        ),
        "",
        "| task | method | PSNR (dB) | SSIM | s / image |",
        "|---|---|---|---|---|",
    ]
    for (task, method), value in p.items():
        lines.append(
            f"| {task} | {method} | {value:.2f} | {s[(task, method)]:.3f} | "
            f"{t[(task, method)]:.1f} |"
        )
    lines += _uncertainty_lines(rows)
    lines += [
        "",
        "Goals (best diffvision solver vs best classical baseline by mean PSNR; met when better "
        "on every photo):",
        "",
    ]
    for task, g in result["goals"].items():
        gains = g["per_photo_gain"]
        per_photo = ", ".join(f"{p} {d:+.2f}" for p, d in gains.items())
        better = sum(d > 0 for d in gains.values())
        lines.append(
            f"- {task}: {g['best_ours']:.2f} vs {g['best_classical']:.2f} dB, "
            f"{'met' if g['met'] else 'NOT met'}: better on {better} of {len(gains)} photos "
            f"({g['best_ours_method']} vs {g['best_classical_method']}; {per_photo})"
        )
        if "over_start" in g:
            over = g["over_start"]
            lines.append(
                f"  - what the prior adds to its start ({g['start_method']}): "
                f"{np.mean(list(over.values())):+.2f} dB on average, better on "
                f"{sum(d > 0 for d in over.values())} of {len(over)} photos ("
                + ", ".join(f"{p} {d:+.2f}" for p, d in over.items())
                + ")"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
