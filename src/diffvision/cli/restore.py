"""``diffvision restore TASK MODEL INPUT --out OUT``: denoise, inpaint, super-resolve, deblur or
colorize an image with a trained unconditional model (whole images by overlapping tiles)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from ..io.images import STACK_FILES, frames_folder
from .common import (
    UsageError,
    _finite,
    _formatter,
    _positive,
    add_bf16_inference,
    add_quiet,
    add_unconditional,
    counted,
    fast_inference,
    given_names,
    image_file_or_folder,
    seed,
    step_bar,
    unconditional_kind,
    unconditional_model,
    white_level,
)
from .record import recorded_prior
from .restore_folder import (
    TASK_OPTIONS,
    Input,
    kernel_file,
    mask_file,
    mask_folder,
    masks_by_name,
    restore_folder,
    restore_into_stack,
    std_map_path,
)

TASKS = ("denoise", "inpaint", "superres", "deblur", "colorize")
#: Output files that hold 16 bits per channel: a 16-bit input's result is written at that depth.
DEEP_FILES = (".png", ".tif", ".tiff")


def default_solver(task: str, sigma: float) -> str:
    """mmse for denoising; ddnm for a noise-free measurement; repaint for a noisy one, where
    ddnm's DDNM+ drifts towards y at the default 50 steps (bench/results/restoration_noisy.md,
    restoration_deblur_steps40.md)."""
    if task == "denoise":
        return "mmse"
    return "repaint" if sigma > 0 else "ddnm"


def default_resample(task: str, sigma: float) -> int:
    """RePaint's passes over each stretch of 10 steps: 10 for noise-free inpainting (RePaint's
    setting), 2 for noisy inpainting (50% random pixels, sigma 10: +1.5 dB over one pass on every
    held-out photo, bench/results/restoration_noisy.md), 1 for the other measurements, where
    resampling did not help on the exact Gaussian prior."""
    if task != "inpaint":
        return 1
    return 2 if sigma > 0 else 10


def add_parser(sub) -> None:
    r = sub.add_parser(
        "restore",
        help="restore an image (denoise, inpaint, superres, deblur, colorize) with a model",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            INPUT is the degraded image (noisy, with a hole, small, blurred or grey); with
            --simulate it is a clean image that is degraded first (and PSNR is reported). A
            grey INPUT restored by a colour model comes out grey (the mean of the model's
            channels), and a colour one restored by a greyscale model as its grey.

            examples:
              diffvision restore denoise runs/photos/model noisy.png --sigma 25 --out clean.png
              diffvision restore denoise runs/photos/model noisy.png --sigma auto --out clean.png
              diffvision restore inpaint runs/photos/model photo.png --box 40,40,64,64 \\
                  --samples 8 --out filled.png --side-by-side compare.png
              diffvision restore superres runs/photos/model small.png --factor 4 --out big.png
              diffvision restore deblur runs/photos/model blur.png --kernel gauss:2 --sigma 2 \\
                  --out sharp.png
              diffvision restore colorize runs/photos/model grey.png --out colour.png"""),
    )
    r.add_argument("task", choices=TASKS, help="what to undo")
    r.add_argument(
        "model", help="model folder (an unconditional model, or a class model: see --unconditional)"
    )
    r.add_argument(
        "input",
        help="image file, or a folder of them (searched recursively); a TIFF stack or an "
        "animation with --out a folder or a .tif (or in a folder INPUT) has each frame restored",
    )
    r.add_argument(
        "--out",
        required=True,
        type=image_file_or_folder,
        help="output image (.png; .jpg, .tif, ...; 16 bits per channel for a 16-bit input to .png "
        "or .tif), or for a folder INPUT a folder (each result under the input's name) or a "
        ".tif file (every result, in that order, into one TIFF stack); for a "
        "stack INPUT, a folder restores every frame (STEM_000.tif, or .png for an animation), "
        "a .tif file every frame into one TIFF stack (its std maps into STEM_std.tif), another "
        "file the first",
    )
    r.add_argument(
        "--white-level",
        type=white_level,
        help="the value of white in a 16-bit input, e.g. 4095 for a 12-bit camera's (default: the "
        "one the model was trained with, else 65535)",
    )
    r.add_argument(
        "--sigma",
        type=_sigma,
        default=0.0,
        help="noise std on the 0-255 scale (of the white level for 16-bit inputs), or auto: "
        "estimated from each input image (the median of its finest wavelet coefficients where "
        "its texture is weak, Donoho & Johnstone 1994, Liu et al. 2013; for inpaint, of its "
        "observed pixels)",
    )
    r.add_argument(
        "--mask",
        help="inpaint: mask image (white = observed, black = hole; a stack of as many frames as "
        "a stack INPUT: one per frame); for a folder INPUT, a folder of masks named as the "
        "images (same sub-folders, any image type); or `alpha`: the input's transparent "
        "pixels (erased in an editor) are the hole",
    )
    r.add_argument("--box", help="inpaint: hole x,y,w,h in pixels")
    r.add_argument("--random", type=_finite, help="inpaint: fraction of pixels missing")
    r.add_argument(
        "--strokes", type=_positive(int), help="inpaint: this many random strokes (scratches)"
    )
    r.add_argument(
        "--stroke-width", type=_positive(int), default=3, help="inpaint: strokes' width (px)"
    )
    r.add_argument("--factor", type=_positive(int), default=4, help="superres: scale factor")
    r.add_argument("--method", default="bicubic", help="superres: bicubic | pool")
    r.add_argument(
        "--kernel",
        default="gauss:2",
        help="deblur: gauss:STD (pixels) | motion:LENGTH:ANGLE (pixels, degrees) | a kernel "
        "file: a measured point-spread function, k x k with k odd, as a grey image (8- or "
        "16-bit, or floating point) or a 2-D .npy array; normalised to sum 1",
    )
    r.add_argument(
        "--solver",
        help="mmse | posterior | ddnm | dps | repaint | sdedit (default: mmse for denoise, "
        "repaint with --sigma > 0, else ddnm)",
    )
    r.add_argument("--steps", type=_positive(int), default=50, help="sampler steps")
    r.add_argument(
        "--resample",
        type=_positive(int),
        help="repaint: passes over each stretch of 10 steps (RePaint's resampling; default 10 "
        "for noise-free inpainting, 2 for noisy inpainting, 1 otherwise)",
    )
    r.add_argument(
        "--start",
        choices=("auto", "noise", "classical"),
        default="auto",
        help="ddnm, dps, repaint: from pure noise, or from a classical restoration (a fill of "
        "the hole, see --fill; bicubic upscaling; Wiener deconvolution) noised to "
        "--start-sigma; auto: classical for inpaint",
    )
    r.add_argument(
        "--fill",
        default="biharmonic",
        help="inpaint: the classical fill to start from: biharmonic, navier_stokes, telea, or "
        "blend (of those three, weighted by how well each predicts copies of the hole on "
        "observed pixels: better on most photos, much worse where the hole is unlike its "
        "surroundings)",
    )
    r.add_argument(
        "--start-sigma",
        type=_positive(float),
        help="noise std (0-255 scale) added to the classical start (default: the library's "
        "START_SIGMA, 0.3 in the model's [-1, 1] units, i.e. 38.25)",
    )
    r.add_argument(
        "--samples",
        type=_positive(int),
        default=1,
        help="K > 1: mean and std map (superres, deblur: the map scaled by a replay of the "
        "solver one measurement down; denoise: by a replay on y with its noise split in two; "
        "inpaint from the fill: plus the fill's error (for scattered holes the part the "
        "start keeps, and without noise the map scaled by a replay); inpaint from noise: "
        "scaled by a replay with copies of the hole hidden in y)",
    )
    r.add_argument("--tile", type=_positive(int), help="tile size (default: the model's size)")
    r.add_argument(
        "--overlap",
        type=int,
        help="tile overlap in pixels (default tile / 4; less: faster, a little lower PSNR)",
    )
    r.add_argument(
        "--batch",
        type=_positive(int),
        default=128,
        help="tiles per network call (on the CPU 64-256 run within 5%% of 128: "
        "bench/results/tile_batch.md)",
    )
    r.add_argument("--seed", type=seed, default=0, help="seed of the noise (simulated y, sampling)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_bf16_inference(r)
    add_quiet(r)
    add_unconditional(r, "the prior")
    r.add_argument("--simulate", action="store_true", help="INPUT is clean: degrade it first")
    r.add_argument(
        "--side-by-side",
        type=image_file_or_folder,
        help="also write input | result | uncertainty as one image (a folder where --out is one, "
        "a TIFF stack where --out is one)",
    )


#: ``--sigma auto``: the noise level estimated from each input (``restore.estimate_sigma``).
AUTO = "auto"


def _sigma(text: str) -> float | str:
    """``--sigma``: a finite number, or :data:`AUTO`."""
    return AUTO if text == AUTO else _finite(text)


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise UsageError(f"{what}: expected {count} comma-separated numbers, got {text!r}")
    return values


def _kernel(text: str, clean_shape=None):
    """The blur kernel ``--kernel TEXT`` names, for an image of ``clean_shape`` (H, W): refused in
    one line where TEXT is not of its forms, or before it is built where it is larger than the
    image (``gauss:1e6`` would ask for petabytes). With no ``clean_shape``, TEXT is only
    checked (its kernel is built at most 3 px wide; a kernel file is read whole). A kernel
    file (:func:`kernel_file`) is a measured PSF, :func:`~diffvision.io.images.read_kernel`."""
    from ..io.images import read_kernel
    from ..restore import gaussian_kernel, motion_kernel
    from ..restore.operators import check_odd_size

    def fits(size):
        if clean_shape is None:
            check_odd_size(size)
            return min(size, 3)
        if size > min(clean_shape):
            h, w = clean_shape
            raise ValueError(f"the kernel ({size} px) is larger than the image ({w} x {h})")
        return size

    kind, _, rest = text.partition(":")
    kernel = None
    try:
        if kernel_file(text) is not None:  # a measured PSF
            kernel = read_kernel(text)
            if kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:  # 2-D, read so
                h, w = kernel.shape
                raise ValueError(f"it is {w} x {h} px: a kernel is k x k with k odd (crop it "
                                 "around its centre)")  # fmt: skip
            fits(kernel.shape[0])
            if not float(kernel.sum()) > 0:  # what Deblur normalises by
                raise ValueError("its values must have a positive sum")
        elif kind == "gauss":
            std = _kernel_number(rest or "2", float, "STD")
            kernel = gaussian_kernel(fits(2 * int(3 * std) + 1), std)
        elif kind == "motion":
            length, _, angle = rest.partition(":")
            size = _kernel_number(length or "9", int, "LENGTH")
            angle = _kernel_number(angle or "0", float, "ANGLE")
            kernel = motion_kernel(fits(size + (size % 2 == 0)), angle)
    except (ValueError, OverflowError) as err:  # OverflowError: int(3 * inf)
        said = f"--kernel: {err}" if text in str(err) else f"--kernel {text!r}: {err}"  # once
        raise UsageError(said) from None
    if kernel is None:
        raise UsageError(
            f"--kernel must be gauss:STD, motion:LENGTH:ANGLE or a kernel file (an image or "
            f".npy), got {text!r}"
        )
    if kernel.numel() == 1:  # gauss:STD below 1/3 or motion:0 and motion:1 round to one pixel
        raise UsageError(f"--kernel {text!r} is one pixel, no blur: use restore denoise")
    return kernel


def _note_psf(text: str, kernel) -> None:
    """A note where a kernel file (a measured PSF) has its centre of mass more than half a
    pixel from its middle pixel, which deblurring takes as the point source's position: where
    the PSF was cropped off-centre, the result comes out shifted (``restore.kernel_offset``)."""
    from ..restore import kernel_offset

    across, down = kernel_offset(kernel)
    if math.hypot(across, down) > 0.5:
        print(f"note: the centre of mass of --kernel {text} is {across:+.1f} px across and "
              f"{down:+.1f} px down from its middle pixel, which deblurring takes as the point "
              "source's position: if the PSF was cropped off-centre, the result comes out "
              f"shifted by {-across:+.1f} px across and {-down:+.1f} px down (crop it around "
              "its centre)")  # fmt: skip


def _kernel_number(text: str, convert, name: str):
    """``convert(text)``, or a ValueError that names the part of the kernel's form."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):  # NaN was "cannot convert float NaN to int"
        kind = "a whole number of pixels" if convert is int else "a finite number"
        raise ValueError(f"{name} must be {kind}, not {text!r}") from None
    return value


def _operator(args, clean_shape, sigma: float | None = None):
    """The operator for the task; ``clean_shape`` (H, W) of the restored image; ``sigma``: the
    noise level on the 0-255 scale (default ``--sigma``; given for ``--sigma auto``)."""
    import torch

    from .. import restore as R
    from ..io.images import read_alpha, read_image

    sigma = (args.sigma if sigma is None else sigma) / 127.5  # checked by _check_settings
    h, w = clean_shape
    if args.task == "denoise":
        return R.Denoise(sigma)
    if args.task == "inpaint":
        if args.mask == "alpha":  # observed where fully opaque: soft eraser edges are hole too
            mask = read_alpha(args.input, getattr(args, "frame", 0)) == 1  # its size, upright
            mask = mask.float()
        elif args.mask:
            frame = getattr(args, "frame", 0) if getattr(args, "mask_per_frame", False) else 0
            mask = (read_image(args.mask, 1, frame=frame)[0, 0] > 0).float()
            if mask.shape != (h, w):
                size = f"{mask.shape[1]} x {mask.shape[0]}"
                raise UsageError(f"the mask {args.mask} is {size} px and the image {w} x {h}: make "
                                 "them one size")  # fmt: skip
        elif args.box:
            mask = R.box_mask(h, w, _box(args.box))
        elif args.strokes:
            gen = torch.Generator().manual_seed(args.seed)
            mask = R.stroke_mask(h, w, args.strokes, args.stroke_width, generator=gen)
        else:
            mask = R.random_mask(h, w, args.random, torch.Generator().manual_seed(args.seed))
        if bool(mask.all()):
            raise UsageError(
                "the mask has no hole (0, black, marks a missing pixel): nothing to inpaint"
            )
        return R.Inpaint(mask, sigma)
    if args.task == "superres":
        return R.SuperResolution(args.factor, args.method, sigma)
    if args.task == "deblur":
        return R.Deblur(_kernel(args.kernel, clean_shape), sigma)
    return R.Colorize(sigma)


def _box(text: str) -> tuple[int, int, int, int]:
    """``--box x,y,w,h`` as four whole numbers of pixels; UsageError otherwise."""
    box = _numbers(text, 4, "--box")
    if not all(math.isfinite(v) and v == int(v) for v in box):  # int(inf) would raise
        raise UsageError(f"--box is x,y,w,h in whole pixels, not {text!r}")
    return tuple(int(v) for v in box)


def _start(args, solver: str) -> str:
    """Where ``solver`` starts: "noise" or "classical" (``--start auto``: a classical fill for
    inpainting with a solver that takes a warm start)."""
    from ..restore.solvers import WARM_SOLVERS

    if args.start != "auto":
        return args.start
    return "classical" if args.task == "inpaint" and solver in WARM_SOLVERS else "noise"


def _check_mask_file(path: Path, frames: int = 1) -> bool:
    """Refuse (UsageError) a ``--mask`` file that is missing or no image, from its header.
    Returns whether its frames are those of a stack of ``frames`` frames, one mask each
    (``frames`` > 1: every frame of a stack INPUT restored); where it holds several frames
    otherwise, says that the first is the mask."""
    from ..data.transforms import UNREADABLE_IMAGE, open_image, unreadable

    if not path.is_file():
        raise UsageError(f"--mask: image not found: {path}")
    try:
        with open_image(path) as image:
            masks = getattr(image, "n_frames", 1)
    except UNREADABLE_IMAGE as err:
        raise UsageError(f"--mask: {unreadable(path, err)}") from None
    if masks > 1 and masks == frames:
        print(f"note: --mask {path} holds {masks} frames, as many as the input: each frame its "
              "own mask")  # fmt: skip
        return True
    if masks > 1:
        print(f"note: --mask {path} holds {masks} frames: the first is the mask of every image"
              + (f" (the input has {frames})" if frames > 1 else ""))  # fmt: skip
    return False


def _tiling(args, size: int) -> tuple[int, int]:
    """The tile and its overlap in pixels: ``--tile`` (default the model's ``size``) and
    ``--overlap`` (default a quarter of the tile)."""
    tile = args.tile or size
    return tile, args.overlap if args.overlap is not None else tile // 4


def _check_settings(args, size: int, frames: int = 1) -> None:
    """Refuse (UsageError) options that no image could make work, once and before any work
    (for a folder or a stack they would fail on every image): a negative or missing --sigma,
    the inpainting mask's options, the form of --kernel, --overlap against the tile (the
    model's ``size`` by default), options of another solver, mmse with --samples. ``frames``:
    of the stack INPUT whose every frame is restored (1 otherwise); a --mask of as many frames
    gives each its own (``args.mask_per_frame``)."""
    from ..restore.solvers import WARM_SOLVERS, check_settings
    from ..restore.starts import FILLS

    if args.sigma == AUTO and args.simulate:
        raise UsageError("--simulate adds noise of std --sigma: give it as a number")
    if args.sigma != AUTO and args.sigma < 0:
        raise UsageError(f"--sigma is a noise std on the 0-255 scale, >= 0, not {args.sigma:g}")
    _check_unused(args)
    if args.task == "denoise" and args.sigma == 0:
        raise UsageError("denoise needs a --sigma above 0 (the noise level on the 0-255 scale)")
    if args.task == "inpaint":
        given = [v is not None for v in (args.mask, args.box, args.random, args.strokes)]
        if sum(given) != 1:
            raise UsageError("inpaint needs exactly one of --mask, --box, --random, --strokes")
        if args.box:
            _box(args.box)
        if mask_folder(args) is not None:
            if not Path(args.input).is_dir():  # each image's mask, by its name in the folder
                raise UsageError(
                    f"--mask {args.mask} is a folder: a folder of masks is for a folder INPUT "
                    "(named as its images); give one mask file"
                )
            args.mask_per_frame = False
        elif mask_file(args) is not None:
            args.mask_per_frame = _check_mask_file(mask_file(args), frames)
        if args.random is not None and not 0 < args.random < 1:
            raise UsageError(
                f"--random must be in (0, 1), the fraction missing, not {args.random:g}"
            )
    if args.task == "superres" and args.factor < 2:
        raise UsageError("--factor 1 is no upscaling: give 2 or more (or restore denoise)")
    if args.task == "deblur":
        kernel = _kernel(args.kernel)
        if kernel_file(args.kernel) is not None:
            _note_psf(args.kernel, kernel)
    tile, overlap = _tiling(args, size)
    if not 0 <= overlap < tile:
        raise UsageError("--overlap must be in [0, --tile)")
    if args.resample is not None and args.solver != "repaint":
        raise UsageError("--resample works with the repaint solver only")
    if _start(args, args.solver) == "classical":
        if args.solver not in WARM_SOLVERS:
            raise UsageError(f"--start classical works with {', '.join(WARM_SOLVERS)}")
        if args.task == "inpaint" and args.fill not in FILLS:
            raise UsageError(f"--fill must be one of {', '.join(FILLS)}, not {args.fill!r}")
    try:
        check_settings(args.solver, args.steps, args.samples, {})
    except ValueError as err:
        raise UsageError(str(err)) from None


def _check_unused(args) -> None:
    """Refuse (UsageError) options given that the run would not use (they were ignored without a
    word): another task's (``restore denoise --mask m.png``), and those of the classical start
    (``--start-sigma``, ``--fill``) for a run that starts from noise."""

    def named(options) -> str:  # "--mask is" / "--factor and --method are", or ""
        found = given_names(args, options)
        return f"{' and '.join(found)} {'is' if len(found) == 1 else 'are'}" if found else ""

    for task, options in TASK_OPTIONS.items():
        said = named(options) if task != args.task else ""
        if said:
            raise UsageError(f"{said} for restore {task}, unused by {args.task}")
    said = named(("start_sigma", "fill")) if _start(args, args.solver) == "noise" else ""
    if said:
        raise UsageError(
            f"{said} for a classical start, unused by a run that starts from noise "
            f"({args.solver}, --start {args.start})"
        )


def _start_options(args, solver: str, operator, y) -> dict:
    """``start`` and ``start_sigma`` for the solver, or nothing (a start from pure noise); with
    ``--samples`` and an inpainting fill, ``start_std``: "estimate", the fill's error estimated
    on y (for a scattered hole the part a start at ``start_sigma`` keeps)."""
    from ..restore.operators import Inpaint
    from ..restore.solvers import START_SIGMA
    from ..restore.starts import NoCopiesError, warm_start

    if _start(args, solver) == "noise":  # the choice checked by _check_settings
        return {}
    inpaint = isinstance(operator, Inpaint)
    named = args.fill if inpaint else "classical"
    error = "estimate" if args.samples > 1 and inpaint else None
    sigma = START_SIGMA if args.start_sigma is None else args.start_sigma / 127.5
    try:
        start, std = warm_start(operator, y, named, error, sigma)
    except NoCopiesError as err:  # nothing to measure the fill's error on
        if named == "blend":  # the blend needs the copies too
            raise UsageError(f"--start classical: {err}") from None
        start, std = warm_start(operator, y, named)  # the map: the draws' spread only
    except ValueError as err:
        raise UsageError(f"--start classical: {err}") from None
    options = {"start": start, "start_sigma": sigma}
    if std is not None:
        options["start_std"] = std
    return options


def _replay(args, operator, y, options, run, tile, grey=False) -> tuple[float, str | None]:
    """With ``--samples``: the factor for the std map from replaying the solver one measurement
    down (:func:`~diffvision.restore.replay.replay_factor`; ``grey``: ``run`` restores the
    channels' mean), or 1 and why there is none."""
    import torch

    from ..restore.operators import Inpaint
    from ..restore.replay import NoReplayError, replay_factor, replay_thins
    from ..restore.starts import NoCopiesError

    if args.samples < 2:
        return 1.0, "one sample"
    inpaint = isinstance(operator, Inpaint)
    if "start_std" in options and not replay_thins(operator):  # a box, strokes: none
        return 1.0, "the fill's error is in the map"

    def again(op, measured):  # the same run; a warm start is made again, from the replay's y
        opts = dict(options)
        if "start" in options:
            opts["start"] = args.fill if inpaint else "classical"
        if "start_std" in options:  # the replay's fill's error, on the replay's y
            opts["start_std"] = "estimate"
        return run(op, measured, "replay", **opts)

    gen = torch.Generator().manual_seed(args.seed + 1)
    try:  # NoReplayError: before the replay runs (no replay for the task, or y too small)
        found = replay_factor(operator, y, again, args.samples, gen, min_size=tile, grey=grey)
        factor = float(found[0])
    except (NoReplayError, NoCopiesError) as err:  # NoCopiesError: no copies in the replay's y
        return 1.0, f"not recalibrated: {err}"
    if factor == 0:  # a small image: the truth's noise swamped the replay's error
        return 1.0, "not recalibrated: the replay's error was lost in its truth's noise"
    return factor, None


def _print_calibration(mean, std, clean, operator, k, stated) -> None:
    """With ``--simulate``: how well the std map of ``k`` draws predicts the errors
    (:func:`~diffvision.metrics.uncertainty_calibration`); for noisy inpainting separately in
    the hole and at the observed noisy pixels, two different kinds of uncertainty. ``stated``:
    the start's error std that the map adds to the draws' spread (in the hole), or None; the
    reference then lies between the K-sample one and a Gaussian's."""
    import torch

    from ..metrics import uncertainty_calibration
    from ..metrics.calibration import CERTAIN_STD

    if stated is not None:
        stated = stated.to(std).expand_as(std)
    everywhere = torch.ones_like(std, dtype=torch.bool)
    parts = {"": everywhere}
    if getattr(operator, "mask", None) is not None and operator.sigma > 0:
        seen = operator.mask.bool().expand_as(std)
        parts = {" in the hole": ~seen, " at the observed (noisy) pixels": seen}
    for where, part in parts.items():
        if not bool((std[part] > CERTAIN_STD).any()):
            continue
        known = None if stated is None else stated[part]  # 0 at the observed pixels
        c = uncertainty_calibration(mean[part], std[part], clean[part], k, known)
        print(
            f"uncertainty{where}: {c['within_2std']:.0%} of errors within 2 std "
            f"({c['within_2std_calibrated']:.0%} if calibrated), RMS error / RMS std "
            f"{c['rms_error_over_std']:.2f} ({c['rms_error_over_std_calibrated']:.2f})"
        )


def cmd_restore(args) -> int:
    from ..data.folder import find_images
    from ..data.transforms import frame_count
    from ..io import load, read_config
    from ..io.model_folder import sample_shape
    from ..train.distributed import resolve_device

    # The defaults, by name: a folder's record then holds what was used. --sigma auto counts
    # as noisy (its estimate is not 0 on a real image).
    level = 1.0 if args.sigma == AUTO else args.sigma / 127.5
    args.solver = args.solver or default_solver(args.task, level)
    if args.solver == "repaint" and args.resample is None:
        args.resample = default_resample(args.task, level)
    source = Path(args.input)
    if not source.exists():
        raise UsageError(f"image not found: {source}")
    outputs = [Path(p) for p in (args.out, args.side_by_side) if p]
    frames = 1 if source.is_dir() else frame_count(source)
    kinds = {_output_kind(p) for p in outputs}
    if source.is_dir() and kinds not in ({"folder"}, {"stack"}):
        raise UsageError("for a folder of inputs, --out and --side-by-side are folders, or both "
                         ".tif files (every image into one TIFF stack)")  # fmt: skip
    stack = frames > 1 and kinds == {"folder"}  # every frame restored, into a folder
    # every frame, or every image of the folder, restored into one TIFF stack
    joined = (frames > 1 or source.is_dir()) and kinds == {"stack"}
    if frames > 1 and len(kinds) > 1:
        raise UsageError(
            f"{source} holds {frames} frames: --out and --side-by-side are both folders (each "
            "frame restored into a file), both .tif files (each frame, into a TIFF stack) or both "
            "other image files (the first frame)"
        )
    if frames == 1 and not source.is_dir() and any(not p.suffix for p in outputs):
        raise UsageError("for one input image, --out and --side-by-side are image files")
    _check_apart(args, folders=(source.is_dir() and not joined) or stack, joined=joined)
    _check_inputs_kept(args, source, outputs, joined)
    files = find_images(source) if source.is_dir() else [source]
    if not files:
        raise UsageError(f"no images (.png, .jpg, .tif, ...) found under {source}")
    if args.white_level is not None and not any(_is_16_bit_file(f) for f in files):
        what = "holds none" if source.is_dir() else "is not one"
        raise UsageError(f"--white-level is for 16-bit inputs: {source} {what} (it would be "
                         "unused)")  # fmt: skip
    device = resolve_device(args.device)
    config = read_config(args.model)
    channels, _, size = sample_shape(config, args.model)
    if args.task == "colorize" and channels != 3:
        raise UsageError("colorize needs an RGB model")
    kind = None  # how a class model is made the unconditional prior
    if config["net"].get("num_classes", 0):
        kind = unconditional_kind(
            args.unconditional, config, args.model,
            "restoring (its prior is the unconditional model)",
        )  # fmt: skip
    elif args.unconditional != "auto":
        raise UsageError(f"--unconditional is for a class model: {args.model} is unconditional")
    args.unconditional = recorded_prior(kind)  # a folder's record holds the prior used
    _check_settings(args, size, frames if stack or joined else 1)  # once, before the model
    for target in (p for p in outputs if channels == 3 and _palette(p)):  # asked for: said
        print(f"note: {target} holds at most 256 colours: the result is quantized (.png keeps it)")
    prior = fast_inference(load(args.model, device=device), device, args.bf16)
    if kind is not None:
        prior = unconditional_model(prior, kind, args.model, device)
    white = args.white_level or config.get("data", {}).get("white_level") or 65535
    if not source.is_dir() and not stack and not joined:
        if frames > 1:  # said, not silently cut to its first frame
            print(
                f"note: {source} holds {frames} frames: the first is restored (to restore each, "
                "give --out a folder, or a .tif for a TIFF stack)"
            )
        _restore_file(args, prior, channels, size, white, device)
        return 0
    if source.is_dir():
        masks = {}  # each image's own mask, from a --mask folder
        if args.task == "inpaint" and mask_folder(args) is not None:
            masks = masks_by_name(mask_folder(args), source, files)
        inputs = [
            one for path in files
            for one in _inputs(path, path.relative_to(source), mask=masks.get(path))
        ]  # fmt: skip
    else:  # a stack, with a mask per frame where the --mask stack has as many
        inputs = _inputs(source, Path(source.name), frames)
        if getattr(args, "mask_per_frame", False):  # its frames counted by _check_settings
            inputs = [one._replace(mask=Path(args.mask), mask_frames=True) for one in inputs]
    fitted: set = set()  # the network's memory measured once per input shape

    def restore_one(one):
        return _restore_file(one, prior, channels, size, white, device, fitted)

    return (restore_into_stack if joined else restore_folder)(args, inputs, restore_one)


#: Output files of at most 256 colours: a result is not written in them unasked.
PALETTE_FILES = (".gif",)


def _inputs(
    path: Path, name: Path, frames: int | None = None, mask: Path | None = None
) -> list[Input]:
    """What restoring the file ``path`` into a folder restores: the file, as ``name`` (.png for
    a GIF: not in its 256 colours); or for a stack (of ``frames``, read from the file if not
    given) each frame, as ``STEM_000.tif``, ``STEM_001.tif``, ... beside ``name`` (.png for an
    animation's frames). ``mask``: its own mask file, whose frames are a stack's masks where it
    holds as many (else its first frame is the mask, and a note says so)."""
    from ..data.transforms import frame_count

    frames = frame_count(path) if frames is None else frames
    if frames == 1:
        return [Input(path, name.with_suffix(".png") if _palette(name) else name, mask=mask)]
    per_frame = False
    if mask is not None:
        masks = frame_count(mask)  # 1 for a file that is no image: its reader names it
        per_frame = masks == frames
        if masks > 1 and not per_frame:
            print(f"note: the mask {mask} holds {masks} frames and {path} {frames}: the first is "
                  "the mask of every frame")  # fmt: skip
    digits = max(3, len(str(frames - 1)))
    suffix = name.suffix if name.suffix.lower() in (".tif", ".tiff") else ".png"
    return [
        Input(path, name.with_name(f"{name.stem}_{k:0{digits}d}{suffix}"), k, mask, per_frame)
        for k in range(frames)
    ]


def _output_kind(path: Path) -> str:
    """What an output path of a stack INPUT makes of its frames: a "folder" (a file each), a
    "stack" (a .tif: one TIFF stack), or an "image" (any other file: the first frame)."""
    if not path.suffix:
        return "folder"
    return "stack" if path.suffix.lower() in STACK_FILES else "image"


def _check_inputs_kept(args, source: Path, outputs: list[Path], joined: bool = False) -> None:
    """Refuse (UsageError) outputs that would be written over the input, the ``--mask`` file or
    the ``--kernel`` file (a result, a side-by-side, or the std map beside a result file:
    restoring ``x_std.png`` with ``--out x.png --samples 2`` wrote the std map over the
    input), or into the input folder (where a rerun would take the results as inputs), and a
    ``--mask`` or ``--kernel`` file inside the input folder (restored as one of its images).
    ``joined``: the outputs are TIFF stacks, their std maps one too, their frames waiting in
    folders beside them."""
    written = list(outputs)
    if args.samples > 1 and outputs[0].suffix:
        written.append(std_map_path(outputs[0], joined))
    if joined:
        written += [frames_folder(p) for p in outputs]
    read = {source.resolve(): "the input"}
    folders = {source.resolve(): "the input folder"} if source.is_dir() else {}
    if mask_file(args) is not None:
        mask = mask_file(args).resolve()
        read[mask] = "the --mask file" if mask_folder(args) is None else "the --mask folder"
        if mask_folder(args) is not None and source.is_dir():  # its masks restored as images
            images = source.resolve()
            if mask == images or mask in images.parents or images in mask.parents:
                raise UsageError(f"--mask {args.mask} and the input folder {source} overlap: keep "
                                 "the masks apart from the images")  # fmt: skip
            folders[mask] = "the --mask folder"
    kernel = kernel_file(args.kernel) if args.task == "deblur" else None
    if kernel is not None:
        read[kernel.resolve()] = "the --kernel file"
    mask_given = mask_file(args) if args.task == "inpaint" else None  # a mask folder: above
    for option, file in (("--mask", mask_given), ("--kernel", kernel)):
        if source.is_dir() and file is not None and file.is_file():
            if source.resolve() in file.resolve().parents:  # found with the images, restored too
                raise UsageError(f"{option} {file} lies in the input folder {source}: it would "
                                 "be restored as one of its images; keep it apart")  # fmt: skip
    for target in written:
        where = target.resolve()
        if where in read:
            raise UsageError(f"{target} is {read[where]}: write the results elsewhere")
        for folder, what in folders.items():
            if folder in where.parents:
                raise UsageError(f"{target} is inside {what}: write the results elsewhere")


def _check_apart(args, folders: bool, joined: bool = False) -> None:
    """Refuse (UsageError) a ``--side-by-side`` that would be written over the result or its
    std map (one file; ``joined``: TIFF stacks, the map one too), or into the ``--out`` folder
    itself (the results' folder: its images' side-by-sides would be written over them)."""
    if not args.side_by_side:
        return
    side, out = Path(args.side_by_side).resolve(), Path(args.out).resolve()
    if folders and side == out:
        raise UsageError("--out and --side-by-side are one folder: give the side-by-sides another")
    if not folders and side in (out, std_map_path(out, joined) if args.samples > 1 else out):
        what = "the result" if side == out else "the result's std map"
        raise UsageError(f"--side-by-side {args.side_by_side} is where {what} goes: give another")


def _palette(path: Path) -> bool:
    """Whether ``path`` names a file of at most 256 colours (:data:`PALETTE_FILES`)."""
    return path.suffix.lower() in PALETTE_FILES


def _check_draws_fit(args, channels: int, h: int, w: int, device) -> None:
    """Refuse (ValueError) a restoration whose draws surely cannot fit in memory, before any is
    made. Every solver holds its ``--samples`` draws of the whole ``channels x h x w`` result
    together, in float32, with the denoiser's estimate of each and the measurement brought to
    that size: 2 K + 1 such images, a lower bound of what it holds (``superres --factor 1000``
    of a 128 px image would ask for 549 GiB at once)."""
    from ..memory import check_fits

    draws = f"{args.samples} draws" if args.samples > 1 else "one draw"
    advice = ["lower --samples"] if args.samples > 1 else []
    advice += ["lower --factor"] if args.task == "superres" else ["restore a smaller image"]
    what = f"the result ({channels} x {h} x {w}, {draws})"
    check_fits((2 * args.samples + 1) * channels * h * w * 4, device, what, " or ".join(advice))


def _check_tiles_fit(args, prior, operator, y, tile: int, device, fitted: set) -> None:
    """Refuse (ValueError) a restoration whose network calls surely cannot fit in memory: the
    most tiles (or whole images) that one call takes (:func:`~diffvision.restore.tiles.
    network_input_shape`), counted as ``sample``'s batch is; for ``dps``, whose gradient
    keeps the activations of at least one batch of tiles (of all only where they fit:
    :meth:`~diffvision.restore.tiles.TiledDenoiser.checkpoints`), with a vector-Jacobian
    product. ``fitted``: the shapes checked already in this run (of a folder's or a stack's
    images of one size, the first is measured: 2 of the 3 network calls of a small ``mmse``
    restoration)."""
    from ..restore.tiles import network_input_shape
    from ..samplers import check_likelihood_fits, check_sample_fits

    shape = network_input_shape(operator, y, tile=tile, batch=args.batch, n_samples=args.samples)
    if shape in fitted:
        return
    pieces = "tiles" if shape[-2:] == (tile, tile) else "images"
    what = f"the network on {shape[0]} {pieces} of {' x '.join(map(str, shape[1:]))} at once"
    advice = "lower --batch (tiles at a time)" + (" or --samples" if args.samples > 1 else "")
    check = check_likelihood_fits if args.solver == "dps" else check_sample_fits
    check(prior, shape, device=device, advice=advice, what=what)
    fitted.add(shape)


def _is_16_bit_file(path: Path) -> bool:
    """Whether an input file holds 16 bits per channel (its first frame, from its header); an
    unreadable one counts as not (it is named when it is restored)."""
    from ..data.transforms import UNREADABLE_IMAGE
    from ..io.images import is_16_bit

    try:
        return is_16_bit(path)
    except UNREADABLE_IMAGE:
        return False


#: How far (a factor) ``restore denoise --sigma`` may lie from the input's estimated noise
#: level before a note says so: the estimate came within 2.4% of the truth at sigma 10-50 on
#: the held-out photos, 7.1% at 5 and at most 35% above it at 2 (bench/results/noise_level.md;
#: the plain median it took until 2026-12-08: within 19% at 10-50, at most 85% above at 2).
SIGMA_FAR = 2.0


def _note_sigma_far(path, given: float, estimated: float) -> None:
    """A note where the input's noise level as estimated (``restore.estimate_sigma``, 0-255
    scale) is more than :data:`SIGMA_FAR` times the ``--sigma`` given, or less than 1 /
    SIGMA_FAR of it: a sigma given on another scale, or for another image."""
    if given / SIGMA_FAR <= estimated <= given * SIGMA_FAR:
        return
    far = f"over {SIGMA_FAR:g} times" if estimated > given else f"under 1/{SIGMA_FAR:g} of"
    print(f"note: {path} shows noise of about sigma {estimated:.1f} (what --sigma auto would "
          f"take), {far} --sigma {given:g} (the 0-255 scale): denoised at {given:g} as "
          "asked")  # fmt: skip


#: A grey input restored by an RGB model is its grey in all three channels, noise and all: one
#: noise of std sigma, not three independent ones. Its likelihood under the model's independent
#: noise of std s per channel is exp(-3 (y - x_grey)^2 / 2 s^2 - |x_colour|^2 / 2 s^2) (x_grey
#: the channels' mean, x_colour the rest), which is the grey's own, exp(-(y - x_grey)^2 / 2
#: sigma^2), at s = sqrt(3) sigma, times a factor that favours images of little colour, as a
#: grey photo is. At sigma itself the grey's noise was taken as 3x too weak in variance:
#: bench/results/grey_input.md. The result is the channels' mean (the posterior mean of the
#: grey), written as a grey image, its std map the spread of the draws' channel means.
GREY_NOISE = math.sqrt(3)


def _grey(image) -> bool:
    """Whether ``image`` (``1 x 3 x H x W``) holds the same values in its three channels."""
    return bool((image == image[:, :1]).all())


def _restore_file(
    args, prior, channels: int, size: int, white: int, device, fitted: set | None = None
) -> dict:
    """Restore ``args.input`` into ``args.out`` (and ``args.side_by_side``) and report it;
    returns what a folder's record keeps of it: ``psnr``, the PSNR (dB) against the clean input
    with ``--simulate``, else None, and with ``--sigma auto`` the ``sigma`` estimated (0-255
    scale). ``fitted``: the network input shapes that this run checked already
    (:func:`_check_tiles_fit`)."""
    import torch

    from ..io.images import (
        is_16_bit,
        is_colour,
        is_transparent,
        read_image,
        save_16_bit,
        save_image,
    )
    from ..metrics import psnr
    from ..restore.noise_level import estimate_sigma
    from ..restore.replay import scattered
    from ..restore.solvers import sampler_steps
    from ..restore.tiles import solve_tiled

    frame = getattr(args, "frame", 0)  # of a stack, each restored by restore_folder
    image = read_image(args.input, channels, white, frame)
    if channels == 1 and is_colour(args.input, frame):  # said, not silently dropped
        print(f"note: {args.input} is in colour and the model is greyscale: restored as grey")
    if args.mask != "alpha" and is_transparent(args.input, frame):  # its colours were kept
        print(f"note: {args.input} has transparent pixels: the result is opaque (restore inpaint "
              "--mask alpha fills them)")  # fmt: skip
    gen = torch.Generator().manual_seed(args.seed)
    factor = args.factor if args.task == "superres" else 1
    grey = channels == 3 and args.task != "colorize" and _grey(image)  # written as grey
    estimated = None  # --sigma auto's noise level, on the 0-255 scale
    if args.simulate:
        clean = image
        h, w = clean.shape[-2:]
        if h % factor or w % factor:  # said: the result and its PSNR are of the part kept
            print(f"note: {args.input} ({w} x {h}) is cropped to {w - w % factor} x "
                  f"{h - h % factor}, a multiple of --factor {factor}")  # fmt: skip
            h, w = h - h % factor, w - w % factor
        clean = clean[..., :h, :w]
        _check_draws_fit(args, channels, h, w, device)
        operator = _operator(args, (h, w))
        y = operator.measure(clean.double(), gen).float()
    else:
        clean = None
        if args.task == "colorize":
            tint = float((image.amax(1) - image.amin(1)).max()) * 127.5  # in 8-bit levels
            if tint > 2.5:  # more than two levels (grey saved as RGB has 0): colours dropped
                print(f"note: {args.input} is in colour: its grey (the mean of its channels) "
                      "is coloured anew (--simulate scores that against its colours)")  # fmt: skip
            image = image.mean(1, keepdim=True)
        h, w = image.shape[-2] * factor, image.shape[-1] * factor
        _check_draws_fit(args, channels, h, w, device)
        if args.sigma == AUTO:  # from y: the image, or for inpaint its observed pixels
            observed = _operator(args, (h, w), 0.0).mask if args.task == "inpaint" else None
            try:
                estimated = float(estimate_sigma(image, observed)[0]) * 127.5
            except ValueError as err:  # no block observed whole
                raise UsageError(f"{args.input}: --sigma auto: {err}; give --sigma") from None
            if estimated == 0 and args.task == "denoise":
                raise UsageError(f"{args.input} shows no noise (--sigma auto estimates 0): "
                                 "nothing to denoise")  # fmt: skip
        elif args.task == "denoise":  # a sigma on another scale (0-1, say) is a common slip
            _note_sigma_far(args.input, args.sigma, float(estimate_sigma(image)[0]) * 127.5)
        level = estimated if estimated is not None else args.sigma
        if grey and level > 0:
            level *= GREY_NOISE  # one noise in the three channels
            print(f"note: {args.input} is grey and the model RGB: its noise, the same in each "
                  f"channel, is taken as sigma {level:.2f} per channel (sqrt(3) times its own), "
                  "whose channel mean has the grey's noise")  # fmt: skip
        operator = _operator(args, (h, w), level)
        y = image if args.task != "inpaint" else operator.forward(image)
    tile, overlap = _tiling(args, size)
    if min(h, w) < tile:
        what = f"the image ({w} x {h})"  # width x height, as the report says sizes
        if factor > 1 and not args.simulate:  # the size checked is the result's, not the input's
            what = f"the result ({w} x {h}, {factor}x the input's {w // factor} x {h // factor})"
        raise UsageError(f"{what} is smaller than a tile ({tile} px): --tile {min(h, w)} or "
                         f"less fits it (the model learnt {size} px patches)")  # fmt: skip
    solver = args.solver
    fitted = set() if fitted is None else fitted
    _check_tiles_fit(args, prior, operator, y, tile, device, fitted)  # before the classical start
    options = _start_options(args, solver, operator, y)  # classical starts: on the CPU
    if solver == "repaint":
        options["jump_n_sample"] = args.resample
    for name in ("start", "start_std"):
        if name in options:
            options[name] = options[name].to(device)

    def run(op, measured, what=args.task, **opts):
        total = sampler_steps(solver, args.steps, **opts)
        with torch.no_grad(), step_bar(total, what, args.quiet) as bar:
            result = solve_tiled(
                prior,
                op,
                measured.to(device),
                tile=tile,
                overlap=overlap,
                batch=args.batch,
                solver=solver,
                steps=args.steps,
                generator=gen,
                n_samples=args.samples,
                callback=bar.step,
                progress=None if total else bar.tiles,  # mmse: its one call's tiles
                **opts,
            )
        if not grey:
            return result
        return result.channel_mean() if args.samples > 1 else result.mean(1, keepdim=True)

    result = run(operator, y, **options)
    factor, why_not = _replay(args, operator, y, options, run, tile, grey)
    mean, std = (result.mean, result.std) if args.samples > 1 else (result, None)
    mean, std = mean.cpu(), None if std is None else std.cpu() * factor
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    deep = out.suffix.lower() in DEEP_FILES and is_16_bit(args.input, frame)
    if deep:  # 16 bits in, 16 bits out
        save_16_bit(out, mean[0], white)
    else:
        save_image(out, mean[0])
    how = "" if estimated is None else f", noise sigma {estimated:.2f} estimated"
    if "start" in options:  # its noise level on the 0-255 scale, as --start-sigma takes it
        how += f", from a classical start at sigma {options['start_sigma'] * 127.5:g}"
    if solver == "repaint":
        how += f", --resample {options['jump_n_sample']}"
    if args.bf16:
        how += ", bf16"
    if grey:
        how += ", grey: the mean of the model's channels"
    steps = "one denoiser call" if solver == "mmse" else counted(args.steps, "step")
    print(f"wrote {out} ({solver}, {steps}{how}, {w} x {h})")
    if std is not None:
        std_path = std_map_path(out)
        save_image(std_path, (std[0] / std.max().clamp(min=1e-8)) * 2 - 1)
        print(
            f"uncertainty (per-pixel std, scaled to its maximum, {float(std.max()) * 127.5:.1f} "
            f"on the 0-255 scale): {std_path}"
        )
        if "start_std" in options:
            if why_not is None:  # a scattered hole's warm start, replayed
                scaled = f"; all times {factor:.2f}, from a replay on y with copies of the hole "
                scaled += "hidden too"
            else:
                scaled = "" if why_not == "the fill's error is in the map" else f"; {why_not}"
            part = (
                "the part of it that the warm start keeps" if scattered(operator) else "all of it"
            )
            print(
                "  (the draws' spread plus the classical fill's own error, measured by filling "
                f"copies of the hole placed in the observed image: {part}{scaled})"
            )
        elif why_not is None:
            replayed = {
                "deblur": "on y, measured again, with y pooled and sharpened as the truth",
                "denoise": "on y plus more noise, with y less that noise (scaled) as the truth",
                "inpaint": "on y with copies of the hole hidden too, y the truth there",
            }.get(operator.name, "on y, measured again, with y as the truth")
            print(
                f"  (the draws' spread times {factor:.2f}: the solver, replayed {replayed}, "
                "erred by that much more than its spread)"
            )
        elif "start" in options:  # the draws share the start's coarse content and its errors
            print(
                "  (the draws differ only where the start's noise hid it: the start's own coarse "
                f"errors are not in this map; --start noise gives the prior's full spread; "
                f"{why_not})"
            )
        else:
            print(f"  (the draws' spread; {why_not})")
    score = None
    if clean is not None:
        clean = clean.mean(1, keepdim=True) if grey else clean
        score = float(torch.as_tensor(psnr(mean.clamp(-1, 1), clean)).mean())
        print(f"PSNR {score:.2f} dB against the clean input")
        if std is not None:
            stated = result.stated  # the fill's error added to the draws' spread
            stated = None if stated is None else stated.cpu() * factor
            _print_calibration(mean, std, clean, operator, args.samples, stated)
    if args.side_by_side:
        shown = operator.pinv(y)  # the measurement, brought to the output's size
        shown = shown.mean(1, keepdim=True) if grey else shown
        panels = [shown.expand(-1, mean.shape[1], -1, -1), mean]
        if std is not None:
            panels.append((std / std.max().clamp(min=1e-8) * 2 - 1).expand_as(mean))
        strip = torch.cat([p[0].clamp(-1, 1) for p in panels], dim=-1)
        Path(args.side_by_side).parent.mkdir(parents=True, exist_ok=True)
        save_image(args.side_by_side, strip)
        print(f"side by side: {args.side_by_side}")
    return {"psnr": score} | ({} if estimated is None else {"sigma": round(estimated, 4)})
