"""Image decoding and geometry: PIL image -> uint8 tensor of a fixed square size."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the short side to ``size`` (bicubic; box filter when shrinking a lot) and crop the
    centre to ``size x size``."""
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    if new != (w, h):
        image = image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_uint8_tensor(image: Image.Image, channels: int) -> Tensor:
    """PIL image -> uint8 ``C x H x W`` (``channels`` 1: grayscale, 3: RGB)."""
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def array_to_uint8(images: np.ndarray, size: int | None) -> Tensor:
    """Float images ``N x H x W`` (or ``N x H x W x C``) in [0, 1] -> uint8 ``N x C x S x S``,
    resized to ``size`` (square) when given."""
    if images.ndim == 3:
        images = images[..., None]
    out = torch.from_numpy(np.clip(images * 255 + 0.5, 0, 255).astype(np.uint8)).permute(0, 3, 1, 2)
    if size is not None and (out.shape[-1] != size or out.shape[-2] != size):
        resized = torch.nn.functional.interpolate(
            out.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
        out = resized.round().clamp(0, 255).to(torch.uint8)
    return out.contiguous()


def hflip(images: Tensor, flip: Tensor) -> Tensor:
    """Flip the images (``N x C x H x W``) whose entry in the bool tensor ``flip`` is True."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
