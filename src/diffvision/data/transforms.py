"""Image decoding and geometry: image files (8- and 16-bit, upright) -> arrays in [0, 1] and
uint8 tensors of a fixed square size."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..memory import check_fits
from ..process import check_int

#: What reading an image file raises where the file is not an image this project can read: not
#: an image (PIL's UnidentifiedImageError is an OSError), truncated or malformed (OSError,
#: SyntaxError, ValueError), or so large that Pillow refuses it as a decompression bomb (over
#: twice ``Image.MAX_IMAGE_PIXELS``; its own error type). Callers name the file in a ValueError.
UNREADABLE_IMAGE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def unreadable(path: str | Path, err: Exception, what: str = "image") -> ValueError:
    """The ValueError for the image file ``path`` that raised ``err`` (one of
    ``UNREADABLE_IMAGE``): "cannot read image PATH: why" (``what`` in place of "image"), the
    path said once (PIL's "cannot identify image file 'PATH'" repeats it)."""
    why = str(err).replace(f" {str(path)!r}", "")
    return ValueError(f"cannot read {what} {path}: {why}")


def short_side_to(width: int, height: int, size: int) -> tuple[int, int]:
    """The size of a ``width x height`` image whose short side is scaled to ``size``."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the short side to ``size`` (bicubic; box filter when shrinking a lot) and crop the
    centre to ``size x size``."""
    w, h = image.size
    new = short_side_to(w, h, size)
    if new != (w, h):
        image = image.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


#: PIL's modes of one-channel images, 8- and 16-bit integer and float.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
#: The 16-bit greyscale modes (PNG and TIFF decode to "I;16"; older Pillow and some files give
#: "I", 32-bit, holding the same 0-65535 values).
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
#: Why a 32-bit integer image (mode "I") with values outside 16 bits is refused.
OUTSIDE_16_BITS = "a 32-bit integer image outside 0-65535: save it as 8- or 16-bit"


def white_level_for(max_value: int) -> int:
    """The white level of 16-bit files whose largest value is ``max_value``: the smallest
    ``2**k - 1`` (k = 8..16) at or above it, e.g. 4095 for a 12-bit camera's files, 65535 for
    data that uses the whole range."""
    if not 0 <= max_value <= 65535:
        raise ValueError(f"16-bit values are 0-65535, not {max_value}")
    return next(2**k - 1 for k in range(8, 17) if max_value <= 2**k - 1)


def _refuse_float(image: Image.Image) -> None:
    if image.mode == "F":
        raise ValueError("a floating-point image has no known range: save it as 8- or 16-bit")


def check_white(white: int) -> None:
    """Raise ValueError unless ``white`` is a 16-bit white level, 1-65535."""
    if not 1 <= white <= 65535:
        raise ValueError(f"the white level of 16-bit images is 1-65535, not {white}")


def to_unit_array(image: Image.Image, channels: int, white: int = 65535) -> np.ndarray:
    """PIL image -> float32 ``H x W x C`` in [0, 1] (``channels`` 1: grayscale, 3: RGB; a
    grey image is repeated in the three channels, colour is averaged by PIL's luma weights).

    8-bit images are divided by 255 and 16-bit greyscale ones by ``white``, their white level
    (65535, or e.g. 4095 for a 12-bit camera's files; values above it clip to 1), so their full
    depth is kept (PIL's own ``convert("L")`` clips 16-bit values at 255, which would make such
    an image white). Raises ValueError for a float image (mode "F": its range is unknown) and for
    32-bit integers outside 0-65535."""
    _refuse_float(image)
    if image.mode in WIDE_MODES:
        check_white(white)
        array = np.asarray(image).astype(np.float32)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(OUTSIDE_16_BITS)
        array = np.minimum(array[:, :, None] / white, 1)
        return np.repeat(array, channels, axis=2)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    return (array[:, :, None] if array.ndim == 2 else array) / 255


#: ITU-R 601-2 luma weights of R, G, B (those of PIL's ``convert("L")``).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: Each EXIF orientation (1-8) as numpy: the stored ``H x W (x C)`` array -> the image as shown.
ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # turned 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),  # turned 90 degrees anticlockwise
}


#: What :func:`keep_open` holds, per thread and process (a PIL image is not to be read from two
#: threads at once, a data set's files being decoded side by side; nor from two processes, whose
#: forked copies share the file's offset: a DataLoader's workers): see :func:`_held`.
_HELD = threading.local()


def _held() -> tuple[dict[Path, Image.Image], dict[Path, tuple[int, list[np.ndarray]]]]:
    """This thread's image files held open by :func:`keep_open`, by resolved path, and the run
    of pages last read of each held 16-bit colour stack (its first page, the pages as OpenCV
    reads them); a forked process starts with none (its parent's stay the parent's)."""
    if getattr(_HELD, "pid", None) != os.getpid():
        _HELD.pid, _HELD.files, _HELD.runs = os.getpid(), {}, {}
    return _HELD.files, _HELD.runs


#: At most how many bytes of such a stack's pages one read takes (a run of pages).
DEEP_RUN_BYTES = 64 << 20


@contextmanager
def keep_open(path: str | Path) -> Iterator[Image.Image]:
    """Hold the image file ``path`` open while inside, for every reader that opens it with
    :func:`open_image`: PIL finds a TIFF's page by walking the pages before it and remembers
    where those start, but only while the file stays open, so reading a stack's frames one
    call each would otherwise walk its pages again for every frame. (OpenCV, which reads
    16-bit colour, walks them on every call: :func:`deep_colour_pixels` reads runs of pages of
    a held stack.) Inside a ``keep_open`` of the same file, it holds nothing more. Yields the
    image held."""
    kept, runs = _held()  # this thread's, let go of by whichever thread closes it
    key = Path(path).resolve()
    if key in kept:
        yield kept[key]
        return
    image = Image.open(path)
    kept[key] = image
    try:
        yield image
    finally:
        kept.pop(key, None)
        runs.pop(key, None)
        image.close()


class HeldFiles:
    """Image files held open (:func:`keep_open`) for as long as this object lives, for a reader
    that comes back to their frames many times and in any order (a data set decoded on
    access). Opened for each frame, a TIFF stack was walked page by page to find its length
    (PIL's ``n_frames``) on every read: 4.3 s a frame of a stack of 20,000 pages on this
    project's CPU machine, against 0.5 ms held. Let go when the object is collected."""

    def __init__(self) -> None:
        self._files = ExitStack()
        weakref.finalize(self, self._files.close)  # the stack, not self: no cycle

    def hold(self, path: str | Path) -> None:
        """Hold ``path`` open from now on, unless a :func:`keep_open` holds it already (one that
        lets it go first makes the next ``hold`` open it again)."""
        if Path(path).resolve() not in _held()[0]:
            self._files.enter_context(keep_open(path))


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` as a context, or the image :func:`keep_open` holds for it (then
    left open)."""
    files = _held()[0]
    kept = files.get(Path(path).resolve()) if files else None
    if kept is not None:
        yield kept
        return
    with Image.open(path) as image:
        yield image


def frame_count(path: str | Path) -> int:
    """The frames an image file holds (pages of a TIFF stack, frames of a GIF or an animated
    PNG; 1 for most files), from its header; 1 for a file that is not an image, which a
    reader then refuses by name."""
    try:
        with open_image(path) as image:
            return getattr(image, "n_frames", 1)
    except UNREADABLE_IMAGE:
        return 1


def seek_frame(image: Image.Image, frame: int) -> None:
    """Move an opened PIL image to its frame ``frame`` (from 0); ValueError naming how many it
    holds where it holds fewer."""
    check_int("frame", frame, 0)
    frames = getattr(image, "n_frames", 1)
    if frame >= frames:
        raise ValueError(f"it holds {frames} frame{'s' * (frames != 1)}, so no frame {frame}")
    if frame != image.tell():  # a file kept open (keep_open) may stand at another frame
        image.seek(frame)


def is_deep_colour(image: Image.Image) -> bool:
    """Whether an opened (not yet loaded) PIL image is a 16-bit-per-channel colour file (a 48-
    or 64-bit PNG or TIFF), which PIL would decode to 8 bits per channel."""
    rawmodes = [t.args[0] if isinstance(t.args, tuple) else t.args for t in image.tile]
    return image.mode in ("RGB", "RGBA") and any(";16" in str(m) for m in rawmodes)


def is_16_bit_image(image: Image.Image) -> bool:
    """Whether an opened (not yet loaded) PIL image holds 16 bits per channel, grey
    (:data:`WIDE_MODES`) or colour (:func:`is_deep_colour`)."""
    return image.mode in WIDE_MODES or is_deep_colour(image)


def deep_colour_pixels(path: str | Path, orientation: int = 1, frame: int = 0) -> np.ndarray:
    """A 16-bit colour file's pixels (see :func:`is_deep_colour`), ``H x W x 3`` uint16 RGB
    (alpha dropped), turned by an EXIF ``orientation``; ``frame``: the page of a TIFF stack."""
    import cv2

    files = _held()[0]
    key = Path(path).resolve() if files else None
    kept = files.get(key) if key else None
    if kept is not None and getattr(kept, "n_frames", 1) > 1:
        pixels = _held_deep_page(path, key, kept, frame)
    elif frame:
        ok, pages = cv2.imreadmulti(str(path), start=frame, count=1, flags=cv2.IMREAD_UNCHANGED)
        pixels = pages[0] if ok and len(pages) == 1 else None
    else:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise ValueError("OpenCV could not read it as 16-bit colour")
    rgb = pixels[:, :, 2::-1]  # OpenCV's BGR(A) -> RGB
    return np.ascontiguousarray(ORIENT.get(orientation, ORIENT[1])(rgb))


def _held_deep_page(
    path: str | Path, key: Path, kept: Image.Image, frame: int
) -> np.ndarray | None:
    """Page ``frame`` of the 16-bit colour stack ``path`` that :func:`keep_open` holds (as
    ``kept``, under its resolved path ``key``), as OpenCV reads it (BGR(A)), or None where it
    cannot. OpenCV finds a page by walking the pages before it on every call, which made
    reading each frame of a stack cost its length squared; pages read in order (from the first,
    or on from the last run) are read in runs of up to :data:`DEEP_RUN_BYTES` and the last run
    kept, so a stack read frame by frame is walked about once per run. A page asked for out of
    order (a data set decoded on access draws frames at random) is read alone: a run there
    decoded up to 64 MiB of pages for one."""
    import cv2

    runs = _held()[1]
    first, pages = runs.get(key, (0, []))
    if not first <= frame < first + len(pages):
        width, height = kept.size  # of the page PIL is at, this one's where read in order
        count = max(1, DEEP_RUN_BYTES // max(1, width * height * 8))  # 4 channels of 2 bytes
        if frame not in (0, first + len(pages)):  # not read in order
            count = 1
        ok, pages = cv2.imreadmulti(str(path), start=frame, count=count,
                                    flags=cv2.IMREAD_UNCHANGED)  # fmt: skip
        if not ok or not pages:
            return None
        first = frame
        runs[key] = (first, pages)
    return pages[frame - first]


def read_unit_array(
    path: str | Path, channels: int, white: int = 65535, frame: int = 0
) -> np.ndarray:
    """An image file -> float32 ``H x W x C`` in [0, 1] at its full depth, upright (its EXIF
    orientation applied, as viewers show it). 8-bit files are divided by 255; 16-bit ones, grey
    (see :func:`to_unit_array`) or colour (read by OpenCV: PIL decodes them to 8 bits), by
    ``white``, values above it clipping to 1. Colour becomes grey by :data:`LUMA`. ``frame``:
    which frame of a file that holds several (a TIFF stack's page, counted from 0)."""
    with open_image(path) as image:
        seek_frame(image, frame)
        return _unit_of(image, path, channels, white, frame)


def _unit_of(image: Image.Image, path, channels: int, white: int, frame: int) -> np.ndarray:
    """:func:`read_unit_array` of the opened ``image`` of the file ``path``, at its ``frame``."""
    if not is_deep_colour(image):
        return to_unit_array(ImageOps.exif_transpose(image), channels, white)
    check_white(white)
    orientation = image.getexif().get(0x0112, 1)
    rgb = np.minimum(deep_colour_pixels(path, orientation, frame) / np.float32(white), 1)
    rgb = rgb.astype(np.float32)
    return rgb if channels == 3 else rgb @ LUMA[:, None]


def read_square(
    path: str | Path,
    size: int,
    channels: int,
    white: int = 65535,
    frame: int = 0,
    dtype: torch.dtype = torch.uint8,
) -> Tensor:
    """An image file (its frame ``frame``) -> ``C x size x size`` of ``dtype``: upright, resized
    and centre-cropped (:func:`resize_center_crop`), 16-bit files scaled by ``white`` (see
    :func:`read_unit_array`) and resized before they are rounded to 8 bits (uint8, 0..255) or
    16 (uint16, 0..65535: a set with 16-bit files keeps their levels; its 8-bit files are
    widened exactly)."""
    with open_image(path) as image:
        seek_frame(image, frame)
        return _square_of(image, path, size, channels, white, frame, dtype)


def read_squares(
    path: str | Path,
    size: int,
    channels: int,
    white: int = 65535,
    dtype: torch.dtype = torch.uint8,
) -> Iterator[Tensor]:
    """Every frame of an image file, in order, as :func:`read_square` reads one, from one
    opening of the file: PIL finds a TIFF's page by walking the pages before it, so an opening
    per frame would cost a stack's length squared (2,000 pages of 64 x 64: 277 s, 0.9 s now)."""
    with keep_open(path) as image:  # held: 16-bit colour pages too
        for frame in range(getattr(image, "n_frames", 1)):
            seek_frame(image, frame)
            yield _square_of(image, path, size, channels, white, frame, dtype)


def _square_of(
    image: Image.Image,
    path,
    size: int,
    channels: int,
    white: int,
    frame: int,
    dtype: torch.dtype = torch.uint8,
) -> Tensor:
    """:func:`read_square` of the opened ``image`` of the file ``path``, at its ``frame``."""
    from .dataset import WHITE_OF, to_depth

    if not is_16_bit_image(image):  # resized as 8-bit L or RGB (a palette image too, not nearest)
        _refuse_float(image)
        mode = "L" if channels == 1 else "RGB"
        small = _drafted_square(image, size, mode)
        if small is None:
            upright = ImageOps.exif_transpose(image)
            small = resize_center_crop(upright.convert(mode), size)
        array = np.asarray(small)
        array = array[:, :, None] if array.ndim == 2 else array
        return to_depth(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), dtype)
    unit = _unit_of(image, path, channels, white, frame)
    planes = [
        resize_center_crop(Image.fromarray(unit[:, :, c].copy()), size) for c in range(channels)
    ]
    top = WHITE_OF[dtype]
    array = np.clip(np.round(np.stack([np.asarray(p) for p in planes], 2) * top), 0, top)
    pixels = torch.from_numpy(array.astype(np.uint8 if top == 255 else np.uint16))
    return pixels.permute(2, 0, 1).contiguous()


def _drafted_square(image: Image.Image, size: int, mode: str) -> Image.Image | None:
    """:func:`read_square`'s ``size x size`` image of a large JPEG decoded at a reduced scale
    (libjpeg's DCT scaling by 1/2, 1/4 or 1/8, as ``Image.thumbnail`` does it), to no less than
    3x the short side it is resized to: a 4,000 x 3,000 photo read at 64 px in 24 ms instead
    of 123 (median of 7, a 2-core CPU, 2026-12-07). The drafted pixels are resized from the
    box of the full image that they cover (their last row and column hold partial blocks), in
    the stored orientation, then turned upright and centre-cropped: as close to the exact
    bicubic resize of the full decode as :func:`resize_center_crop` of it is (within -1.5 to
    +2.3 dB, 47-56 dB from it, on enlarged astronaut, coffee and chelsea photos at 32 and 64
    px, EXIF turns 1, 3, 6, 8; tested). None where it does not apply (another format, less than
    2x to gain, already decoded)."""
    w, h = image.size
    reduce = 3 * size / min(w, h)
    if image.format != "JPEG" or reduce > 0.5:
        return None
    drafted = image.draft(None, (int(w * reduce) + 1, int(h * reduce) + 1))
    if drafted is None or image.size == (w, h):
        return None
    orientation = image.getexif().get(0x0112, 1)
    small = image.convert(mode).resize(
        short_side_to(w, h, size), Image.Resampling.BICUBIC, box=drafted[1], reducing_gap=3.0
    )
    upright = ORIENT.get(orientation, ORIENT[1])(np.asarray(small))
    return resize_center_crop(Image.fromarray(np.ascontiguousarray(upright)), size)


def array_to_uint8(images: np.ndarray, size: int | None) -> Tensor:
    """Float images ``N x H x W`` (or ``N x H x W x C``) in [0, 1] -> uint8 ``N x C x S x S``,
    resized to ``size`` (square) when given."""
    if size is not None:
        check_int("size", size, 1)  # 0 was a RuntimeError from torch's resize
    if images.ndim == 3:
        images = images[..., None]
    out = torch.from_numpy(np.clip(images * 255 + 0.5, 0, 255).astype(np.uint8)).permute(0, 3, 1, 2)
    if size is not None and (out.shape[-1] != size or out.shape[-2] != size):
        n, c = out.shape[:2]
        check_fits(  # the float32 result and its uint8 copy; before torch sees a size too large
            n * c * size * size * 5,
            torch.device("cpu"),
            f"resizing {n} images to {c} x {size} x {size}",
            "lower --size",
        )
        resized = torch.nn.functional.interpolate(
            out.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
        out = resized.round().clamp(0, 255).to(torch.uint8)
    return out.contiguous()


def hflip(images: Tensor, flip: Tensor) -> Tensor:
    """Flip the images (``N x C x H x W``) whose entry in the bool tensor ``flip`` is True."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
