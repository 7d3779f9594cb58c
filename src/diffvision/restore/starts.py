"""Classical restorations to warm-start a diffusion solver from (``solve(..., start=...)``): a
smooth fill of an inpainting hole, a bicubic upscaling, a Wiener deconvolution, the noisy image
itself; and, for the fill, an estimate of its own error (``solve(..., start_std=...)``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .operators import Colorize, Deblur, Denoise, Inpaint, Operator, SuperResolution

#: Per-pixel std of images in [-1, 1] assumed by the deblurring start (the EDM sigma_data).
SIGNAL_STD = 0.5


def classical_start(operator: Operator, y: Tensor) -> Tensor:
    """A classical estimate of x from ``y`` (``N x C x H x W`` in [-1, 1] as ``operator.forward``
    makes it), shaped like the restored image:

    - ``Inpaint``: scikit-image's biharmonic fill of the hole (smooth, continues the border's
      values and gradients);
    - ``SuperResolution``: bicubic upscaling;
    - ``Deblur``: the Wiener filter for a flat signal spectrum of std ``SIGNAL_STD`` (Tikhonov
      with ``lam = (sigma_y / SIGNAL_STD)^2``), the truncated pseudo-inverse without noise;
    - ``Denoise``, ``Colorize``: ``A^+ y`` (the noisy image; the grey image in every channel).
    """
    if isinstance(operator, Inpaint):
        return _biharmonic(y, operator.mask)
    if isinstance(operator, SuperResolution):
        size = (y.shape[-2] * operator.factor, y.shape[-1] * operator.factor)
        return F.interpolate(y, size=size, mode="bicubic", align_corners=False)
    if isinstance(operator, Deblur) and operator.sigma > 0:
        return operator.regularized_inverse(y, (operator.sigma / SIGNAL_STD) ** 2)
    if isinstance(operator, Deblur | Denoise | Colorize):
        return operator.pinv(y)
    raise ValueError(f"no classical start for {type(operator).__name__}; pass start= yourself")


def _biharmonic(y: Tensor, mask: Tensor) -> Tensor:
    from skimage.restoration import inpaint_biharmonic

    holes = (mask.expand(len(y), 1, *y.shape[-2:]) == 0).cpu().numpy()
    out = y.detach().clone()
    for i, image in enumerate(y.detach().cpu().double().numpy()):
        if holes[i, 0].any():
            filled = inpaint_biharmonic(np.moveaxis(image, 0, -1), holes[i, 0], channel_axis=-1)
            out[i] = torch.from_numpy(np.moveaxis(filled, -1, 0)).to(out)
    return out


#: Where the copies of the hole go when the fill's error is measured: 1.5 times the hole's
#: bounding box away, in the 8 directions (half a hole's width of observed pixels between).
COPY_SPACING = 1.5


def start_error_std(operator: Operator, y: Tensor) -> Tensor:
    """Per-pixel std of the error of :func:`classical_start` for inpainting (``Inpaint``),
    estimated from the observed pixels of ``y`` themselves: ``N x 1 x H x W``, 0 where observed.

    Why: the draws of a warm-started solver share the start's errors at scales above its noise
    level, so their spread misses them (on the held-out photos the RMS error of the mean was
    ~10x the draws' RMS std). ``solve(..., start_std=...)`` adds this estimate in quadrature.

    How (a hold-out estimate): the hole is copied ``COPY_SPACING`` hole-widths away in each of
    8 directions (wrapping at the edges; shifts that coincide there are made once); each copy
    is filled together with the hole, and the fill's squared error at the copy's observed
    pixels, less y's noise variance, is pooled by the distance to the nearest observed pixel
    (geometric bins, made non-decreasing with distance) and read off at each hole pixel's
    distance. It assumes the image around the copies is like the image around the hole, the
    stationarity a smooth fill assumes too. Measured on the held-out photos
    (bench/results/restoration.md): RMS error / RMS std 1.15 (0.88-1.53 per photo), 93% of
    errors within 2 std; for other masks bench/results/start_error.md. Costs up to 8
    biharmonic fills of the hole and a copy (3 for a hole that spans the image, e.g. random
    pixels, whose many small holes make each fill slow).
    """
    from scipy.ndimage import distance_transform_edt

    if not isinstance(operator, Inpaint):
        raise ValueError(f"no estimate of the start's error for {type(operator).__name__}")
    holes = (operator.mask.expand(len(y), 1, *y.shape[-2:]) == 0).cpu().numpy()[:, 0]
    std = np.zeros(holes.shape)
    for i, hole in enumerate(holes):
        if not hole.any():
            continue
        rows, cols = np.nonzero(hole)
        size = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        errors, distances = [], []
        shifts = {  # modulo the image: a hole spanning it (random pixels) has only 3 distinct
            (round(dr * COPY_SPACING * size[0]) % hole.shape[0],
             round(dc * COPY_SPACING * size[1]) % hole.shape[1]): None
            for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc
        }  # fmt: skip
        for shift in shifts:
            copy = np.roll(hole, shift, axis=(0, 1)) & ~hole
            if not copy.any():
                continue
            both = hole | copy
            fill = _biharmonic(y[i : i + 1], torch.from_numpy(~both).to(y))
            err2 = (fill[0] - y[i]).double().pow(2).mean(0).cpu().numpy()
            errors.append(err2[copy] - operator.sigma**2)
            distances.append(distance_transform_edt(both)[copy])
        if not errors:
            raise ValueError("the hole leaves no observed pixels to measure its fill's error on")
        pooled = _by_distance(np.concatenate(distances), np.concatenate(errors))
        std[i] = np.where(hole, np.sqrt(pooled(distance_transform_edt(hole))), 0.0)
    return torch.from_numpy(std[:, None]).to(y)


def _by_distance(distance: np.ndarray, err2: np.ndarray):
    """Squared errors pooled in geometric bins of distance: their means (at least 0, made
    non-decreasing with distance) as a function of distance, linear between the bins' mean
    distances and constant beyond them."""
    edges = np.unique(np.floor(np.geomspace(1, distance.max() + 1, 25)))
    which = np.digitize(distance, edges)
    bins = np.unique(which)
    centres = np.array([distance[which == b].mean() for b in bins])
    means = np.maximum.accumulate([max(err2[which == b].mean(), 0.0) for b in bins])
    return lambda d: np.interp(d, centres, means)
