"""Files written whole: under a temporary name, then renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` by calling ``write(tmp)`` on a hidden temporary file beside it and then
    renaming that over ``path`` (an atomic step on one file system), so an interruption
    (Ctrl-C, SIGTERM, a full disk) leaves the old file or the new one, never a part of one. The
    temporary name keeps ``path``'s suffix, so writers that choose the format by it (PIL,
    OpenCV) still do, and holds the process id, so processes writing the same file at once
    (every torchrun rank writes a run's run.json) each rename a whole file of their own, where
    one shared name let one rank's rename take the other's file from under it; it is removed if
    ``write`` fails. Returns ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_whole(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole (see :func:`write_whole`)."""
    return write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
