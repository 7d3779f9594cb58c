"""``deadleaves``: synthetic images of the dead-leaves model, generated on the fly (no files).

The dead-leaves model drops opaque discs, one over the other, until the plane is covered. With
disc radii of density proportional to ``r^-3`` the picture is statistically scale invariant, and
it reproduces the statistics of natural photographs that matter to a restoration prior: flat
regions bounded by sharp occluding edges, a ``1/f^2`` power spectrum, and the same law of
gradients at every scale (Lee, Mumford & Huang, "Occlusion models for natural images", IJCV
2001). Achddou et al. ("Synthetic images as a regularity prior for image restoration neural
networks", SSVM 2021) train denoisers on such images alone. Here they complement the few
shipped photographs with unlimited smooth regions and edges at every scale.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import ImageData

#: Side of each rendered canvas in pixels; patches are cropped from canvases.
CANVAS = 128
#: Supersampling of the rendering (anti-aliased edges, as a camera's pixels average light).
SUPERSAMPLE = 2
#: Smallest disc radius in pixels: smaller discs read as noise rather than as objects.
R_MIN = 2.0
#: Largest defocus blur (Gaussian std, pixels); each canvas draws one uniformly up to it, as
#: photographs are sharp in focus and soft elsewhere.
MAX_BLUR = 1.5


def disc_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float) -> np.ndarray:
    """``n`` radii with density proportional to ``r^-3`` on ``[r_min, r_max]`` (inverse CDF:
    the CDF is ``(r_min^-2 - r^-2) / (r_min^-2 - r_max^-2)``)."""
    u = rng.random(n)
    return (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5


def dead_leaves(
    rng: np.random.Generator,
    palette: np.ndarray,
    side: int = CANVAS,
    *,
    r_min: float = R_MIN,
    r_max: float | None = None,
    blur: float = 0.0,
    max_discs: int = 200_000,
) -> np.ndarray:
    """One dead-leaves picture, uint8 ``side x side x C``.

    Discs are laid front to back (each one only paints what no earlier disc covers, which is
    the same picture as dropping them back to front without end), centred uniformly on the
    canvas and a margin of ``r_max`` around it, until every pixel is covered. Each disc takes
    a colour drawn from ``palette`` (uint8 ``K x C``). ``r_min`` and ``r_max`` (default
    ``side``) are in output pixels; the picture is rendered ``SUPERSAMPLE`` times finer and
    area-averaged, then blurred by a Gaussian of std ``blur`` pixels (0: none).
    """
    r_max = float(side) if r_max is None else r_max
    s = SUPERSAMPLE
    n = side * s
    canvas = np.zeros((n, n, palette.shape[1]), dtype=np.float32)
    free = np.ones((n, n), dtype=bool)
    left = n * n
    batch = 4096
    drawn = 0
    while left and drawn < max_discs:
        radii = disc_radii(rng, batch, r_min * s, r_max * s)
        centres = rng.uniform(-r_max * s, n + r_max * s, (batch, 2))
        colours = palette[rng.integers(0, len(palette), batch)].astype(np.float32)
        for (cy, cx), r, colour in zip(centres, radii, colours, strict=True):
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, n)
            x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, n)
            if y0 >= y1 or x0 >= x1:
                continue
            yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
            xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
            paint = (yy * yy + xx * xx <= r * r) & free[y0:y1, x0:x1]
            k = int(paint.sum())
            if k:
                canvas[y0:y1, x0:x1][paint] = colour
                free[y0:y1, x0:x1] &= ~paint
                left -= k
                if not left:
                    break
        drawn += batch
    if left:  # pixels no disc reached in max_discs (tiny gaps): the mean colour
        canvas[free] = palette.mean(0)
    out = canvas.reshape(side, s, side, s, -1).mean((1, 3))
    if blur > 0:
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(out, sigma=(blur, blur, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def deadleaves(
    size: int = 32,
    n: int = 20000,
    *,
    channels: int = 3,
    seed: int = 0,
    palette: np.ndarray | None = None,
    per_canvas: int = 64,
) -> ImageData:
    """``n`` random ``size`` x ``size`` crops of dead-leaves canvases (``CANVAS`` pixels, discs
    of radius ``R_MIN`` to the canvas side, a defocus blur up to ``MAX_BLUR``), deterministic
    by seed.

    ``palette``: uint8 ``K x channels`` colours for the discs; default, 4096 pixels drawn from the
    training photographs of :func:`~diffvision.data.photos.photos` (never the held-out ones), so
    that the colours are those of real scenes. ``per_canvas`` crops come from each canvas.
    """
    if channels not in (1, 3):
        raise ValueError("deadleaves: channels must be 1 or 3")
    if not 4 <= size <= CANVAS:
        raise ValueError(f"deadleaves: size must be 4..{CANVAS}")
    rng = np.random.default_rng(seed)
    if palette is None:
        from .photos import photo_pixels

        palette = photo_pixels(4096, channels=channels, seed=seed)
    if palette.ndim != 2 or palette.shape[1] != channels:
        raise ValueError(f"deadleaves: palette must be K x {channels}")
    images = torch.empty((n, channels, size, size), dtype=torch.uint8)
    for start in range(0, n, per_canvas):
        blur = rng.uniform(0, MAX_BLUR)
        picture = torch.from_numpy(dead_leaves(rng, palette, blur=blur)).permute(2, 0, 1)
        for i in range(start, min(start + per_canvas, n)):
            y, x = rng.integers(0, CANVAS - size + 1, 2)
            images[i] = picture[:, y : y + size, x : x + size]
    return ImageData(images, channels=channels, size=size, name="deadleaves")
