"""Image files: reading one (8- or 16-bit) into [-1, 1]; writing tensors in [-1, 1] as uint8,
grids and PNG files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..data.transforms import (
    UNREADABLE_IMAGE,
    check_white,
    is_16_bit_image,
    open_image,
    read_unit_array,
    seek_frame,
    unreadable,
)
from ..process import check_int
from .atomic import write_whole


def to_uint8(images: Tensor) -> Tensor:
    """``N x C x H x W`` float in [-1, 1] -> uint8 (clipped, rounded)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def save_16_bit(path: str | Path, image: Tensor, white: int = 65535) -> Path:
    """Save ``C x H x W`` float in [-1, 1] as a 16-bit greyscale (C = 1) or 48-bit colour
    (C = 3) PNG or TIFF, clipped and rounded to 0-``white`` (the white level). Written by
    OpenCV, which PIL cannot do for colour; whole or not at all (:func:`write_whole`)."""
    import cv2

    check_image(image)
    check_white(white)  # 0 wrote a black image

    unit = (image.detach().double().clamp(-1, 1).cpu().numpy() + 1) / 2
    pixels = np.round(unit * white).astype(np.uint16).transpose(1, 2, 0)
    if pixels.shape[2] == 3:
        pixels = pixels[:, :, ::-1]  # RGB -> OpenCV's BGR
    path = Path(path)

    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(pixels)):
            raise ValueError(f"cannot write a 16-bit image to {path}")

    return write_whole(path, write)


#: Stacks estimated above this many bytes (their first page's times the pages) are written as
#: BigTIFF: a classic TIFF addresses 4 GiB, and pages may differ in size. PIL, OpenCV and
#: ImageJ read BigTIFF too.
BIGTIFF_ABOVE = 2 << 30


#: Output files that hold many images as the pages of one stack (``--out STACK.tif``).
STACK_FILES = (".tif", ".tiff")


def frames_folder(stack: Path) -> Path:
    """Where the images of the TIFF stack ``stack`` wait, each in a file, until every one is
    made (``out.tif.frames/``, with the command's record, so an interrupted run goes on); then
    :func:`join_into_stack` joins them."""
    return stack.with_name(stack.name + ".frames")


def join_into_stack(path: str | Path, files: list[Path], record: dict | None = None) -> Path:
    """Write the image ``files`` (8- or 16-bit, grey or colour, as written by this module) as
    the pages of one multi-page TIFF ``path`` (uncompressed; BigTIFF above
    :data:`BIGTIFF_ABOVE`), each at its depth and channels, bit for bit, one page in memory at a
    time; whole or not at all (:func:`write_whole`). The files are read by OpenCV, which keeps
    16-bit colour (PIL does not), and the stack written by tifffile, page by page (OpenCV's
    writer takes every page at once). ``record``: what made the stack (JSON), kept in the
    first page's description for :func:`stack_record`."""
    import cv2
    import tifffile

    path = Path(path)
    if not files:
        raise ValueError(f"no images to join into {path}")

    def pages():
        for file in files:
            page = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if page is None:
                raise ValueError(f"cannot read {file} to join it into {path}")
            yield page[:, :, ::-1] if page.ndim == 3 else page  # OpenCV's BGR -> RGB

    def write(tmp: Path) -> None:
        each = pages()
        first = next(each)
        big = first.nbytes * len(files) > BIGTIFF_ABOVE
        with tifffile.TiffWriter(tmp, bigtiff=big) as stack:
            for k, page in enumerate(itertools.chain([first], each)):
                said = json.dumps({STACK_RECORD: record}) if k == 0 and record else None
                stack.write(page, photometric="rgb" if page.ndim == 3 else "minisblack",
                            description=said, metadata=None)  # fmt: skip

    return write_whole(path, write)


#: The key of :func:`join_into_stack`'s record in a stack's description.
STACK_RECORD = "diffvision"


def stack_record(path: str | Path) -> dict | None:
    """The record that :func:`join_into_stack` kept in the TIFF stack ``path`` (None where it
    is no such stack: missing, another file, or written otherwise)."""
    try:
        with Image.open(path) as image:
            said = image.tag_v2.get(270) if hasattr(image, "tag_v2") else None
        record = json.loads(said) if isinstance(said, str) else None
    except UNREADABLE_IMAGE:  # JSON's errors are ValueErrors
        return None
    return record.get(STACK_RECORD) if isinstance(record, dict) else None


def holds_record(path: str | Path, record: dict) -> bool:
    """Whether the TIFF stack ``path`` keeps ``record`` (:func:`stack_record`), compared as
    JSON holds it (tuples as lists)."""
    return stack_record(path) == json.loads(json.dumps(record))


def is_16_bit(path: str | Path, frame: int = 0) -> bool:
    """Whether an image file (its frame ``frame``) holds 16 bits per channel, grey or colour
    (read from its header)."""
    with open_image(path) as image:
        seek_frame(image, frame)
        return is_16_bit_image(image)


def is_colour(path: str | Path, frame: int = 0) -> bool:
    """Whether an image file (its frame ``frame``) holds colour (three or more colour bands:
    RGB, RGBA, CMYK, ...; a palette image counts as not), read from its header."""
    with open_image(path) as image:
        seek_frame(image, frame)
        return len(set(image.getbands()) - {"A"}) >= 3


def check_image(image: Tensor) -> None:
    """Raise ValueError unless ``image`` is one ``C x H x W`` tensor with C = 1 or 3 (a batch
    or a bare ``H x W`` was a RuntimeError from a permute, two channels made a grey-alpha
    file)."""
    if not (isinstance(image, Tensor) and image.ndim == 3 and image.shape[0] in (1, 3)):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"an image to save is C x H x W with C = 1 or 3, not {shape}")


def image_format(path: str | Path) -> str:
    """PIL's format for writing ``path``, chosen by its suffix; ValueError where PIL writes
    none (no suffix was PIL's "unknown file extension: .partial", the temporary file's)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt not in Image.SAVE:
        raise ValueError(f"not an image file to write (.png, .jpg, .tif): {str(path)!r}")
    return fmt


def make_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> Tensor:
    """Tile ``N x C x H x W`` images into one ``C x H' x W'`` image (rows of ``nrow``, default
    about square), separated by ``pad`` pixels of -1 (black)."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"a grid needs N x C x H x W images, N >= 1, not {tuple(images.shape)}")
    if nrow is not None:
        check_int("nrow", nrow, 1)
    check_int("pad", pad, 0)
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), -1.0, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def to_pil(image: Tensor, upscale: int = 1) -> Image.Image:
    """``C x H x W`` float in [-1, 1] -> PIL image, enlarged ``upscale`` times (nearest)."""
    check_image(image)
    check_int("upscale", upscale, 1)
    array = to_uint8(image[None])[0].permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else np.ascontiguousarray(array))
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.Resampling.NEAREST)
    return pil


#: Quality of lossy files (JPEG, WebP) that diffvision writes: PIL's default, 75, blurs and
#: blocks a restored image visibly; 95 is the usual choice for keeping.
LOSSY_QUALITY = 95


def save_image(path: str | Path, image: Tensor) -> Path:
    """Save one ``C x H x W`` image in [-1, 1] as 8 bits per channel to any file type PIL
    writes (by the suffix of ``path``; JPEG and WebP at :data:`LOSSY_QUALITY`), whole
    (:func:`write_whole`). Returns the path."""
    fmt, pil = image_format(path), to_pil(image)
    return write_whole(path, lambda tmp: pil.save(tmp, format=fmt, quality=LOSSY_QUALITY))


def save_grid(path: str | Path, images: Tensor, nrow: int | None = None, upscale: int = 1) -> Path:
    """Save ``N x C x H x W`` images in [-1, 1] as one grid image of the type that the suffix
    of ``path`` names (.png, .jpg, ...); returns the path."""
    path = Path(path)
    fmt, pil = image_format(path), to_pil(make_grid(images.cpu(), nrow), upscale)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_whole(path, lambda tmp: pil.save(tmp, format=fmt))


def numbered_path(folder: str | Path, index: int, prefix: str = "sample") -> Path:
    """Where :func:`save_images` writes image ``index``: ``folder/{prefix}_{index:05d}.png``."""
    return Path(folder) / f"{prefix}_{index:05d}.png"


def numbered_indices(folder: str | Path, n: int, prefix: str = "sample") -> set[int]:
    """The indices ``i < n`` whose :func:`numbered_path` is a file in ``folder``, from one listing
    of it (not a file check per index: ``n`` may be far larger than what is there)."""
    found = set()
    for path in Path(folder).glob(f"{prefix}_*.png"):
        digits = path.stem[len(prefix) + 1 :]
        if digits.isdigit() and int(digits) < n and path.is_file():
            if path.name == numbered_path(folder, int(digits), prefix).name:  # its own spelling
                found.add(int(digits))
    return found


def save_images(
    folder: str | Path,
    images: Tensor,
    prefix: str = "sample",
    start: int = 0,
    white: int | None = None,
) -> list[Path]:
    """Save each image (``N x C x H x W`` in [-1, 1]) at :func:`numbered_path`, numbered from
    ``start``: 8 bits per channel, or with ``white`` 16 bits with white at that value
    (:func:`save_16_bit`; a model of 16-bit data, its white level). Returns the paths. Each file
    is written whole (:func:`write_whole`), so an interruption leaves whole images only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images.cpu(), start):
        path = numbered_path(folder, i, prefix)
        paths.append(
            save_16_bit(path, image, white) if white else write_whole(path, to_pil(image).save)
        )
    return paths


def _has_alpha(image: Image.Image) -> bool:
    """Whether a PIL image has an alpha band or palette transparency."""
    return "A" in image.getbands() or "transparency" in image.info


def is_transparent(path: str | Path, frame: int = 0) -> bool:
    """Whether any pixel of an image file (its frame ``frame``) is less than fully opaque: from
    the header where it has no alpha channel, else from the alpha channel."""
    with open_image(path) as image:
        seek_frame(image, frame)
        if not _has_alpha(image):
            return False
    return bool((read_alpha(path, frame) < 1).any())


def read_alpha(path: str | Path, frame: int = 0) -> Tensor:
    """An image file's alpha channel (or palette transparency) as ``H x W`` float32 in [0, 1],
    upright like :func:`read_image` (of its frame ``frame``). Raises ValueError naming the file
    when it has none."""
    try:
        with open_image(path) as image:
            seek_frame(image, frame)
            image = ImageOps.exif_transpose(image)
            if not _has_alpha(image):
                raise ValueError("it has no alpha channel (no transparent pixels)")
            alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255
    except UNREADABLE_IMAGE as err:
        raise unreadable(path, err, "the transparency of") from None
    return torch.from_numpy(alpha)


def read_kernel(path: str | Path) -> Tensor:
    """A blur kernel (a measured point-spread function) from a file, as a float64 ``k x k``
    tensor as written (not normalised: its scale does not matter where it blurs): a 2-D
    ``.npy`` array, read without unpickling, or a grey image of one frame (8- or 16-bit, or
    floating point, whose range is the kernel's own; a colour image whose channels agree).
    Raises ValueError naming the file where it is missing or unreadable, holds several frames
    (a 3-D PSF: give one plane) or several colours, or is no 2-D array of finite numbers."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"kernel file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)  # an object array needs pickle: refused
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read kernel {path}: {err}") from None
    else:
        try:
            with open_image(path) as image:
                frames = getattr(image, "n_frames", 1)
                convert = {"P": "RGBA", "1": "L"}.get(image.mode)  # palette; bilevel: bool
                array = np.asarray(image.convert(convert) if convert else image)
                if image.mode in ("LA", "PA", "RGBA", "P"):
                    array = array[..., :-1]  # the alpha channel
        except UNREADABLE_IMAGE as err:
            raise unreadable(path, err, "kernel") from None
        if frames > 1:
            raise ValueError(f"kernel {path} holds {frames} frames: give one 2-D kernel (a plane "
                             "of a 3-D PSF)")  # fmt: skip
        if array.ndim == 3:  # colour: a grey kernel saved in RGB
            if not (array == array[..., :1]).all():
                raise ValueError(f"kernel {path} is in colour: a kernel is one grey image")
            array = array[..., 0]
    if not (array.ndim == 2 and np.issubdtype(array.dtype, np.number)) or np.iscomplexobj(array):
        raise ValueError(f"kernel {path} is no 2-D array of numbers (shape {array.shape})")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"kernel {path} holds NaN or infinite values")
    return torch.from_numpy(array)


def read_image(path: str | Path, channels: int, white: int = 65535, frame: int = 0) -> Tensor:
    """An image file as ``1 x C x H x W`` float32 in [-1, 1] (``channels`` 1: grey, 3: RGB;
    ``white``: the value of white in a 16-bit file, see :func:`to_unit_array`; ``frame``: which
    frame of a stack or an animation, from 0, see
    :func:`~diffvision.data.transforms.frame_count`). Raises ValueError naming the file when it
    is missing, not an image or has no such frame. An EXIF orientation (phone photos) is
    applied, so the image is the way viewers show it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    try:
        array = read_unit_array(path, channels, white, frame)  # upright, as the result is saved
    except UNREADABLE_IMAGE as err:
        raise unreadable(path, err) from None
    return torch.from_numpy(array).permute(2, 0, 1)[None] * 2 - 1
