"""Model folders: ``config.json`` + ``model.safetensors`` (+ ``ema.safetensors``).

Loading reads JSON and tensors only; it never unpickles anything."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..denoiser import Denoiser
from ..nets.classifier import NoiseClassifier, NoiseClassifierConfig
from ..nets.features import FeatureNet, FeatureNetConfig
from ..nets.unet import UNet, UNetConfig
from ..process import get_schedule, is_int
from .atomic import write_text_whole, write_whole

FORMAT = "diffvision-model"
VERSION = 1
CLASSIFIER_FORMAT = "diffvision-noise-classifier"


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


#: The files a model folder holds (a feature network's: the first two; a checkpoint's: also
#: ``state.pt``): an existing folder with any other file is not replaced by
#: :func:`save_model_folder`.
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "ema.safetensors",
    "classifier.safetensors",
    "classifier.json",
    "state.pt",
)


#: What each kind of network in a model folder is called in messages.
KIND_NAMES = {"unet": "a diffusion model", "features": "a feature network"}


def check_replaceable(folder: str | Path, kind: str | None = None) -> None:
    """Raise ValueError unless writing a model folder at ``folder`` loses nothing but an earlier
    model folder of the same ``kind`` (its ``net.kind``; None: any): it is new, empty, or holds
    only :data:`MODEL_FILES` (a folder of someone's files given as ``--out`` was replaced
    whole; ``eval train-features --out`` of a trained model's folder replaced the model)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file: not replaced by a model folder; give another path")
    others = sorted(  # but model files, and the temporary files a killed writer left of them
        p.name for p in folder.iterdir() if p.name not in MODEL_FILES and not _partial(p.name)
    )
    if others:
        more = f" and {len(others) - 1} more" if others[1:] else ""
        raise ValueError(
            f"{folder} holds {others[0]!r}{more}, which no model folder holds: not replaced; "
            "give a new or empty folder"
        )
    held = _kind_in(folder)
    if kind is not None and held is not None and held != kind:
        raise ValueError(
            f"{folder} holds {KIND_NAMES.get(held, held)}, not {KIND_NAMES.get(kind, kind)}: "
            "not replaced; give another folder"
        )


def is_model_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a model folder (or a checkpoint, or a feature network's): it holds
    ``config.json`` and ``model.safetensors``."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _kind_in(folder: Path) -> str | None:
    """The ``net.kind`` of the model folder ``folder``, or None where it has no readable one."""
    try:
        return json.loads((folder / "config.json").read_text())["net"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _partial(name: str) -> bool:
    """Whether ``name`` is the temporary file of :func:`~diffvision.io.atomic.write_whole`."""
    return name.startswith(".") and ".partial" in name


def save_model_folder(
    folder: str | Path, config: dict, model: nn.Module, ema: nn.Module | None = None
) -> Path:
    """Write a model folder atomically (a temporary sibling folder renamed into place), over an
    earlier model folder of the same kind there but nothing else (:func:`check_replaceable`).

    ``config`` holds ``net``, ``denoiser`` and ``schedule`` entries (see :func:`model_config`)
    plus anything descriptive (data, training settings)."""
    folder = Path(folder)
    check_replaceable(folder, (config.get("net") or {}).get("kind"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "config.json").write_text(
            json.dumps({"format": FORMAT, "version": VERSION, **config}, indent=1)
        )
        save_file(_state(model), str(tmp / "model.safetensors"))
        if ema is not None:
            save_file(_state(ema), str(tmp / "ema.safetensors"))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def model_config(net: UNet, denoiser: Denoiser, **extra) -> dict:
    """The rebuild recipe of a denoiser with a U-Net: net, parametrisation and schedule."""
    return {
        "net": {"kind": "unet", **net.config.to_dict()},
        "denoiser": {
            "prediction": denoiser.prediction,
            "sigma_data": denoiser.sigma_data,
            "null_cond": denoiser.null_cond,
        },
        "schedule": denoiser.schedule.config() if denoiser.schedule is not None else None,
        **extra,
    }


def read_json_object(path: Path) -> dict:
    """The JSON object (a dict) in the file ``path``, read as input: ValueError naming the file
    where it is not valid JSON or holds another kind of value (a list, a number)."""
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def read_config(folder: str | Path) -> dict:
    """The ``config.json`` of a model folder, validated."""
    folder = Path(folder)
    if folder.is_file():  # a file of the folder given, say its config.json
        raise ValueError(f"{folder} is a file; give the model folder that holds it")
    if not folder.is_dir():
        raise ValueError(f"model folder not found: {folder}")
    path = folder / "config.json"
    if not path.is_file():
        hint = ""
        if (folder / "model" / "config.json").is_file():
            hint = f": it is a run folder, its model is {folder / 'model'}"
        elif (folder / "run.json").is_file():
            hint = (
                f": it is a run folder with no model yet (diffvision train --out {folder} --resume)"
            )
        raise ValueError(f"{folder} is not a diffvision model folder (no config.json){hint}")
    config = read_json_object(path)
    found = config.get("format")
    if found != FORMAT:
        raise ValueError(f"{path} is not a diffvision model config (format {found!r})")
    version = config.get("version", 0)
    if not isinstance(version, int):
        raise ValueError(f"{path}: version must be an integer, not {version!r}")
    if version > VERSION:
        raise ValueError(f"{path} needs a newer diffvision (version {version})")
    if not isinstance(config.get("net"), dict):
        raise ValueError(f"{path} has no 'net' section describing the network")
    return config


def sample_shape(config: dict, folder: str | Path) -> tuple[int, int, int]:
    """The ``C x H x W`` of the images that the model of ``config`` (read from ``folder``)
    makes, its ``sample_shape``: ValueError naming the folder where it holds another kind of
    network (a feature network: "has no sample_shape", said after its loading) or no such
    shape."""
    kind = config["net"].get("kind", "unet")
    if kind != "unet":
        held = KIND_NAMES.get(kind, f"a network of kind {kind!r}")
        raise ValueError(f"{folder} holds {held}, not {KIND_NAMES['unet']}")
    shape = config.get("sample_shape")
    if not (
        isinstance(shape, list) and len(shape) == 3 and all(is_int(v) and v > 0 for v in shape)
    ):
        raise ValueError(f"{Path(folder) / 'config.json'} has no sample_shape (C, H, W)")
    return tuple(shape)


def build_denoiser(config: dict, net_device: str | torch.device | None = None) -> Denoiser:
    """A freshly initialised denoiser from a config (no weights loaded); its network made on
    ``net_device`` (e.g. ``"meta"``: shapes only; the schedule is always made on the CPU, as
    discrete schedules compute their numbers)."""
    net_cfg = dict(config["net"])
    kind = net_cfg.pop("kind", "unet")
    if kind == "features":
        raise ValueError("this folder holds a feature network (for `diffvision eval`), not a model")
    if kind != "unet":
        raise ValueError(f"unknown network kind {kind!r}")
    with torch.device(net_device) if net_device is not None else contextlib.nullcontext():
        net = UNet(UNetConfig(**net_cfg))
    schedule = get_schedule(**_section(config, "schedule")) if config.get("schedule") else None
    den = _section(config, "denoiser")
    return Denoiser(
        net,
        den["prediction"],
        schedule,
        sigma_data=den.get("sigma_data", 0.5),
        null_cond=den.get("null_cond") if learnt_null_class(config) else None,
    )


def learnt_null_class(config: dict) -> bool:
    """Whether the model of ``config`` learnt its null class (classifier-free guidance's "no
    class"): a class model trained with label dropout 0 never saw it, so its null branch is
    an untrained embedding, and such a model is loaded without a ``null_cond`` (guidance and
    unconditional use are refused). Models without classes have no null class; configs that do
    not record the dropout are taken at their word."""
    if not config.get("net", {}).get("num_classes"):
        return False
    training = config.get("training")
    dropout = training.get("label_dropout") if isinstance(training, dict) else None
    return not (isinstance(dropout, (int, float)) and dropout <= 0)


def _section(config: dict, key: str) -> dict:
    """``config[key]``, which must be a JSON object (KeyError where it is missing)."""
    value = config[key]
    if not isinstance(value, dict):
        raise ValueError(f"its {key!r} entry must be a JSON object, not {value!r}")
    return value


def _read_weights(weights: Path, read):
    """``read(path)`` of the safetensors file ``weights``; ValueError naming it when it is
    missing or unreadable (truncated, say)."""
    if not weights.is_file():
        raise ValueError(f"{weights.parent} has no {weights.name}")
    try:
        return read(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"cannot read {weights}: {err}") from None


def _load_weights(module: nn.Module, weights: Path) -> None:
    state = _read_weights(weights, load_file)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        found = " ".join(str(err).split())  # one line: torch lists each mismatch on its own
        raise ValueError(f"{weights} does not match its config.json: {found[:300]}") from None


def parameter_count(folder: str | Path) -> int:
    """The number of network parameters in a model folder (from ``model.safetensors``'s header:
    no tensor is read)."""

    shapes = _read_weights(Path(folder) / "model.safetensors", _header_shapes)
    return sum(math.prod(shape) for shape in shapes.values())


def _header_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the safetensors file ``path``, from its header alone."""
    with safe_open(path, "pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def model_digest(folder: str | Path) -> str:
    """SHA-256 (hex) of a model folder's config and weights (``config.json`` and its
    ``*.safetensors`` files, by name): the same digest means the same model."""
    import hashlib

    from .digest import update_from_file

    folder = Path(folder)
    digest = hashlib.sha256()
    for path in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        digest.update(path.name.encode() + b"\0")
        update_from_file(digest, path)
    return digest.hexdigest()


def save_feature_net(folder: str | Path, net: FeatureNet, info: dict) -> Path:
    """Write a feature network as a model folder (``net.kind = "features"``, ``info`` kept as the
    ``features`` entry: task, held-out score, data)."""
    config = {"net": {"kind": "features", **net.config.to_dict()}, "features": info}
    return save_model_folder(folder, config, net)


def load_feature_net(folder: str | Path) -> FeatureNet:
    """Load a feature network folder written by :func:`save_feature_net` (eval mode, CPU)."""
    folder = Path(folder)
    config = read_config(folder)
    net_cfg = dict(config.get("net") or {})
    if net_cfg.pop("kind", None) != "features":
        raise ValueError(f"{folder} is not a feature network folder (see `diffvision eval --help`)")
    net = FeatureNet(FeatureNetConfig(**net_cfg))
    _load_weights(net, folder / "model.safetensors")
    net.info = config.get("features", {})
    return net.eval()


def _built(folder: Path, config: dict, net_device: str | None = None) -> Denoiser:
    """:func:`build_denoiser`, or a ValueError naming ``folder``'s config.json where it does not
    describe a model (a config made or edited elsewhere: a missing entry, a wrong type)."""
    try:
        return build_denoiser(config, net_device)
    except (KeyError, TypeError, ValueError) as err:
        what = f"no {err} entry" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{folder / 'config.json'} does not describe a model: {what}") from None


def check_model_config(folder: str | Path) -> dict:
    """The config of a model folder (:func:`read_config`) once its model has been built from it
    on the meta device (no memory, no time) and the tensors it expects compared with those that
    ``model.safetensors``'s header lists (no tensor read): a check, for ``info``; ValueError
    where the config does not describe a model or not the one whose weights are there."""
    folder = Path(folder)
    config = read_config(folder)
    net = _built(folder, config, net_device="meta").net  # the schedule on the CPU: a
    # discrete one's numbers were .item() of meta tensors, a RuntimeError
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    weights = folder / "model.safetensors"
    found = _read_weights(weights, _header_shapes)
    for name in sorted(expected.keys() | found.keys()):
        if expected.get(name) != found.get(name):
            raise ValueError(
                f"{weights} does not match its config.json: {name} is "
                f"{found.get(name, 'missing')} there, {expected.get(name, 'not expected')} by "
                "the config"
            )
    return config


def load(folder: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> Denoiser:
    """Load a model folder as a ready :class:`~diffvision.denoiser.Denoiser` in eval mode.

    Args:
        folder: the model folder.
        ema: use the EMA weights when the folder has them (the usual choice for sampling).
        device: where to put the model.
    """
    if not isinstance(folder, (str, os.PathLike)):  # 123 was a TypeError from Path()
        raise ValueError(f"the model folder must be a path, not {folder!r}")
    folder = Path(folder)
    config = read_config(folder)
    denoiser = _built(folder, config)
    weights = folder / (
        "ema.safetensors" if ema and (folder / "ema.safetensors").is_file() else "model.safetensors"
    )
    _load_weights(denoiser.net, weights)
    denoiser.config = config
    return denoiser.to(device).eval()


def save_classifier(folder: str | Path, clf: NoiseClassifier, info: dict) -> Path:
    """Add a noise classifier to a model folder: ``classifier.safetensors`` then
    ``classifier.json`` (its config and ``info``), each written whole (:func:`write_whole`).
    Returns the path of ``classifier.json``."""
    folder = Path(folder)
    read_config(folder)  # a model folder, not any directory
    config = {"format": CLASSIFIER_FORMAT, "version": VERSION, "net": clf.config.to_dict()}
    config["info"] = info
    write_whole(folder / "classifier.safetensors", lambda tmp: save_file(_state(clf), str(tmp)))
    text = json.dumps(config, indent=1)
    return write_text_whole(folder / "classifier.json", text)


def classifier_file(folder: str | Path) -> Path:
    """Where a model folder keeps its noise classifier's config (``classifier.json``, beside
    its weights); a folder has a classifier where this file is."""
    return Path(folder) / "classifier.json"


def load_classifier(
    folder: str | Path, *, device: str | torch.device = "cpu"
) -> NoiseClassifier | None:
    """The noise classifier of a model folder (eval mode), or None when it has none;
    ValueError where ``folder`` is not a model folder (it was None, as for one without)."""
    read_config(folder)
    meta = classifier_file(folder)
    if not meta.is_file():
        return None
    config = read_json_object(meta)
    if config.get("format") != CLASSIFIER_FORMAT or config.get("version", 0) > VERSION:
        raise ValueError(f"{meta} is not a diffvision noise classifier this version can read")
    try:
        clf = NoiseClassifier(NoiseClassifierConfig(**config["net"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{meta} has an invalid classifier config: {err}") from None
    _load_weights(clf, meta.with_suffix(".safetensors"))
    clf.info = config.get("info", {})
    return clf.to(device).eval()
