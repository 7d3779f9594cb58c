"""Built-in data sets that need no download: digits, mnist (local IDX files), faces, shapes."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from ..memory import check_fits
from ..process import check_int
from .dataset import ImageData
from .transforms import array_to_uint8

BUILTIN = ("digits", "mnist", "faces", "shapes", "photos", "photos-grey", "deadleaves")


def digits(size: int | None = None) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) with labels 0-9;
    ``size`` resizes them (bicubic), default 8."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = array_to_uint8(raw.images / 16.0, size)
    return ImageData(
        images,
        channels=1,
        size=images.shape[-1],
        labels=torch.as_tensor(raw.target, dtype=torch.long),
        class_names=[str(i) for i in range(10)],
        name="digits",
    )


def faces(size: int | None = None) -> ImageData:
    """The 200 LFW face crops (25x25 grayscale) shipped with scikit-image; default size 24
    (cropped by one pixel so that it halves cleanly), or resized to ``size``."""
    from skimage.data import lfw_subset

    raw = lfw_subset()
    if size is None:
        raw, size = raw[:, :24, :24], None
    images = array_to_uint8(raw, size)
    return ImageData(images, channels=1, size=images.shape[-1], name="faces")


_MNIST_FILES = {
    "train": ("train-images", "train-labels"),
    "test": ("t10k-images", "t10k-labels"),
}


def _find_idx(folder: Path, stem: str, kind: str) -> Path:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            path = folder / f"{stem}{sep}{kind}-ubyte{suffix}"
            if path.is_file():
                return path
    raise ValueError(
        f"MNIST file {stem}-{kind}-ubyte[.gz] not found in {folder}; download the four IDX files "
        "of MNIST and pass their folder as --data mnist:FOLDER"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzipped): the format of the MNIST distribution."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise ValueError(
            f"{path} is truncated: expected {math.prod(shape)} values, found {body.size}"
        )
    return body.reshape(shape)


def mnist(folder: str | Path, size: int | None = None, split: str = "train") -> ImageData:
    """MNIST from its standard IDX files in ``folder`` (raw or .gz; ``train`` or ``test``)."""
    if split not in _MNIST_FILES:  # was a KeyError
        raise ValueError(f"split must be train or test, not {split!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"MNIST folder not found: {folder}")
    image_stem, label_stem = _MNIST_FILES[split]
    images = read_idx(_find_idx(folder, image_stem, "idx3"))
    labels = read_idx(_find_idx(folder, label_stem, "idx1"))
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    data = array_to_uint8(images.astype(np.float32) / 255.0, size)
    return ImageData(
        data,
        channels=1,
        size=data.shape[-1],
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=[str(i) for i in range(10)],
        name=f"mnist-{split}",
    )


SHAPE_NAMES = ("circle", "square", "triangle")


def shapes(size: int = 32, n: int = 2000, seed: int = 0) -> ImageData:
    """Procedural coloured shapes (circle, square, triangle; the class label) on smooth textured
    backgrounds. Deterministic for a given seed and size. ``boxes`` holds each shape's bounding
    box (x0, y0, x1, y1 in pixels, exclusive end) and ``masks`` its pixels."""
    check_int("shapes size", size, 8)
    check_int("n", n, 1)  # 1.5 was a TypeError from numpy
    check_int("seed", seed, 0)
    check_fits(  # the float32 images and the masks
        n * size * size * 13,
        torch.device("cpu"),
        f"drawing {n} shapes of {size} x {size}",
        "lower --size",
    )
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size, 3), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    boxes = np.empty((n, 4), dtype=np.float32)
    labels = rng.integers(0, len(SHAPE_NAMES), n)
    for i in range(n):
        # Background: two colours blended by a few random low-frequency waves.
        waves = (
            sum(
                np.sin(
                    2 * np.pi * (rng.uniform(0.5, 3) * (np.cos(a) * xx + np.sin(a) * yy) / size)
                    + rng.uniform(0, 2 * np.pi)
                )
                for a in rng.uniform(0, np.pi, 3)
            )
            / 3
        )
        c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
        t = (0.5 + 0.5 * waves)[..., None]
        bg = c0 * (1 - t) + c1 * t
        r = rng.uniform(0.15, 0.3) * size
        cx, cy = rng.uniform(r, size - r, 2)
        if labels[i] == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        elif labels[i] == 1:
            mask = (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
        else:  # upward triangle inscribed in the circle
            mask = (yy <= cy + r / 2) & (yy - (cy - r) >= np.abs(xx - cx) * math.sqrt(3))
        colour = rng.uniform(0, 1, 3)
        while np.abs(colour - bg.mean((0, 1))).sum() < 0.6:  # keep the shape visible
            colour = rng.uniform(0, 1, 3)
        images[i] = np.where(mask[..., None], colour, bg)
        masks[i] = mask
        ys, xs = np.nonzero(mask)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    data = ImageData(
        array_to_uint8(images, None),
        channels=3,
        size=size,
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(SHAPE_NAMES),
        name="shapes",
    )
    data.boxes = torch.from_numpy(boxes)
    data.masks = torch.from_numpy(masks)
    return data
