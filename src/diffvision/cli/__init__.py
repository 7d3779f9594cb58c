"""The ``diffvision`` command: train, sample, info, demo, eval, restore.

No logic of its own: every subcommand parses arguments, calls the library and reports. Bad input
is one clear line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import sys
import textwrap
import warnings
from pathlib import Path

from ..allocator import tune_malloc
from . import evaluate, restore
from .common import (
    BF16_WHERE,
    EXIT_USAGE,
    Parser,
    UsageError,
    _count,
    _finite,
    _formatter,
    _positive,
    add_bf16_inference,
    add_guidance,
    add_quiet,
    add_unconditional,
    class_index,
    counted,
    fast_inference,
    first_names,
    given_names,
    given_options,
    grid_or_folder,
    model_classes,
    note_emulated_bf16,
    option_name,
    output_folder,
    require_null_class,
    sampler_name,
    seed,
    step_bar,
    unconditional_kind,
    unconditional_model,
    white_level,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="diffvision",
        description="Diffusion models for imaging and vision: train, sample, restore, evaluate.",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            examples:
              diffvision demo
              diffvision train --data digits --steps 3000 --out runs/digits
              diffvision sample runs/digits/model --n 64 --out grid.png
              diffvision info runs/digits/model
              diffvision eval runs/digits/model --data digits
              diffvision restore denoise runs/photos/model noisy.png --sigma 25 --out clean.png"""),
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    t = sub.add_parser(
        "train",
        help="train a diffusion model on a folder of images or a built-in data set",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            examples:
              diffvision train --data digits --steps 3000 --out runs/digits
              diffvision train --data photos/ --size 32 --preset small --bf16 --out runs/photos
              diffvision train --data mnist:../shared/data/mnist --steps 20000 --out runs/mnist
              diffvision train --out runs/digits --resume      (continue an interrupted run)
              torchrun --nproc_per_node=2 -m diffvision train --data faces --out runs/faces"""),
    )
    t.add_argument(
        "--data",
        help="image folder (or one TIFF stack: its frames), or digits | faces | shapes | photos |"
        " deadleaves | mnist:FOLDER; several joined by + are pooled (e.g. photos+deadleaves)",
    )
    t.add_argument(
        "--size",
        type=_positive(int),
        help="image size in pixels (default: the data's; an image folder's is its images' "
        "shorter side, where they share one)",
    )
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB (folders: auto)")
    t.add_argument(
        "--white-level",
        type=white_level,
        help="the value of white in 16-bit files, e.g. 4095 for a 12-bit camera's (default: the "
        "smallest 2^k - 1 at or above the folder's largest value)",
    )
    t.add_argument("--preset", default="small", help="network size: tiny | small | base")
    t.add_argument("--steps", type=_positive(int), help="optimiser steps (default 2000)")
    t.add_argument("--batch", type=_positive(int), default=64, help="global batch size")
    t.add_argument("--lr", type=_positive(float), default=1e-3, help="AdamW learning rate")
    t.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    t.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="after warm-up: constant or cosine decay to 0",
    )
    t.add_argument("--schedule", default="edm", help="edm | linear | cosine | vp | ve")
    t.add_argument("--prediction", default="edm", help="edm | eps | x0 | v")
    t.add_argument(
        "--weighting",
        help="loss weighting: simple | snr | snr+1 | min_snr | edm (default: the prediction's own)",
    )
    t.add_argument(
        "--classes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="condition on class labels when the data has them",
    )
    t.add_argument(
        "--label-dropout",
        type=_finite,
        default=0.1,
        help="probability of the null class (classifier-free guidance)",
    )
    t.add_argument(
        "--target",
        choices=("sample", "empirical"),
        default="sample",
        help="regress on the clean image, or on the training set's exact posterior mean "
        "(same optimum, less gradient noise; data sets up to 64 M values, e.g. digits, MNIST)",
    )
    t.add_argument(
        "--classifier-steps",
        type=_count,
        default=0,
        help="after training a class model, fit a noise-aware classifier for this many steps "
        "(e.g. 8000; under a minute for small images) and save it with the model: "
        "`diffvision sample` then draws unconditional images as the class-posterior mixture of "
        "the class branches",
    )
    t.add_argument("--accumulation", type=_positive(int), default=1, help="gradient accumulation")
    t.add_argument("--ema", type=_finite, default=0.999, help="EMA decay")
    t.add_argument("--hflip", action="store_true", help="random horizontal flips")
    t.add_argument("--bf16", action="store_true", help=f"bfloat16 autocast: {BF16_WHERE}")
    t.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    t.add_argument(
        "--checkpoint-every", type=_positive(int), default=500, help="steps between checkpoints"
    )
    t.add_argument("--keep", type=_positive(int), default=2, help="checkpoints to keep")
    t.add_argument("--seed", type=seed, default=0, help="seed of initialisation, data order, noise")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument(
        "--out", required=True, type=output_folder, help="run folder (model in OUT/model)"
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in OUT, with the run's settings (other values "
        "of its options are refused; --steps, --stop-at and --device may change)",
    )
    t.add_argument("--stop-at", type=_positive(int), help="stop after this step (resume later)")
    add_quiet(t)

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

    i = sub.add_parser(
        "info",
        help="describe a model folder (or a feature network's)",
        formatter_class=_formatter,
        epilog="example:\n  diffvision info runs/digits/model",
    )
    i.add_argument("model", help="model folder (or a feature network's, from eval train-features)")

    d = sub.add_parser(
        "demo",
        help="train on built-in digits on the CPU and write an HTML report",
        formatter_class=_formatter,
        epilog="example:\n  diffvision demo --out runs/demo",
    )
    d.add_argument("--out", default="runs/demo", type=output_folder, help="output folder")
    d.add_argument(
        "--steps",
        type=_positive(int),
        default=None,
        help="training steps (default: the demo's tuned value)",
    )
    d.add_argument("--seed", type=seed, default=0, help="seed of training and sampling")
    add_quiet(d)
    evaluate.add_parsers(sub)
    restore.add_parser(sub)
    return parser


def _version() -> str:
    """diffvision's version, with the torch it runs on (for bug reports)."""
    import torch

    from .. import __version__

    return f"diffvision {__version__} (torch {torch.__version__}, Python {sys.version.split()[0]})"


# ------------------------------------------------------------------------------- commands
def _check_out_of_data(out: Path, spec: str) -> None:
    """Refuse (UsageError) an ``--out`` that is an image folder of ``--data`` or lies inside
    one, and a ``--data`` inside a folder that the run writes (``--data runs/x/samples --out
    runs/x``): the run's sample grids would be read as training images when it is resumed."""
    from ..data import BUILTIN, pooled_parts

    where = out.resolve()
    for part in pooled_parts(spec) or [spec]:
        if not part or part in BUILTIN or part.startswith("mnist:"):  # no image folder
            continue
        folder = Path(part).resolve()
        if not folder.is_dir():
            continue
        if where == folder or folder in where.parents:
            raise UsageError(
                f"--out {out} is inside --data {part}: its sample grids would be trained on "
                "when the run is resumed; train into another folder"
            )
        for name in RUN_WRITES:
            if where / name == folder or where / name in folder.parents:
                it = "that folder" if where / name == folder else "inside it"
                raise UsageError(
                    f"the run writes {out / name}/, and --data {part} is {it}: its sample grids "
                    "would be trained on when the run is resumed; train from another folder"
                )


def _check_class_options(args, num_classes: int) -> None:
    """Refuse (UsageError) class options given for a run that would not use them: ``--classes``
    for data without labels (it trained unconditionally without a word), ``--label-dropout``
    and ``--classifier-steps`` for a run without classes; and ``--label-dropout 1`` for a run
    with classes (every label dropped: a class model that learns no class)."""
    if num_classes and args.classes and args.label_dropout >= 1:  # no label ever seen
        raise UsageError("--label-dropout 1 drops every label, so no class is learnt (below 1, "
                         "or --no-classes for an unconditional model)")  # fmt: skip
    if num_classes:
        if args.classes:
            return
        unused, why = ("label_dropout", "classifier_steps"), "--no-classes trains without labels"
    else:
        unused = ("classes", "label_dropout", "classifier_steps")
        why = (f"--data {args.data} has no class labels (an image folder takes them from its "
               "class sub-folders; pooled data has none)")  # fmt: skip
    named = given_names(args, [dest for dest in unused if getattr(args, dest)])
    if named:
        raise UsageError(f"{why}: {' and '.join(named)} would be unused")


def _discard_unstarted(out: Path, created: bool) -> None:
    """After a fresh run was refused before its first step (a setting its trainer refused, a
    batch that cannot fit): remove its ``run.json``, and ``out`` itself where the run made it
    and nothing else is in it, so that a refused run leaves nothing behind. A run that wrote
    anything more (metrics, samples, checkpoints) is left as it is."""
    if any((out / name).exists() for name in (*RUN_WRITES, "metrics.jsonl")):
        return
    (out / "run.json").unlink(missing_ok=True)
    if created and not any(out.iterdir()):
        out.rmdir()


#: The folders that a run writes in its --out folder.
RUN_WRITES = ("samples", "checkpoints", "model")


def cmd_train(args) -> int:
    from ..data import load_data
    from ..io.atomic import write_text_whole
    from ..train import TrainConfig, train
    from ..train.checkpoint import check_fresh
    from ..train.distributed import launched_main, resolve_device

    out = Path(args.out)
    if args.resume:
        cfg, data = _resume_settings(out, args)
    else:
        if not args.data:
            raise UsageError("--data is required (or --resume an existing run)")
        # before loading the data, and before run.json is written over
        check_fresh(out, "continue it with --resume, or train into another --out")
        _check_out_of_data(out, args.data)
        data = load_data(args.data, args.size, channels=args.channels, white_level=args.white_level)
        _check_class_options(args, data.num_classes)
        if args.white_level is not None and data.white_level is None:  # it was recorded, and
            # restore then read 16-bit inputs by a white level that no training image had
            raise UsageError(f"--white-level is for 16-bit image files: --data {args.data} has "
                             "none")  # fmt: skip
        if data.upscaled and launched_main():  # said once, under torchrun too
            are, their = ("is", "its") if data.upscaled == 1 else ("are", "their")
            print(
                f"note: {data.upscaled} of the {len(data)} images {are} smaller than --size "
                f"{data.size} ({their} short side) and {are} enlarged to it: samples will be no "
                f"sharper than {'it is' if data.upscaled == 1 else 'they are'}"
            )
        if data.loose and launched_main():  # class folders lost to images beside them
            lie, them = ("lies", "it") if data.loose == 1 else ("lie", "them")
            print(
                f"note: {data.loose} of the {len(data)} images {lie} beside the class "
                "sub-folders, not in one, so the sub-folders are not classes: trained without "
                f"labels (move {them} into a sub-folder to train by class)"
            )
        if data.stacked and launched_main():
            files, holds = ("1 file", "holds") if data.stacked == 1 else (data.stacked, "hold")
            print(
                f"note: {files} {holds} several frames (TIFF stacks, animations): each frame is "
                f"an image of the {len(data)}"
            )
        cfg = TrainConfig(
            steps=args.steps or 2000,
            **{field: getattr(args, option) for option, field in CONFIG_OPTIONS.items()},
        )
        cfg.validate()  # before run.json: a refused run leaves no folder behind
        if cfg.warmup > cfg.steps and launched_main():  # a short trial run, say
            print(f"note: the warm-up ({cfg.warmup} steps, --warmup) is longer than the run "
                  f"({counted(cfg.steps, 'step')}): the learning rate reaches "
                  f"{cfg.steps / cfg.warmup:.0%} of --lr at most")  # fmt: skip
        if data.num_classes and args.classes and cfg.label_dropout == 0 and launched_main():
            how = (
                "its noise classifier's mixture"
                if cfg.classifier_steps
                else "a noise classifier's mixture, which --classifier-steps trains"
            )
            print("note: --label-dropout 0 learns no null class: no guidance, and the model is "
                  "used without a class (sample, restore, eval --classes none) only by "
                  f"{how}")  # fmt: skip
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        spec = {
            "data": _absolute_spec(args.data),
            "size": data.size,  # as found: a folder that gains images of another size or
            "channels": data.channels,  # colour is read at the run's on resume
            "white_level": data.white_level,  # as found: a resumed run reads files the same way
        }
        write_text_whole(out / "run.json", json.dumps(spec, indent=1))
    done = _finished_model(out, cfg) if args.resume else None
    if done is not None:  # a scheduler's requeue, say: the model and its classifier are kept
        if launched_main():
            print(f"{out} is complete at step {cfg.steps}: its model is {done} (a larger --steps "
                  "trains on)")  # fmt: skip
        return 0
    if cfg.bf16 and launched_main():
        note_emulated_bf16(resolve_device(args.device))
    try:
        folder = train(
            cfg,
            data,
            out,
            resume=args.resume,
            device=args.device,
            progress=not args.quiet,
            stop_at=args.stop_at,
        )
    except ValueError:  # refused before the first step: nothing left behind
        if not args.resume and launched_main():
            _discard_unstarted(out, created)
        raise
    except KeyboardInterrupt:
        if launched_main():  # under torchrun every rank is stopped; one says so
            print(
                f"interrupted; a checkpoint was saved. Continue with: diffvision train --out "
                f"{out} --resume",
                file=sys.stderr,
            )
        return 130
    if folder is not None:
        print(f"model written to {folder}")
    elif args.stop_at and launched_main():
        print(
            f"stopped at step {args.stop_at}; continue with: diffvision train --out {out} --resume"
        )
    return 0


def _finished_model(out: Path, cfg) -> Path | None:
    """``out/model`` where it holds the run's model at its last step, ``cfg.steps`` (with its
    noise classifier where ``cfg`` asks for one): a finished run, which ``--resume`` keeps as it
    is. None where it does not: a run killed between its last checkpoint and its model, or
    resumed with a larger ``--steps``."""
    from ..io.model_folder import is_model_folder, read_json_object

    model = out / "model"
    if not is_model_folder(model):
        return None
    config = read_json_object(model / "config.json")
    classifier = cfg.classifier_steps and config.get("net", {}).get("num_classes")
    if config.get("step") != cfg.steps or config.get("training", {}).get("steps") != cfg.steps:
        return None
    return None if classifier and not (model / "classifier.safetensors").is_file() else model


#: train's options that are TrainConfig fields (option -> field): a run's own settings, which
#: --resume takes from its checkpoint.
CONFIG_OPTIONS = {
    name: name
    for name in (
        *("preset", "batch", "lr", "warmup", "lr_schedule", "schedule", "prediction"),
        *("weighting", "classes", "label_dropout", "target", "classifier_steps"),
        *("accumulation", "hflip", "bf16", "channels_last", "checkpoint_every", "seed"),
    )
} | {"ema": "ema_decay", "keep": "keep_checkpoints"}
#: train's options of the data, which --resume takes from the run's run.json.
DATA_OPTIONS = ("data", "size", "channels", "white_level")


def _resume_conflicts(args, cfg, spec: dict) -> list[str]:
    """The options given with --resume (at any value, their defaults too) whose values differ
    from the run's own, each as ``--option VALUE (the run's: VALUE)``."""
    run = {option: getattr(cfg, field) for option, field in CONFIG_OPTIONS.items()}
    run.update({option: spec.get(option) for option in DATA_OPTIONS})
    conflicts = []
    for option in (*CONFIG_OPTIONS, *DATA_OPTIONS):
        if option not in args.given:
            continue
        value = getattr(args, option)
        if option == "data":
            value = _absolute_spec(value)
        if value != run[option]:
            conflicts.append(f"{option_name(option)} {value} (the run's: {run[option]})")
    return conflicts


def _absolute_spec(spec: str) -> str:
    """The data spec with any path made absolute, so --resume works from another folder."""
    from ..data import BUILTIN, pooled_parts

    parts = pooled_parts(spec)
    if parts:
        return "+".join(_absolute_spec(part) for part in parts)
    if spec in BUILTIN:
        return spec
    if spec.startswith("mnist:"):
        return "mnist:" + str(Path(spec.split(":", 1)[1]).resolve())
    return str(Path(spec).resolve())


def _read_run_spec(path: Path) -> dict:
    """A run's ``run.json`` (its data options, :data:`DATA_OPTIONS`), checked as input: a
    UsageError naming the file where it is not JSON or not of that form (edited by hand, say)."""
    from ..io.model_folder import read_json_object
    from ..process import is_int

    spec = read_json_object(path)
    if not isinstance(spec.get("data"), str):
        raise UsageError(f'{path} does not name the run\'s data (a "data" entry)')
    for option in DATA_OPTIONS[1:]:
        value = spec.get(option)
        if value is not None and not (is_int(value) and value > 0):
            raise UsageError(f"{path}: {option} must be a positive integer or null, not {value!r}")
    return spec


def _resume_settings(out: Path, args):
    from ..data import load_data
    from ..io import read_config
    from ..train import TrainConfig
    from ..train.checkpoint import checkpoint_step, list_checkpoints

    run = out / "run.json"
    found = list_checkpoints(out / "checkpoints")
    if not run.is_file() or not found:
        raise UsageError(f"nothing to resume in {out} (no run.json or checkpoints)")
    reached = checkpoint_step(found[-1])  # a run cannot go back: its optimiser state is past
    for option, value in (("--steps", args.steps), ("--stop-at", args.stop_at)):
        if value is not None and value < reached:
            raise UsageError(
                f"{out} is at step {reached}, past {option} {value}: give {reached} or more, "
                "or train a new run into another --out"
            )
    spec = _read_run_spec(run)
    stored = read_config(found[-1]).get("training")
    try:
        cfg = TrainConfig.from_dict(stored)
        cfg.validate()
    except (AttributeError, TypeError, ValueError) as err:  # not a dict, wrong types or values
        raise UsageError(
            f"{found[-1] / 'config.json'} holds no usable training settings: {err}"
        ) from None
    white = spec.get("white_level")
    data = load_data(
        spec["data"], spec.get("size"), channels=spec.get("channels"), white_level=white
    )
    # the data's own size and channels where the run left them to the data
    own = {"size": data.size, "channels": data.channels}
    spec = {**spec, **{k: v for k, v in own.items() if spec.get(k) is None}}
    conflicts = _resume_conflicts(args, cfg, spec)
    if conflicts:
        raise UsageError(
            f"--resume continues {out} with the run's own settings, and these differ: "
            f"{', '.join(conflicts)}; only --steps, --stop-at and --device change on resume (or "
            "train a new run into another --out)"
        )
    if args.steps is not None:  # resuming may extend (or shorten) the run
        cfg.steps = args.steps
    return cfg, data


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


def cmd_info(args) -> int:
    from ..io.model_folder import (
        check_model_config,
        classifier_file,
        parameter_count,
        read_config,
    )
    from ..samplers import SAMPLERS

    if read_config(args.model)["net"].get("kind") == "features":  # was refused as no model
        print(_feature_net_lines(args.model))
        return 0
    config = check_model_config(args.model)
    net = config["net"]
    params = parameter_count(args.model)
    classifier = classifier_file(args.model)
    lines = [
        f"model:       {args.model}",
        f"network:     U-Net, {params / 1e6:.2f} M parameters, channels {net['channels']}, "
        f"mult {tuple(net['channel_mult'])}",
        f"image:       {' x '.join(map(str, config.get('sample_shape', [])))} (C x H x W)",
        f"classes:     {_classes_line(config, classifier.is_file())}",
        f"prediction:  {config['denoiser']['prediction']}, schedule "
        f"{_schedule_line(config.get('schedule'))}",
    ]
    data = config.get("data")
    if data:
        lines.append(f"trained on:  {data.get('name')} ({counted(data.get('images'), 'image')})")
        if data.get("white_level"):
            lines.append(f"white level: {data['white_level']} (of its 16-bit files)")
    training = config.get("training")
    if training:
        steps = training.get("steps")
        done = config.get("step", steps)  # older folders: their planned steps
        trained = (
            counted(done, "step")
            if done == steps
            else f"{done} of {counted(steps, 'step')} (a checkpoint)"
        )
        lines.append(
            f"training:    {trained}, batch {training.get('batch')}, lr {training.get('lr')}"
        )
    if classifier.is_file():
        info = json.loads(classifier.read_text()).get("info", {})
        lines.append(
            f"classifier:  noise-aware, {counted(info.get('steps'), 'step')} (the unconditional "
            "model of sample, restore and eval --classes none: the class-posterior mixture)"
        )
    lines.append(f"samplers:    {', '.join(SAMPLERS)}")
    print("\n".join(lines))
    return 0


def _feature_net_lines(folder: str) -> str:
    """``info`` of a feature network folder (``eval train-features``): what it is, the images
    it takes, what it was trained on and its held-out score; its weights are loaded (checked)."""
    from ..io.model_folder import load_feature_net
    from ..train.features import holdout_score

    net = load_feature_net(folder)
    cfg, info = net.config, net.info
    data = info.get("data") or {}
    task = f"classifier of {cfg.classes} classes" if cfg.classes else "autoencoder"
    return "\n".join([
        f"feature network: {folder} (for `diffvision eval --features {folder}`)",
        f"network:     {task}, {cfg.features} features",
        f"image:       {cfg.channels} x {cfg.size} x {cfg.size} (C x H x W)",
        f"trained on:  {data.get('name')} ({counted(data.get('images'), 'image')}), "
        f"{counted(info.get('steps'), 'step')}",
        f"held-out:    {holdout_score(info)} ({counted(info.get('holdout_images'), 'image')})",
    ])  # fmt: skip


def _schedule_line(schedule) -> str:
    """``info``'s schedule: its kind and its numbers, ``edm (sigma_min 0.002, ...)``."""
    if not isinstance(schedule, dict):
        return str(schedule)
    rest = {k: v for k, v in schedule.items() if k != "kind"}
    numbers = ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in rest.items()
    )
    return f"{schedule.get('kind')} ({numbers})" if numbers else str(schedule.get("kind"))


def _classes_line(config: dict, classifier: bool) -> str:
    """``info``'s classes: their count, and their names where they are not their indices
    (class folders'), as ``--class`` takes either; for a model without a null class, what that
    rules out (without a noise classifier, ``classifier`` False, any use without a class)."""
    from ..io.model_folder import learnt_null_class

    names = model_classes(config)
    if not names:
        return "unconditional"
    line = str(len(names))
    if names != [str(i) for i in range(len(names))]:
        line += f" ({first_names([f'{i} {name}' for i, name in enumerate(names)])})"
    if not learnt_null_class(config):
        line += "; no null class (trained with --label-dropout 0): no guidance" + (
            "" if classifier else ", and --class needed"
        )
    return line


def cmd_demo(args) -> int:
    from ..demo import run_demo

    try:
        report = run_demo(Path(args.out), steps=args.steps, seed=args.seed, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted; a checkpoint was saved if training had begun: the same command "
              "continues from it", file=sys.stderr)  # fmt: skip
        return 130
    print(f"demo report: {report}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "info": cmd_info,
    "demo": cmd_demo,
    "eval": evaluate.cmd_eval,
    "restore": restore.cmd_restore,
}


def main(argv: list[str] | None = None) -> int:
    """The ``diffvision`` command: ``argv`` (default: the program's arguments) -> exit code. Run
    as the program (``argv`` None), it first tunes glibc's malloc for tensors
    (:func:`~diffvision.allocator.tune_malloc`); called with ``argv``, it leaves the caller's
    process as it is."""
    if argv is None:
        tune_malloc()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "train-features"]:
        command, run = "eval train-features", lambda: evaluate.cmd_train_features(argv[2:])
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("train", "eval", "restore"):  # the options given, at any value:
            # train --resume refuses other values than the run's, and all three refuse options
            # that the run would not use
            args.given = given_options(build_parser(), argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        command, run = args.command, lambda: COMMANDS[args.command](args)
    # A scheduler's or torchrun's SIGTERM stops a command the way Ctrl-C does, so an interrupted
    # training run saves its checkpoint (the default action would end it where it stands).
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # main() called outside the main thread: leave signals alone
        previous = None
    try:
        with warnings.catch_warnings():  # restores the caller's way of showing them
            warnings.showwarning = _one_line_warning(command)
            return run()
    except (UsageError, ValueError, FileNotFoundError, FloatingPointError) as err:  # the last: a
        # training loss that is no longer finite (a --lr too high), said as the trainer words it
        print(f"diffvision {command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a file that cannot be written (disk full, say): named in one line
        if err.filename is None:  # not about a file: a fault to report with its traceback
            raise
        print(f"diffvision {command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, MemoryError) as err:  # an allocation refused: settings too large
        need = _failed_allocation(err)
        if need is None:
            raise
        print(
            f"diffvision {command}: error: out of memory: {need} could not be allocated; ask "
            "for less (fewer steps, samples or images, a smaller batch or image)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line_warning(command: str):
    """A ``warnings.showwarning`` that says a warning in one line, as errors are said ("diffvision
    restore: warning: Image size (108000000 pixels) exceeds limit ..."), not with the file, line
    and source of the library that raised it."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(
            f"diffvision {command}: warning: {message}", file=sys.stderr if file is None else file
        )

    return show


def _failed_allocation(err: Exception) -> str | None:
    """How much memory the allocation that raised ``err`` asked for ("745.1 GiB", or "memory"
    where the message does not say), or None where ``err`` is not an allocation refused: CUDA's
    out-of-memory error, the CPU allocator's "can't allocate memory" (a plain RuntimeError), or
    Python's MemoryError (``eval --seeds 1e11`` lists its seeds). The checks before a run
    (``memory.py``) are lower bounds: this catches what they miss."""
    import torch

    if isinstance(err, MemoryError):
        return "memory"
    text = str(err)
    if not isinstance(err, torch.OutOfMemoryError) and "can't allocate memory" not in text:
        return None
    found = re.search(r"allocate ([0-9.]+) (bytes|[KMGT]iB)", text)
    if found is None:
        return "memory"
    amount, unit = float(found[1]), found[2]
    if unit == "bytes":
        amount, unit = amount / 2**30, "GiB"
    return f"{amount:.1f} {unit}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
