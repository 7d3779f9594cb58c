"""SHA-256 digests of files: what a record binds a result to (a model folder's files, an
input image, a ``--mask`` file), so that the same digest means the same content wherever the
file has moved, and a file changed in place is told apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: How much of a file is read at a time.
BLOCK = 1 << 20


def update_from_file(digest, path: str | Path) -> None:
    """Feed the bytes of the file ``path`` to the hash object ``digest``, a block at a time."""
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the bytes of the file ``path``."""
    digest = hashlib.sha256()
    update_from_file(digest, path)
    return digest.hexdigest()
