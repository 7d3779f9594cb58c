"""``diffvision train``: train a model on a folder or a built-in data set, and ``--resume`` a run
with its own settings."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from .common import (
    BF16_WHERE,
    UsageError,
    _count,
    _finite,
    _formatter,
    _positive,
    add_quiet,
    counted,
    given_names,
    note_emulated_bf16,
    option_name,
    output_folder,
    seed,
    white_level,
)


def add_parser(sub) -> None:
    """Add the ``train`` subcommand and its options to ``sub`` (the subparsers)."""
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
