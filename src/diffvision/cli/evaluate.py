"""``diffvision eval``: evaluate a model (metrics with spread and the real-versus-real floor, or a
sampler / NFE sweep with a plot) and ``diffvision eval train-features`` (domain feature nets)."""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

from .common import (
    Parser,
    UsageError,
    _at_least,
    _count,
    _formatter,
    _positive,
    add_bf16_inference,
    add_guidance,
    add_quiet,
    add_unconditional,
    class_index,
    fast_inference,
    first_names,
    given_names,
    listed,
    model_classes,
    model_output,
    option_name,
    output_file,
    require_null_class,
    sampler_name,
    seed,
    step_bar,
    unconditional_kind,
    unconditional_model,
)


def _plot_file(text: str) -> str:
    """``--plot``: a file type matplotlib writes, checked before the sweep it would plot."""
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if Path(text).suffix.lower().lstrip(".") not in kinds:
        raise argparse.ArgumentTypeError(f"not a plot file (.png, .pdf, .svg): {text!r}")
    return output_file(text)


def _nan_to_null(value):
    """``value`` with every NaN float made None: strict JSON has no NaN (the spread over one
    seed, or the standard error of one image's bits/dim, is undefined)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_null(v) for v in value]
    return value


EVAL_EXAMPLES = """\
examples:
  diffvision eval runs/demo/model --data digits --n 500
  diffvision eval runs/demo/model --data digits --sweep-steps 5,10,20,50 --samplers unipc,heun \\
      --plot sweep.png
  diffvision eval runs/cifar/model --data cifar/ --features inception:pt_inception-2015-12-05.pth
  diffvision eval train-features photos/ --size 32 --out features/photos   (own data)

features: auto (built-in data sets: a classifier trained once, cached in ~/.cache/diffvision),
a folder from `diffvision eval train-features`, or inception:FILE (pytorch-fid's
pt_inception-2015-12-05 file or torchvision's Inception-v3 weights; never downloaded)."""


def _classes(text: str) -> list[str]:
    """``--classes``: classes by name or index (e.g. 0,3,7 or cats,dogs), resolved against the
    model by :func:`_resolve_classes`; or none (unconditional samples): an empty list."""
    return [] if text == "none" else listed(str, "classes")(text)


def add_parsers(sub) -> None:
    from ..metrics.evaluate import MIN_IMAGES, NEIGHBOURS

    e = sub.add_parser(
        "eval",
        help="measure a model against real data (Fréchet distance, KID, precision/recall)",
        formatter_class=_formatter,
        epilog=EVAL_EXAMPLES,
    )
    e.add_argument("model", help="model folder (or `train-features`, see below)")
    e.add_argument("--data", required=True, help="real data: digits | faces | shapes | FOLDER ...")
    e.add_argument("--size", type=_positive(int), help="image size (folders: the model's)")
    e.add_argument(
        "--n", type=_at_least(MIN_IMAGES), default=500,
        help=f"samples per seed ({MIN_IMAGES} or more: precision and recall count "
        f"{NEIGHBOURS} nearest neighbours)",
    )  # fmt: skip
    e.add_argument("--seeds", type=_positive(int), default=3, help="number of sampling seeds")
    e.add_argument("--sampler", type=sampler_name, default="unipc", help="sampler name")
    e.add_argument("--steps", type=_positive(int), default=20, help="sampler steps")
    e.add_argument(
        "--batch", type=_positive(int), default=500,
        help="images sampled, or taken by --bpd, at a time (results depend on it, as on the seed)",
    )  # fmt: skip
    e.add_argument("--features", default="auto", help="auto | FOLDER | inception:FILE")
    e.add_argument(
        "--classes",
        type=_classes,
        help="class-conditional models: classes to sample, by name or index (default all; "
        "none: unconditional, see --unconditional)",
    )
    add_unconditional(e, "with --classes none and for --bpd")
    add_guidance(e)
    e.add_argument(
        "--sweep-steps", type=listed(_positive(int), "integers"),
        help="NFE values to sweep, e.g. 5,10,20,50",
    )  # fmt: skip
    e.add_argument(
        "--samplers", type=listed(sampler_name, "sampler names"),
        help="samplers for --sweep-steps (default unipc,dpmpp_2m,heun)",
    )  # fmt: skip
    e.add_argument("--plot", type=_plot_file, help="PNG of the sweep (quality against NFE)")
    e.add_argument("--bpd", type=_count, default=0, help="also bits/dim (PF-ODE) of N real images")
    e.add_argument("--json", type=output_file, help="write the full result to this JSON file")
    e.add_argument("--no-ema", action="store_true", help="use the raw instead of the EMA weights")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda (metrics: on the CPU)")
    add_bf16_inference(e)  # sampling only: bits_per_dim runs in float32
    add_quiet(e)


def train_features_parser() -> Parser:
    p = Parser(
        prog="diffvision eval train-features",
        description="Train a small feature network (a classifier when the data has labels, else "
        "an autoencoder) for `diffvision eval --features FOLDER`.",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            examples:
              diffvision eval train-features digits --out features/digits
              diffvision eval train-features photos/ --size 32 --out features/photos"""),
    )
    p.add_argument("data", help="digits | faces | shapes | mnist:FOLDER | image folder")
    p.add_argument(
        "--size",
        type=_positive(int),
        help="image size (default: the data's; an image folder's is its images' shorter side, "
        "where they share one)",
    )
    p.add_argument("--steps", type=_positive(int), default=500, help="training steps")
    p.add_argument("--batch", type=_positive(int), default=128, help="images per step")
    p.add_argument("--seed", type=seed, default=0, help="seed of initialisation and data order")
    p.add_argument("--out", required=True, type=model_output, help="output folder")
    add_quiet(p)
    return p


def cmd_train_features(argv: list[str]) -> int:
    from ..data import load_data
    from ..io import save_feature_net
    from ..io.model_folder import check_replaceable
    from ..train.features import holdout_score, train_feature_net
    from ..train.progress import loss_bar

    args = train_features_parser().parse_args(argv)
    check_replaceable(args.out, "features")  # before the training: nothing else is replaced
    data = load_data(args.data, args.size)
    with loss_bar(args.steps, "feature network", not args.quiet) as progress:
        net, info = train_feature_net(
            data, steps=args.steps, batch=args.batch, seed=args.seed, progress=progress
        )
    folder = save_feature_net(args.out, net, info)
    print(f"{info['task']} on {data.name} ({len(data)} images): held-out {holdout_score(info)}; "
          f"saved to {folder}")  # fmt: skip
    return 0


def cmd_eval(args) -> int:
    from ..data import load_data
    from ..io import load, read_config
    from ..io.model_folder import sample_shape
    from ..metrics import evaluate as ev
    from ..train.distributed import resolve_device
    from ..train.progress import loss_bar

    if args.json and args.plot and Path(args.json).resolve() == Path(args.plot).resolve():
        raise UsageError("--json and --plot name one file: the one would overwrite the other")
    _check_sweep_options(args)
    device = resolve_device(args.device)  # before any work
    config = read_config(args.model)
    shape = sample_shape(config, args.model)
    kind = _resolve_classes(args, config)
    size = args.size or shape[-1]
    white = config.get("data", {}).get("white_level")  # 16-bit files read as in training
    data = load_data(args.data, size, channels=shape[0], white_level=white)
    if (data.channels, data.size) != (shape[0], shape[-1]):
        raise UsageError(
            f"the model makes {shape[0]} x {shape[-1]} x {shape[-1]} images but {args.data} has "
            f"{data.channels} x {data.size} x {data.size}"
        )
    num_classes = config["net"].get("num_classes", 0)
    recorded = (config.get("data") or {}).get("class_names")  # where the data named them
    if num_classes and data.labels is not None and not ev.labels_match(data, num_classes, recorded):
        theirs = f"{data.num_classes} classes ({first_names(data.class_names, 10)})"
        ours = f"{num_classes} ({first_names(model_classes(config), 10)})"
        print(f"note: {args.data} has {theirs}, the model {ours}: its labels are not the "
              "model's, so samples are compared with all its images, and no class accuracy "
              "is reported")  # fmt: skip
    pool = ev.real_pool(data, args.classes, num_classes, recorded)
    ev.check_floor_count(data, args.n, pool)  # counts first: no feature network trained in vain
    seeds = list(range(args.seeds))  # a count too large to list is a MemoryError here, too
    if args.bpd > 0:
        ev.check_real_count(data, args.bpd, f"--bpd {args.bpd}")
    model = fast_inference(load(args.model, ema=not args.no_ema, device=device), device, args.bf16)
    unconditional = model if kind is None else unconditional_model(model, kind, args.model, device)
    sampled = unconditional if args.classes == [] else model
    # --features auto trains the built-in set's network the first time (then cached): shown
    with loss_bar(ev.FEATURE_STEPS, "feature network", not args.quiet) as progress:
        features = ev.get_features(args.features, data, args.data, progress)
    if args.bpd > 0:  # before the sampling, which takes longer
        ev.check_bits_per_dim_fits(unconditional, tuple(shape), args.bpd, args.batch, device)
    options = {
        "n": args.n,
        "seeds": seeds,
        "classes": args.classes,
        "guidance": args.guidance,
        "batch": args.batch,
        "device": device,
        "class_names": recorded,
    }

    def sampling_bar(steps: list[int]):  # one bar for the runs of these sampler steps
        total = sum(ev.sampling_steps(args.n, s, len(seeds), args.batch) for s in steps)
        return step_bar(total, "sample", args.quiet, checked=False)  # checked in evaluate

    header = {"model": str(args.model), "data": args.data}
    if args.classes == [] and kind is not None:  # which unconditional model was sampled
        header["unconditional"] = kind
    if args.sweep_steps:
        names = args.samplers or ["unipc", "dpmpp_2m", "heun"]
        done = []

        def progress(row):  # each run as it ends; with --json, the rows so far are on disk
            done.append(row)
            fd = row["metrics"]["fd"]
            bar.clear()  # the line below the bar, not inside it
            print(f"{row['sampler']}, NFE {row['nfe']}: FD {ev.plus_minus(fd['mean'], fd['std'])}")
            if args.json:
                _write_json(args.json, {**header, "sweep": done, "complete": False})

        runs = [ev.steps_for(name, nfe) for name in names for nfe in args.sweep_steps]
        with sampling_bar(runs) as bar:
            rows = ev.sweep(
                sampled, data, features, samplers=names, nfes=args.sweep_steps,
                progress=progress, callback=bar.step, **options,
            )  # fmt: skip
        print(ev.format_sweep(rows))
        result = {**header, "sweep": rows, "complete": True}
        if args.plot:
            print(f"plot: {ev.plot_sweep(rows, args.plot, title=str(args.model))}")
    else:
        with sampling_bar([args.steps]) as bar:
            result = ev.evaluate(
                sampled, data, features, sampler=args.sampler, steps=args.steps,
                callback=bar.step, **options,
            )  # fmt: skip
        names = model_classes(config)
        named = names != [str(i) for i in range(len(names))]  # class folders' names
        print(ev.format_result(result, names if named else None))
        result = {**header, **result}
        if named:  # the keys of class_accuracy and real_classes are indices into these
            result["class_names"] = names
    if args.bpd > 0:
        bpd_steps = math.ceil(args.bpd / args.batch) * ev.BPD_STEPS
        with step_bar(bpd_steps, "bits/dim", args.quiet, checked=False) as bar:
            bpd = ev.bits_per_dim(
                unconditional, data, args.bpd, batch=args.batch, device=device, callback=bar.step
            )
        of = {"mixture": "; the class-posterior mixture", "null": "; the null class"}.get(kind, "")
        if kind is not None:
            bpd["unconditional"] = kind
        result["bits_per_dim"] = bpd
        spread = "" if math.isnan(bpd["std_err"]) else f" ± {bpd['std_err']:.3f}"
        print(f"bits/dim {bpd['mean']:.3f}{spread} ({args.bpd} real images{of})")
    if args.json:
        _write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _check_sweep_options(args) -> None:
    """Refuse (UsageError) options that the run would not use: ``--samplers`` and ``--plot``
    without ``--sweep-steps`` (ignored, or refused after the model and features were loaded),
    and ``--sampler`` or ``--steps`` given with it (the sweep sets both)."""
    if args.sweep_steps:
        unused = given_names(args, ("sampler", "steps"))
        if unused:
            raise UsageError(f"{' and '.join(unused)} would be unused: --sweep-steps gives "
                             "the steps, and --samplers the samplers")  # fmt: skip
    else:
        unused = [option_name(option) for option in ("samplers", "plot") if getattr(args, option)]
        if unused:
            raise UsageError(f"{' and '.join(unused)} need{'s' if len(unused) == 1 else ''} "
                             "--sweep-steps")  # fmt: skip


def _resolve_classes(args, config: dict) -> str | None:
    """Resolve ``--classes`` to indices (:func:`~diffvision.cli.common.class_index`), and refuse
    (UsageError), before the model and the features are loaded, ``--classes`` for an
    unconditional model (``none`` was ignored), classes the model does not have, one class
    given twice, and ``--guidance`` where no class is sampled (an unconditional model or
    ``--classes none``: there is no condition to guide towards; it was a traceback); and, for a
    model that learnt no null class, what uses it (``--guidance``; ``--classes none`` and
    ``--bpd`` without a noise classifier: :func:`~diffvision.cli.common.require_null_class`).
    Returns how ``--classes none`` and ``--bpd`` make a class model unconditional
    (:func:`~diffvision.cli.common.unconditional_kind`: as ``sample`` without ``--class``),
    None where neither is given, or the model is unconditional."""
    num_classes = config["net"].get("num_classes", 0)
    if args.classes is not None and not num_classes:
        raise UsageError("this model is unconditional: --classes is not available")
    unconditional = args.classes == [] or args.bpd > 0  # a class model used without a class
    if args.unconditional != "auto" and not (num_classes and unconditional):
        raise UsageError("--unconditional is for a class model's --classes none (its "
                         "unconditional samples) and --bpd (their likelihood)")  # fmt: skip
    if args.classes:
        chosen = [class_index(text, config, "--classes") for text in args.classes]
        if len(set(chosen)) < len(chosen):  # a name and its index (text repeats: listed)
            raise UsageError(f"--classes names one class twice ({', '.join(args.classes)})")
        args.classes = chosen
    if args.guidance != 1.0 and (not num_classes or args.classes == []):
        why = "the model is unconditional" if not num_classes else "--classes none samples none"
        raise UsageError(f"--guidance needs classes to guide towards: {why}")
    if args.guidance != 1.0:
        require_null_class(config, args.model, "--guidance")
    if not (num_classes and unconditional):
        return None
    what = "--classes none" if args.classes == [] else "--bpd"
    return unconditional_kind(args.unconditional, config, args.model, what)


def _write_json(path: str, result: dict) -> None:
    """``result`` as strict JSON (NaN as null), replacing ``path`` whole (written, then
    renamed: an interruption leaves the last complete file)."""
    from ..io.atomic import write_text_whole

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_nan_to_null(result), indent=1, allow_nan=False)
    write_text_whole(path, text)
