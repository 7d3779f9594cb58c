"""Data: image folders and built-in data sets, as :class:`ImageData` (images in [-1, 1])."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..process import check_int
from .builtin import BUILTIN, digits, faces, mnist, read_idx, shapes
from .dataset import ImageData, to_depth
from .deadleaves import deadleaves
from .folder import load_image_folder
from .photos import HELD_OUT, held_out_photos, photos
from .transforms import check_white

__all__ = [
    "BUILTIN",
    "HELD_OUT",
    "ImageData",
    "deadleaves",
    "digits",
    "faces",
    "held_out_photos",
    "load_data",
    "load_image_folder",
    "mnist",
    "photos",
    "pooled_parts",
    "read_idx",
    "shapes",
]


def load_data(
    spec: str | os.PathLike,
    size: int | None = None,
    *,
    channels: int | None = None,
    white_level: int | None = None,
) -> ImageData:
    """Load data by a command-line style spec.

    ``digits``, ``faces``, ``shapes``, ``photos``, ``photos-grey``, ``deadleaves`` (built in;
    ``size`` optional), ``mnist:FOLDER`` (the MNIST IDX files in FOLDER), a path to an image
    folder (``size`` default: its images' shorter side, where they share one), or several of
    these joined by ``+`` (their images pooled, without labels; e.g. ``photos+deadleaves``).
    ``white_level``: the value of white in an image folder's 16-bit files (default: found from
    them, see :func:`load_image_folder`).
    """
    if isinstance(spec, os.PathLike):  # a folder (or a stack) given as a Path
        spec = os.fspath(spec)
    if not isinstance(spec, str):  # None was an AttributeError from .strip()
        raise ValueError(f"the data spec must be a name or a path, not {spec!r}")
    if size is not None:
        check_int("size", size, 1)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {channels!r}")
    if white_level is not None:
        check_white(white_level)
    if not spec.strip():  # Path("") is the working folder, which was searched for images
        raise ValueError(f"empty data spec: give a folder or one of {', '.join(BUILTIN)}")
    parts = pooled_parts(spec)
    if not all(part.strip() for part in parts):
        raise ValueError(f"data spec {spec!r} has an empty part next to a +")
    named = [_identity(part) for part in parts]
    twice = next((i for i in range(len(parts)) if named[i] in named[:i]), None)
    if twice is not None:  # its images counted twice over, the other part's half as much
        first = parts[named.index(named[twice])].strip()
        both = first if first == parts[twice].strip() else f"{first} and {parts[twice].strip()}"
        raise ValueError(f"data spec {spec!r} names one set twice ({both}): pool each set once")
    if parts:
        loaded = [
            load_data(part, size, channels=channels, white_level=white_level) for part in parts
        ]
        return _pooled(loaded)
    if spec == "digits":
        return digits(size)
    if spec == "faces":
        return faces(size)
    if spec == "shapes":
        return shapes(size or 32)
    if spec == "deadleaves":
        return deadleaves(size or 32, channels=channels or 3)
    if spec in ("photos", "photos-grey"):
        return photos(size or 32, channels=1 if spec == "photos-grey" or channels == 1 else 3)
    if spec == "mnist":
        raise ValueError("mnist needs the folder of its IDX files: --data mnist:FOLDER")
    if spec.startswith("mnist:"):
        return mnist(spec.split(":", 1)[1], size)
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"data not found: {spec!r} is neither a built-in set "
            f"({', '.join(BUILTIN)}) nor a folder (or a TIFF stack)"
        )
    return load_image_folder(path, size, channels=channels, white_level=white_level)


def pooled_parts(spec: str) -> list[str]:
    """The specs that ``A+B`` pools, or [] for a single spec (a folder whose name holds a ``+``
    is a single spec)."""
    return spec.split("+") if "+" in spec and not Path(spec).exists() else []


def _identity(part: str) -> str:
    """What a pooled part names, so that one set named twice is seen: a folder (an MNIST one
    too) by its resolved path, a built-in set by its name."""
    part = part.strip()
    prefix, path = ("mnist:", part[6:]) if part.startswith("mnist:") else ("", part)
    return prefix + str(Path(path).resolve()) if Path(path).exists() else part


def _pooled(parts: list[ImageData]) -> ImageData:
    """The images of several data sets of one shape, as one unlabelled set: in memory, or
    decoded on access where a part is (a folder too large to hold: pooling decoded it whole)."""
    shapes_ = {(p.channels, p.size) for p in parts}
    if len(shapes_) != 1:
        raise ValueError(
            "pooled data sets must share channels and size; got "
            + ", ".join(f"{p.name} {p.channels}x{p.size}" for p in parts)
        )
    dtype = torch.uint16 if any(p.dtype == torch.uint16 for p in parts) else torch.uint8
    decode = decode_many = None
    if any(p.decode is not None for p in parts):  # each image from its part, when asked for
        images = [(k, i) for k, p in enumerate(parts) for i in range(len(p))]

        def decode(item: tuple[int, int]) -> torch.Tensor:  # 8-bit widened beside 16-bit
            return to_depth(parts[item[0]].pixels(item[1]), dtype)

        def decode_many(batch: list[tuple[int, int]]) -> list[torch.Tensor]:
            got = {}  # each part's images of the batch together (side by side, where it can)
            for k, part in enumerate(parts):
                mine = [i for j, i in batch if j == k]
                if mine and part.decode_many is not None:
                    pixels = part.decode_many([part.images[i] for i in mine])
                else:
                    pixels = [part.pixels(i) for i in mine]
                got.update({(k, i): to_depth(p, dtype) for i, p in zip(mine, pixels, strict=True)})
            return [got[item] for item in batch]
    else:
        images = torch.cat([to_depth(p.images, dtype) for p in parts])
    levels = sorted({p.white_level for p in parts if p.white_level})
    if len(levels) > 1:
        raise ValueError(
            f"the pooled folders' 16-bit files have different white levels {levels}: "
            "give one (--white-level)"
        )
    channels, size = shapes_.pop()
    name = "+".join(p.name for p in parts)
    return ImageData(
        images,
        channels=channels,
        size=size,
        decode=decode,
        decode_many=decode_many,
        dtype=dtype,
        name=name,
        white_level=levels[0] if levels else None,
        upscaled=sum(p.upscaled for p in parts),
        stacked=sum(p.stacked for p in parts),
    )
