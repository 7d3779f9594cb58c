"""``diffvision info``: describe a model folder (or a feature network's)."""

from __future__ import annotations

import json

from .common import _formatter, counted, first_names, model_classes


def add_parser(sub) -> None:
    """Add the ``info`` subcommand and its options to ``sub`` (the subparsers)."""
    i = sub.add_parser(
        "info",
        help="describe a model folder (or a feature network's)",
        formatter_class=_formatter,
        epilog="example:\n  diffvision info runs/digits/model",
    )
    i.add_argument("model", help="model folder (or a feature network's, from eval train-features)")


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
