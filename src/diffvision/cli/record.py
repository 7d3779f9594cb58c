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


def read_record(path: Path, settings: dict, what: str, holds_results: bool = True) -> dict | None:
    """The record at ``path`` (a dict with its ``settings`` and what the command keeps), or None
    when there is none, or when its folder holds none of its results (``holds_results``
    False: a run that failed or was stopped before its first result binds nothing). Raises
    UsageError when it is unreadable or its settings differ from ``settings`` (the message
    names the options that differ; ``what``: the results, e.g. "samples")."""
    if not path.is_file() or not holds_results:
        return None
    try:
        record = json.loads(path.read_text())
        old = record["settings"]
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
NAMES = {"task": "the task", "input": "the input"}
#: Settings whose None is a value of their option: what it is called in messages.
NONE_NAMES = {"unconditional": "null"}


def _difference(key: str, now, then) -> str:
    """A setting that differs from a record's, said as the option with both values
    ("--steps 5 (the folder's: 20)"), not by its name in the namespace ("label", "no_ema")."""
    if key == "model":
        return "another model (its files' SHA-256 differs)"
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
