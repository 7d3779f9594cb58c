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


#: PIL's modes of one-channel images, 8- and 16-bit integer and float.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
#: The 16-bit greyscale modes (PNG and TIFF decode to "I;16"; older Pillow and some files give
#: "I", 32-bit, holding the same 0-65535 values).
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def white_level_for(max_value: int) -> int:
    """The white level of 16-bit files whose largest value is ``max_value``: the smallest
    ``2**k - 1`` (k = 8..16) at or above it, e.g. 4095 for a 12-bit camera's files, 65535 for
    data that uses the whole range."""
    if not 0 <= max_value <= 65535:
        raise ValueError(f"16-bit values are 0-65535, not {max_value}")
    return next(2**k - 1 for k in range(8, 17) if max_value <= 2**k - 1)


def to_unit_array(image: Image.Image, channels: int, white: int = 65535) -> np.ndarray:
    """PIL image -> float32 ``H x W x C`` in [0, 1] (``channels`` 1: grayscale, 3: RGB; a
    grey image is repeated in the three channels, colour is averaged by PIL's luma weights).

    8-bit images are divided by 255 and 16-bit greyscale ones by ``white``, their white level
    (65535, or e.g. 4095 for a 12-bit camera's files; values above it clip to 1), so their full
    depth is kept (PIL's own ``convert("L")`` clips 16-bit values at 255, which would make such
    an image white). Raises ValueError for a float image (mode "F": its range is unknown) and for
    32-bit integers outside 0-65535."""
    if image.mode == "F":
        raise ValueError("a floating-point image has no known range: save it as 8- or 16-bit")
    if image.mode in WIDE_MODES:
        if not 1 <= white <= 65535:
            raise ValueError(f"the white level of 16-bit images is 1-65535, not {white}")
        array = np.asarray(image).astype(np.float32)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError("a 32-bit integer image outside 0-65535: save it as 8- or 16-bit")
        array = np.minimum(array[:, :, None] / white, 1)
        return np.repeat(array, channels, axis=2)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    return (array[:, :, None] if array.ndim == 2 else array) / 255


def to_uint8_tensor(image: Image.Image, channels: int, white: int = 65535) -> Tensor:
    """PIL image -> uint8 ``C x H x W`` (``channels`` 1: grayscale, 3: RGB; 16-bit images
    scaled by their white level and rounded to 8 bits, see :func:`to_unit_array`)."""
    array = np.round(to_unit_array(image, channels, white) * 255).astype(np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


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
