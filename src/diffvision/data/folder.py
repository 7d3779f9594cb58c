"""Image folders: recursive scan, optional class sub-folders, every frame of a stack, resize +
centre crop, caching."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..process import check_int
from .dataset import ImageData
from .transforms import (
    GREY_MODES,
    OUTSIDE_16_BITS,
    UNREADABLE_IMAGE,
    WIDE_MODES,
    HeldFiles,
    check_white,
    deep_colour_pixels,
    frame_count,
    is_16_bit_image,
    is_deep_colour,
    keep_open,
    read_square,
    read_squares,
    seek_frame,
    unreadable,
    white_level_for,
)

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_LIMIT_BYTES = 4 << 30
#: Threads that read an image folder's files side by side, each file on one (PIL and OpenCV
#: decode and resize with the GIL released): its headers, its images, and the batches of a set
#: decoded on access. At most this many, and the CPUs this process may use.
DECODE_THREADS = 8


def _decoders() -> ThreadPoolExecutor:
    """The threads that decode batches (made on first use, and again in a forked process,
    where the parent's threads are not)."""
    global _DECODERS
    if _DECODERS is None or _DECODERS[0] != os.getpid():
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, min(DECODE_THREADS, cpus or 1))
        _DECODERS = (os.getpid(), ThreadPoolExecutor(threads, "decode"))
    return _DECODERS[1]


_DECODERS: tuple[int, ThreadPoolExecutor] | None = None  # the process that made them
#: How many files :func:`side_by_side` has in hand at once (a folder of 400,000 files was as
#: many tasks queued at once).
IN_FLIGHT = 64


def side_by_side(read: Callable, files: Iterable) -> Iterator:
    """``read(file)`` of each of ``files``, in order, read on the decode threads with at most
    :data:`IN_FLIGHT` in hand; an error is raised where its file comes, and the reads queued
    after it are dropped."""
    pool, pending = _decoders(), deque()
    try:
        for file in files:
            pending.append(pool.submit(read, file))
            if len(pending) >= IN_FLIGHT:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def find_images(root: Path) -> list[Path]:
    """All image files under ``root`` (recursive, sorted, hidden files skipped)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except UNREADABLE_IMAGE as err:
        raise unreadable(path, err) from None
    return image


class Header(NamedTuple):
    """What :func:`read_headers` reads of one frame of an image file."""

    mode: str  #: PIL's mode
    side: int  #: the shorter side, pixels
    top: int | None  #: a 16-bit frame's largest value (with ``deep_values``), else None
    deep: bool  #: whether the frame holds 16 bits per channel


def read_headers(path: Path, deep_values: bool = True) -> list[Header]:
    """The :class:`Header` of each frame of an image file (one for most files; a TIFF stack's
    pages, an animation's frames), from its header; only 16-bit frames are decoded (their
    values give the white level, see :func:`~diffvision.data.transforms.white_level_for`)."""
    headers = []
    try:
        with keep_open(path) as image:  # held: 16-bit colour pages too
            for frame in range(getattr(image, "n_frames", 1)):
                seek_frame(image, frame)
                mode, side, low, top = image.mode, min(image.size), 0, None
                if deep_values and mode in WIDE_MODES and side > 0:
                    values = np.asarray(image)
                    low, top = int(values.min()), int(values.max())
                elif deep_values and is_deep_colour(image):
                    top = int(deep_colour_pixels(path, frame=frame).max())
                if top is not None and (low < 0 or top > 65535):  # mode "I": 32-bit signed
                    raise ValueError(OUTSIDE_16_BITS)
                headers.append(Header(mode, side, top, is_16_bit_image(image)))
    except UNREADABLE_IMAGE as err:
        raise unreadable(path, err) from None
    return headers


def load_image_folder(
    root: str | Path,
    size: int | None = None,
    *,
    channels: int | None = None,
    labels: bool = True,
    white_level: int | None = None,
    cache_limit_bytes: int = CACHE_LIMIT_BYTES,
) -> ImageData:
    """Load a folder of images as square ``size x size`` images; each frame of a file that
    holds several (a TIFF stack's pages, an animation's frames) is an image of the set, and
    such a file may be given for the folder.

    Args:
        root: folder searched recursively for png, jpg, bmp, gif, webp and tiff files, or one
            file of several frames (a TIFF stack).
        size: output side length in pixels (short side resized, centre cropped); default: the
            images' shorter side, where every frame has the same one (else ValueError).
        channels: 1 (grayscale) or 3 (RGB); default: 1 if every image is grayscale, else 3.
        labels: when every image sits in a first-level sub-folder and there are at least two,
            the sub-folder names become the classes (sorted); set False to ignore them.
        white_level: the value of white in 16-bit files (e.g. 4095 for a 12-bit camera's);
            default: found from the files (:func:`deep_white_level`). 8-bit files are unaffected.
        cache_limit_bytes: decoded images are kept in memory (uint8; uint16 for a set with
            16-bit files, whose levels 8 bits would round away) when they fit under this.
    Raises:
        ValueError: missing or empty folder, or an unreadable image (named in the message).
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"image folder not found: {root}")
    if size is not None:
        check_int("size", size, 1)
    paths = find_images(root) if root.is_dir() else [root]
    if root.is_file() and frame_count(root) < 2:  # one image given for its folder
        raise ValueError(f"{root} is a file: give the folder of training images that holds it")
    if not paths:
        raise ValueError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {root}")
    if channels not in (None, 1, 3):
        raise ValueError("channels must be 1 or 3")
    if white_level is not None:
        check_white(white_level)
    # one pass over the headers (and the 16-bit files' values): the images are decoded once
    per_file = list(side_by_side(lambda p: read_headers(p, white_level is None), paths))
    headers = [h for file in per_file for h in file]
    items = [(p, k) for p, file in zip(paths, per_file, strict=True) for k in range(len(file))]
    if channels is None:
        channels = 1 if all(h.mode in GREY_MODES for h in headers) else 3
    if size is None:  # the images' own size, where they agree on one
        sides = sorted({h.side for h in headers})
        if len(sides) > 1:
            raise ValueError(f"the images of {root} have shorter sides from {sides[0]} to "
                             f"{sides[-1]} px: give the size to use (--size)")  # fmt: skip
        size = sides[0]
        check_int("size", size, 1)  # a 0-pixel image
    tops = [h.top for h in headers if h.top is not None]
    white = white_level or (white_level_for(max(tops)) if tops else None)
    if not any(h.deep for h in headers):  # 8-bit files: no white level to use or record
        white = None
    said = {  # what the set makes of its files, for notes
        "upscaled": sum(h.side < size for h in headers),
        "stacked": sum(len(file) > 1 for file in per_file),
    }

    class_names, label_tensor = [], None
    parts = [p.relative_to(root).parts for p, _ in items]
    loose = sum(len(part) < 2 for part in parts)  # beside the sub-folders, not in one
    if labels and len({part[0] for part in parts if len(part) >= 2}) >= 2:
        said["loose"] = loose  # class folders that a loose image keeps from being classes
    if labels and not loose:
        class_names = sorted({part[0] for part in parts})
        if len(class_names) >= 2:
            index = {name: i for i, name in enumerate(class_names)}
            label_tensor = torch.tensor([index[part[0]] for part in parts], dtype=torch.long)
        else:
            class_names = []

    dtype = torch.uint16 if white else torch.uint8  # 16-bit files' levels kept in memory
    stacks = {p for p, file in zip(paths, per_file, strict=True) if len(file) > 1}
    held = HeldFiles()  # decoded on access, a stack stays open (its pages found once)

    def decode(item: tuple[Path, int]) -> torch.Tensor:
        # upright as a viewer shows it: phones store photos sideways with an EXIF orientation
        path, frame = item
        try:
            if path in stacks:
                held.hold(path)
            return read_square(path, size, channels, white or 65535, frame, dtype)
        except UNREADABLE_IMAGE as err:  # also float images
            raise unreadable(path, err) from None

    def decode_all(path: Path) -> list[torch.Tensor]:  # a stack's frames from one opening
        try:
            return list(read_squares(path, size, channels, white or 65535, dtype))
        except UNREADABLE_IMAGE as err:
            raise unreadable(path, err) from None

    if len(items) * channels * size * size * dtype.itemsize <= cache_limit_bytes:
        decoded = side_by_side(decode_all, paths)  # each file on one thread
        images = torch.stack([image for frames in decoded for image in frames])
        return ImageData(
            images,
            channels=channels,
            size=size,
            labels=label_tensor,
            class_names=class_names,
            name=str(root),
            white_level=white,
            **said,
        )

    def decode_many(batch: list[tuple[Path, int]]) -> list[torch.Tensor]:
        # files side by side; a stack's frames one after another, on this thread: one PIL image
        # of it is held open, which is not to be read from two threads at once
        alone = [item for item in batch if item[0] not in stacks]
        decoded = dict(zip(alone, side_by_side(decode, alone), strict=True))
        return [decoded[item] if item in decoded else decode(item) for item in batch]

    # decoded at training time: an unreadable file is named now, not then
    for _ in side_by_side(lambda path: _open(path).close(), paths):
        pass
    return ImageData(
        items,
        channels=channels,
        size=size,
        labels=label_tensor,
        class_names=class_names,
        decode=decode,
        decode_many=decode_many,
        dtype=dtype,
        name=str(root),
        white_level=white,
        **said,
    )
