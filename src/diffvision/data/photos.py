"""``photos``: random patches of the photographs that ship inside scikit-image, scikit-learn and
matplotlib (no download), for training restoration priors; a fixed held-out list of whole photos
for evaluating them.

Held out, never used for training: ``camera``, ``astronaut``, ``coffee``, ``chelsea`` (and
``cat``, which is the same picture as ``chelsea``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .dataset import ImageData

#: Whole photos kept out of training (scikit-image names).
HELD_OUT = ("camera", "astronaut", "coffee", "chelsea")
#: Training photos from scikit-image (natural or microscope images; synthetic ones left out).
SKIMAGE_TRAIN = (
    "brick",
    "grass",
    "gravel",
    "coins",
    "moon",
    "page",
    "text",
    "clock",
    "cell",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "microaneurysms",
)
#: Downscale factors of the training pyramid: patches see both fine texture and larger structure.
SCALES = (1.0, 0.7, 0.5, 0.35, 0.25)


def _to_array(image) -> np.ndarray:
    """uint8 ``H x W x 3`` from any shipped image (grey replicated, alpha dropped)."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return _to_array(getattr(skimage.data, name)())


def training_photos() -> dict[str, np.ndarray]:
    """The training photographs by name, uint8 ``H x W x 3`` (grey ones replicated)."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    out = {}
    for name in SKIMAGE_TRAIN:
        try:
            out[name] = _skimage(name)
        except Exception:  # an image missing from this scikit-image build is skipped
            continue
    sk = load_sample_images()
    for path, image in zip(sk.filenames, sk.images, strict=True):
        out["sklearn-" + path.rsplit("/", 1)[-1].split(".")[0]] = _to_array(image)
    try:  # a colour street scene (the left view of a stereo pair)
        import skimage.data

        out["stereo_motorcycle"] = _to_array(skimage.data.stereo_motorcycle()[0])
    except Exception:
        pass
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with matplotlib.cbook.get_sample_data(name) as f:
            out[name.split(".")[0].lower()] = _to_array(Image.open(f).convert("RGB"))
    return out


def photo_pixels(n: int, *, channels: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` pixel colours drawn from the training photographs (each photo equally often),
    uint8 ``n x channels`` (``channels`` 1: luma)."""
    rng = np.random.default_rng(seed)
    pictures = [_channels(a, channels) for a in training_photos().values()]
    out = np.empty((n, channels), dtype=np.uint8)
    for i, k in enumerate(rng.integers(0, len(pictures), n)):
        p = pictures[k]
        out[i] = p[:, rng.integers(0, p.shape[1]), rng.integers(0, p.shape[2])].numpy()
    return out


def held_out_photos(channels: int = 3) -> dict[str, Tensor]:
    """The held-out photographs, whole, as uint8 ``C x H x W`` tensors (``channels`` 1: luma)."""
    if channels not in (1, 3):  # 0 and 2 gave RGB
        raise ValueError(f"channels must be 1 or 3, not {channels!r}")
    return {name: _channels(_skimage(name), channels) for name in HELD_OUT}


def _channels(rgb: np.ndarray, channels: int) -> Tensor:
    t = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
    if channels == 1:  # ITU-R 601 luma
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        t = (t.float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def photos(
    size: int = 32, n: int = 20000, *, channels: int = 3, seed: int = 0, split: str = "train"
) -> ImageData:
    """``n`` random ``size`` x ``size`` patches, deterministic by seed.

    ``split="train"``: patches of the training photos (each photo equally often) at random
    pyramid scales (``SCALES``), with random horizontal flips and 90-degree turns.
    ``split="test"``: patches of the held-out photos at full scale.
    ``channels``: 3 (RGB) or 1 (luma).
    """
    if split not in ("train", "test"):
        raise ValueError("split must be train or test")
    if channels not in (1, 3):
        raise ValueError("photos: channels must be 1 or 3")
    rng = np.random.default_rng(seed)
    if split == "train":
        groups = []  # per photo: its pyramid levels
        for image in training_photos().values():
            pil, levels = Image.fromarray(image), []
            for s in SCALES:
                w, h = round(pil.width * s), round(pil.height * s)
                if min(w, h) >= size:
                    level = pil if s == 1.0 else pil.resize((w, h), Image.Resampling.LANCZOS)
                    levels.append(_channels(np.asarray(level), channels))
            if levels:
                groups.append(levels)
        if not groups:
            largest = max(min(image.shape[:2]) for image in training_photos().values())
            raise ValueError(
                f"photos: size {size} is larger than every training photo (the largest is "
                f"{largest} px on its shorter side)"
            )
    else:
        groups = [[image] for image in held_out_photos(channels).values()]
        smallest = min(min(image.shape[1:]) for [image] in groups)
        if size > smallest:
            raise ValueError(
                f"photos: size {size} is larger than a held-out photo ({smallest} px on its "
                "shorter side)"
            )
    # Every photo equally often (else the largest, e.g. a flat retina scan, dominates), then a
    # pyramid level, then a position.
    photo = rng.integers(0, len(groups), n)
    patches = torch.empty((n, channels, size, size), dtype=torch.uint8)
    for i, k in enumerate(photo):
        levels = groups[k]
        src = levels[rng.integers(0, len(levels))]
        y = rng.integers(0, src.shape[1] - size + 1)
        x = rng.integers(0, src.shape[2] - size + 1)
        patch = src[:, y : y + size, x : x + size]
        if split == "train":
            if rng.random() < 0.5:
                patch = patch.flip(-1)
            patch = torch.rot90(patch, int(rng.integers(0, 4)), dims=(1, 2))
        patches[i] = patch
    return ImageData(patches, channels=channels, size=size, name=f"photos-{split}")
