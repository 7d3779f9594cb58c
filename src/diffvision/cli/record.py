"""A results folder's record (``restore.json``, ``sample.json``): the settings that made the
results in it, so that the same command run again (after an interruption, say) adds only what is
missing, and a command with other settings is refused rather than mixing its results in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import UsageError, option_name


def settings_of(args: argparse.Namespace, ignored: tuple[str, ...]) -> dict:
    """What a command's results depend on: its options but the ``ignored`` ones (where results
    go, how progress is shown, where it runs), with ``args.model`` replaced by the model's
    content, the SHA-256 of its files (a moved or copied model is the same model)."""
    from ..io.model_folder import model_digest

    skipped = {*ignored, "given"}  # the options typed (main() lists them), not their values
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in skipped}
    settings["model"] = model_digest(args.model)
    return settings


def recorded_prior(kind: str | None) -> str | None:
    """How a record holds the unconditional model a run used (``kind``, from
    :func:`~diffvision.cli.common.unconditional_kind`, None where none was made): "mixture", or
    None for the network run without a condition (an unconditional model, a class model's null
    class or a class drawn), as the records from before ``--unconditional`` held it, by no key.
    So ``auto`` and the kind it chose are one setting."""
    return "mixture" if kind == "mixture" else None


def typed_prior(model, class_drawn: bool = False) -> dict:
    """The ``typed`` of :func:`read_record` for records that held ``--unconditional`` as typed
    (``sample``'s until 2026-12-07, ``restore``'s for a day): ``null`` is None, and ``auto``
    what it chose, the mixture where the ``model`` folder has a noise classifier (the record's
    model digest covers the classifier, so it chose the same then) and no class was drawn."""
    from ..io.model_folder import classifier_file

    auto = "mixture" if classifier_file(model).is_file() and not class_drawn else "null"
    return {"unconditional": {"auto": recorded_prior(auto), "null": None}}


def read_record(
    path: Path,
    settings: dict,
    what: str,
    holds_results: bool = True,
    typed: dict | None = None,
    since: tuple[str, ...] = (),
) -> dict | None:
    """The record at ``path`` (a dict with its ``settings`` and what the command keeps), or None
    when there is none, or when its folder holds none of its results (``holds_results``
    False: a run that failed or was stopped before its first result binds nothing). Raises
    UsageError when it is unreadable or its settings differ from ``settings`` (the message
    names the options that differ; ``what``: the results, e.g. "samples"). ``typed``: for
    settings that older records held otherwise, {setting: {value then: value now}}; ``since``:
    settings recorded since a date, which a record from before lacks (it is not compared on
    them: what they bind was not recorded then)."""
    if not path.is_file() or not holds_results:
        return None
    try:
        record = json.loads(path.read_text())
        old = dict(record["settings"])
        old.update({key: settings.get(key) for key in since if key not in old})
        for key, values in (typed or {}).items():
            if isinstance(old.get(key), str) and old[key] in values:
                old[key] = values[old[key]]
        differ = sorted(k for k in old.keys() | settings.keys() if old.get(k) != settings.get(k))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"cannot read {path} ({err}): give another --out") from None
    if differ:
        said = "; ".join(_difference(k, settings.get(k), old.get(k)) for k in differ)
        raise UsageError(
            f"{path.parent} holds {what} made with other settings ({said}): give another --out, "
            "or delete that folder to start again"
        )
    return record


#: Settings that are no option: what each is called in messages.
NAMES = {"task": "the task", "input": "the input", "bits": "the files' bits per channel"}
#: Settings that are a file's SHA-256: the file, as messages name it.
DIGESTS = {"mask_sha256": "a --mask file", "kernel_sha256": "a --kernel file"}
#: Settings whose None is a value of their option: what it is called in messages.
NONE_NAMES = {"unconditional": "null", "bits": "8"}


def _difference(key: str, now, then) -> str:
    """A setting that differs from a record's, said as the option with both values
    ("--steps 5 (the folder's: 20)"), not by its name in the namespace ("label", "no_ema")."""
    if key == "model":
        return "another model (its files' SHA-256 differs)"
    if key in DIGESTS:
        return f"{DIGESTS[key]} of other content (its SHA-256 differs)"
    name = NAMES.get(key) or option_name(key)

    def value(v):
        if v is None:
            return NONE_NAMES.get(key, "none")
        return ("on" if v else "off") if isinstance(v, bool) else v

    return f"{name} {value(now)} (the folder's: {value(then)})"


def write_record(path: Path, settings: dict, **kept) -> None:
    """Write the record ``{"settings": settings, **kept}`` to ``path``, whole."""
    from ..io.atomic import write_text_whole

    write_text_whole(path, json.dumps({"settings": settings, **kept}, indent=1))
