"""``diffvision sample``: draw images from a model folder into a grid, a folder or a TIFF stack."""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
from pathlib import Path

from .common import (
    UsageError,
    _formatter,
    _positive,
    add_bf16_inference,
    add_guidance,
    add_quiet,
    add_unconditional,
    class_index,
    counted,
    fast_inference,
    grid_or_folder,
    require_null_class,
    sampler_name,
    seed,
    step_bar,
    unconditional_kind,
    unconditional_model,
)


def add_parser(sub) -> None:
    """Add the ``sample`` subcommand and its options to ``sub`` (the subparsers)."""
    s = sub.add_parser(
        "sample",
        help="generate images with a trained model",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            examples:
              diffvision sample runs/digits/model --n 64 --out grid.png
              diffvision sample runs/digits/model --class 3 --guidance 2 --out threes.png
              diffvision sample runs/digits/model --n 100 --sampler heun --out samples/"""),
    )
    s.add_argument("model", help="model folder (config.json + model.safetensors)")
    s.add_argument("--n", type=_positive(int), default=64, help="number of images")
    s.add_argument(
        "--sampler", type=sampler_name, default="unipc", help="sampler name (see `diffvision info`)"
    )
    s.add_argument("--steps", type=_positive(int), default=20, help="sampler steps")
    s.add_argument("--seed", type=seed, default=0, help="seed of the sampling noise")
    s.add_argument(
        "--class",
        dest="label",
        help="class-conditional models: the class to draw, by name (a class folder's) or index "
        "(`diffvision info` lists them)",
    )
    add_guidance(s)
    add_bf16_inference(s)
    add_quiet(s)
    add_unconditional(s, "without --class")
    s.add_argument("--batch", type=_positive(int), default=256, help="images per batch")
    s.add_argument("--no-ema", action="store_true", help="use the raw instead of the EMA weights")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda")
    s.add_argument(
        "--out",
        required=True,
        type=grid_or_folder,
        help="FILE.png (a grid, 8 bits per channel, to look at), a folder (one PNG each) or "
        "FILE.tif (one TIFF stack, a page each); the last two at 16 bits per channel for a "
        "model of 16-bit data, white at its white level (`diffvision info`)",
    )


#: sample's record in an --out folder; the options its images do not depend on.
SAMPLE_RECORD = "sample.json"
SAMPLE_NOT_SETTINGS = ("command", "out", "n", "quiet", "device")


def _check_batch_fits(model, shape, n: int, args, device) -> None:
    """Refuse (ValueError) a sampling batch of ``n`` images that surely cannot fit in memory
    (:func:`~diffvision.samplers.check_sample_fits`)."""
    import torch

    from ..samplers import check_sample_fits

    labels = None
    if args.label is not None:
        labels = torch.full((n,), args.label, dtype=torch.long, device=device)
    check_sample_fits(
        model, (n, *shape), cond=labels, guidance=args.guidance, device=device,
        advice="lower --batch",
    )  # fmt: skip


def cmd_sample(args) -> int:
    import torch

    from .. import samplers
    from ..io import load, read_config, save_grid, save_images
    from ..io.images import (
        STACK_FILES,
        frames_folder,
        holds_record,
        join_into_stack,
        numbered_indices,
        numbered_path,
    )
    from ..io.model_folder import sample_shape
    from ..memory import check_fits
    from ..seeds import derived_seed
    from ..train.distributed import resolve_device
    from .record import read_record, recorded_prior, settings_of, typed_prior, write_record

    stack = Path(args.out) if Path(args.out).suffix.lower() in STACK_FILES else None
    out = Path(args.out) if stack is None else frames_folder(stack)  # a stack's: until joined
    to_folder = out.suffix.lower() != ".png"  # grid_or_folder checked --out
    config = read_config(args.model)
    white = config.get("data", {}).get("white_level") if to_folder else None  # 16-bit data
    shape = sample_shape(config, args.model)
    num_classes = config["net"].get("num_classes", 0)
    if args.unconditional != "auto" and (args.label is not None or not num_classes):
        why = "--class draws that class" if num_classes else "the model is unconditional"
        raise UsageError(f"--unconditional is for a class model sampled without --class: {why}")
    kind = None  # how a class model sampled without a class is made unconditional
    if args.label is not None:  # the class options, before the record and the model are read
        args.label = class_index(args.label, config, "--class")
        if args.guidance != 1.0:
            require_null_class(config, args.model, "--guidance")
    elif args.guidance != 1.0:
        raise UsageError("--guidance needs --class")
    elif num_classes:
        kind = unconditional_kind(
            args.unconditional, config, args.model, "sampling without --class",
            ": give --class, or train a noise classifier (train --classifier-steps) to mix "
            "the class branches",
        )  # fmt: skip
    if to_folder:  # a record of the settings, so that the same command goes on where it stopped
        args.unconditional = recorded_prior(kind)  # the prior used: auto and its choice are one
        settings = settings_of(args, SAMPLE_NOT_SETTINGS)
        if white:  # 16-bit files; a record without it was written at 8 bits (before 2026-12-07)
            settings["bits"] = 16
        made = {"settings": settings, "n": args.n}  # what a stack of them keeps
        if stack is not None and not out.exists() and holds_record(stack, made):
            print(f"{stack} holds the {counted(args.n, 'image')} sampled by an earlier run with "
                  "the same settings (its record): nothing to do")  # fmt: skip
            return 0
        there = any(out.glob("sample_*.png"))
        typed = typed_prior(args.model, args.label is not None)
        if read_record(out / SAMPLE_RECORD, settings, "samples", there, typed) is None:
            if there:  # two runs' samples would mix unseen
                raise UsageError(
                    f"{out} already holds samples (sample_*.png) without a record of their "
                    f"settings ({SAMPLE_RECORD}): use another folder"
                )
    device = resolve_device(args.device)
    model = fast_inference(load(args.model, ema=not args.no_ema, device=device), device, args.bf16)
    cond = None
    if kind is not None:
        model = unconditional_model(model, kind, args.model, device)
    if not to_folder:  # a grid holds every image twice (the batches, then joined), in float32
        check_fits(
            2 * args.n * math.prod(shape) * 4, torch.device("cpu"),
            f"a grid of {args.n} images of {' x '.join(map(str, shape))}",
            "lower --n, or write one PNG per image (--out FOLDER/)",
        )  # fmt: skip

    def size_of(start: int) -> int:  # the images of the batch from image ``start``
        return min(args.batch, args.n - start)

    _check_batch_fits(model, shape, size_of(0), args, device)  # the first batch is the largest
    whole = set()  # starts of the batches that an earlier run with the same settings wrote whole
    if to_folder:  # the options checked: the record is written before any image
        out.mkdir(parents=True, exist_ok=True)
        write_record(out / SAMPLE_RECORD, settings)
        there = numbered_indices(out, args.n)  # one listing: --n may be far beyond what is there
        starts = {i - i % args.batch for i in there}
        whole = {s for s in starts if all(i in there for i in range(s, s + size_of(s)))}
    kept = sum(size_of(s) for s in whole)
    batches = ((s, size_of(s)) for s in range(0, args.n, args.batch) if s not in whole)
    if kept:
        print(f"{kept} of the {args.n} images are in {out}/ from an earlier run with the same "
              f"settings ({SAMPLE_RECORD}): kept")  # fmt: skip
    parts, done = [], 0
    try:
        todo = math.ceil(args.n / args.batch) - len(whole)
        with torch.no_grad(), step_bar(todo * args.steps, "sample", args.quiet) as bar:
            for start, n in batches:
                gen = torch.Generator().manual_seed(derived_seed(args.seed, start))  # per batch
                if args.label is not None:
                    cond = torch.full((n,), args.label, dtype=torch.long, device=device)
                images = samplers.sample(
                    model,
                    (n, *shape),
                    sampler=args.sampler,
                    steps=args.steps,
                    generator=gen,
                    cond=cond,
                    guidance=args.guidance,
                    device=device,
                    callback=bar.step,
                ).cpu()
                if to_folder:  # each batch written as it comes: an interruption keeps them
                    save_images(out, images, start=start, white=white)
                else:
                    parts.append(images)
                done += n
    except KeyboardInterrupt:
        if to_folder:  # whole files only (also those of a batch stopped while being written)
            there = len(numbered_indices(out, args.n))
            joins = "" if stack is None else f" and joins them into {stack}"
            print(f"interrupted; {there} of the {args.n} images are in {out}/ (the same "
                  f"command makes the others{joins})", file=sys.stderr)  # fmt: skip
            return 130
        raise
    bits = f", 16 bits, white {white}" if white else ""  # the files'
    how = f" ({args.sampler}, {counted(args.steps, 'step')}{', bf16' if args.bf16 else ''}{bits})"
    if stack is not None:  # every image made: joined page by page, then their folder goes
        join_into_stack(stack, [numbered_path(out, i) for i in range(args.n)], made)
        shutil.rmtree(out)
        print(f"wrote {counted(args.n, 'image')} into the TIFF stack {stack}{how}"
              + (f"; {kept} from an earlier run" if kept else ""))  # fmt: skip
    elif to_folder:
        print(f"wrote {counted(done, 'image')} to {out}/{how}" + (f"; {kept} kept" if kept else ""))
    else:
        images = torch.cat(parts)
        save_grid(out, images, upscale=max(1, 64 // shape[-1]))
        print(f"wrote a grid of {counted(len(images), 'image')} to {out}{how}")
    return 0
