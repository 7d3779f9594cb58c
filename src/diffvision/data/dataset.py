"""The in-memory image data set every loader returns."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

#: The integer types images are held in, and the value of white in each: 8 bits, or 16 for
#: data from 16-bit files, whose levels 8 bits would round away (a dim 12-bit image's 0-400
#: would keep 26 levels).
WHITE_OF = {torch.uint8: 255, torch.uint16: 65535}


def to_depth(images: Tensor, dtype: torch.dtype) -> Tensor:
    """Images held as one of :data:`WHITE_OF`'s types, in ``dtype`` (8-bit values widened to 16
    bits exactly: v * 257 / 65535 = v / 255)."""
    if images.dtype == dtype:
        return images
    if (images.dtype, dtype) != (torch.uint8, torch.uint16):
        raise ValueError(f"images of {images.dtype} are not made {dtype} without loss")
    return (images.to(torch.int32) * 257).to(torch.uint16)


class ImageData(Dataset):
    """Images with optional labels (and, for ``shapes``, boxes and masks).

    Images are stored either decoded as ``uint8`` (``N x C x H x W``, values 0..255; ``uint16``,
    0..65535, for data from 16-bit files) or as a list of file paths decoded on access by
    ``decode(path) -> C x H x W`` of that type (and a batch by ``decode_many(paths)``, where
    given, which may decode them side by side). Indexing returns ``(image, label)`` with
    ``image`` a float32 ``C x H x W`` tensor in [-1, 1] and ``label`` an int (-1 when
    unlabelled).

    Attributes:
        channels, size: image channels (1 or 3) and side length in pixels.
        labels: ``(N,)`` int64 tensor or None; class_names: list of names (index = label).
        boxes: optional ``N x 4`` float tensor (x0, y0, x1, y1 in pixels); masks: optional
            ``N x H x W`` bool tensor of the object's pixels.
        white_level: the value read as white in the 16-bit files the images came from (e.g.
            4095 for a 12-bit camera's), recorded in a model's config so that ``restore`` and
            ``eval`` read 16-bit files the same way; None when there were none.
        upscaled: how many images were enlarged to ``size`` from files with a shorter side
            (image folders; built-in sets are resized by design and count 0).
        stacked: how many files held several frames (TIFF stacks, animations), each frame an
            image of the set (image folders).
        loose: how many images lie beside two or more class sub-folders, not in one, so that
            the sub-folders are not taken as classes (image folders).
    """

    def __init__(
        self,
        images: Tensor | list,
        *,
        channels: int,
        size: int,
        labels: Tensor | None = None,
        class_names: list[str] | None = None,
        decode: Callable[[object], Tensor] | None = None,
        decode_many: Callable[[list], list[Tensor]] | None = None,
        name: str = "data",
        dtype: torch.dtype = torch.uint8,
        white_level: int | None = None,
        upscaled: int = 0,
        stacked: int = 0,
        loose: int = 0,
    ):
        if len(images) == 0:
            raise ValueError(f"{name}: no images")
        if isinstance(images, Tensor):
            dtype = images.dtype
        if isinstance(images, Tensor) and (
            dtype not in WHITE_OF or tuple(images.shape[1:]) != (channels, size, size)
        ):  # float images in [0, 1] were read as 0..255: all but black, without a word
            raise ValueError(
                f"{name}: images are a uint8 N x {channels} x {size} x {size} tensor (0..255; "
                f"uint16, 0..65535), not {images.dtype} of shape {tuple(images.shape)}"
            )
        if dtype not in WHITE_OF:
            raise ValueError(f"{name}: images are decoded as uint8 or uint16, not {dtype}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{name}: {len(labels)} labels for {len(images)} images")
        self.images = images
        self.dtype = dtype  # what the images are held in (decoded in)
        self.decode = decode
        self.decode_many = decode_many  # several items at once (side by side), for batches
        self.channels, self.size, self.name = channels, size, name
        self.white_level = white_level  # of the 16-bit files it was read from; None: none
        self.upscaled, self.stacked, self.loose = upscaled, stacked, loose
        self.labels = labels
        self.class_names = class_names or []
        self.boxes: Tensor | None = None
        self.masks: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, index: int) -> Tensor:
        """Image ``index`` as held: ``C x H x W`` of :attr:`dtype` (uint8, or uint16)."""
        item = self.images[index]
        return self.decode(item) if self.decode is not None else item

    def _unit(self, pixels: Tensor) -> Tensor:
        """Held pixels as float32 in [-1, 1]."""
        return pixels.to(torch.float32) / (WHITE_OF[self.dtype] / 2) - 1

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self._unit(self.pixels(index))
        label = int(self.labels[index]) if self.labels is not None else -1
        return image, label

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images ``len(indices) x C x H x W`` in [-1, 1] and labels (``-1`` when unlabelled)."""
        if self.decode is None:
            images = self._unit(self.images[indices])
        else:  # side by side where the set can, else one by one
            items = [self.images[int(i)] for i in indices]
            decoded = self.decode_many(items) if self.decode_many else map(self.decode, items)
            images = self._unit(torch.stack(list(decoded)))
        if self.labels is None:
            return images, torch.full((len(indices),), -1, dtype=torch.long)
        return images, self.labels[indices]

    def describe(self) -> dict:
        """JSON-serialisable summary (stored in a model's config)."""
        return {
            "name": self.name,
            "images": len(self),
            "channels": self.channels,
            "size": self.size,
            "class_names": self.class_names,
            **({"white_level": self.white_level} if self.white_level else {}),
        }
