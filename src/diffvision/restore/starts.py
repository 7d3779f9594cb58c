"""Classical restorations to warm-start a diffusion solver from (``solve(..., start=...)``): a
fill of an inpainting hole (the biharmonic one, or a blend of three classical fills weighted by
how well each one predicts copies of the hole), a bicubic upscaling, a Wiener deconvolution,
the noisy image itself; and, for the fill, an estimate of its own error
(``solve(..., start_std=...)``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from .operators import Colorize, Deblur, Denoise, Inpaint, Operator, SuperResolution
from .solvers import START_SIGMA

#: Per-pixel std of images in [-1, 1] assumed by the deblurring start (the EDM sigma_data).
SIGNAL_STD = 0.5


#: The single classical fills of an inpainting hole: scikit-image's biharmonic fill (the
#: default), OpenCV's Navier-Stokes and Telea fills (radius 3 px).
BLENDED = ("biharmonic", "navier_stokes", "telea")
#: The fills that ``classical_start(..., fill=...)`` takes: those, and their blend.
FILLS = (*BLENDED, "blend")
#: Ridge strength of the blend's weights (:func:`blend_weights`), as a multiple of the mean
#: non-zero eigenvalue of the normal matrix. Chosen on the training photos, never the held-out
#: ones, over four hole geometries (bench/fill_blend.py, bench/results/fill_blend.md).
BLEND_SHRINK = 1.0
#: Where the copies of the hole go when a fill is measured: 1.5 times the hole's bounding box
#: away, in the 8 directions (half a hole's width of observed pixels between).
COPY_SPACING = 1.5


def classical_start(operator: Operator, y: Tensor, fill: str = "biharmonic") -> Tensor:
    """A classical estimate of x from ``y`` (``N x C x H x W`` in [-1, 1] as ``operator.forward``
    makes it), shaped like the restored image:

    - ``Inpaint``: a fill of the hole, ``fill`` one of ``FILLS``: by default scikit-image's
      biharmonic fill (smooth, continues the border's values and gradients), or the blend of
      it with the Navier-Stokes and Telea fills (:func:`inpaint_start`);
    - ``SuperResolution``: bicubic upscaling;
    - ``Deblur``: the Wiener filter for a flat signal spectrum of std ``SIGNAL_STD`` (Tikhonov
      with ``lam = (sigma_y / SIGNAL_STD)^2``), the truncated pseudo-inverse without noise;
    - ``Denoise``, ``Colorize``: ``A^+ y`` (the noisy image; the grey image in every channel).
    """
    if isinstance(operator, Inpaint):
        return inpaint_start(operator, y, fill, error=False)[0]
    if isinstance(operator, SuperResolution):
        size = (y.shape[-2] * operator.factor, y.shape[-1] * operator.factor)
        return F.interpolate(y, size=size, mode="bicubic", align_corners=False)
    if isinstance(operator, Deblur) and operator.sigma > 0:
        return operator.regularized_inverse(y, (operator.sigma / SIGNAL_STD) ** 2)
    if isinstance(operator, Deblur | Denoise | Colorize):
        return operator.pinv(y)
    raise ValueError(f"no classical start for {type(operator).__name__}; pass start= yourself")


def warm_start(
    operator: Operator,
    y: Tensor,
    start,
    start_std=None,
    start_sigma: float = START_SIGMA,
    samples: int = 2,
) -> tuple[Tensor | None, Tensor | None]:
    """``solve``'s ``start`` and ``start_std`` as tensors: named ones made from ``y`` here,
    tensors (or None) passed through.

    ``start``: "classical" (:func:`classical_start`'s default for the operator) or, for
    inpainting, a fill of ``FILLS``. ``start_std``: "estimate", for a named inpainting start
    only: the fill's error (:func:`start_error_std`), for a scattered hole (random pixels,
    :func:`~diffvision.restore.replay.scattered`) only the part that a warm start at
    ``start_sigma`` keeps (``kept=start_sigma``); the fill and the estimate come from one set
    of fills of copies of the hole (:func:`inpaint_start`); with ``samples`` 1 (no std map to
    add it to) it is checked but not made (None), which spares the copies' fills. Named starts
    are made from the whole of ``y``, so a solver that cuts y into pieces resolves them
    first."""
    named = isinstance(start, str)
    if named and start != "classical" and not (start in FILLS and isinstance(operator, Inpaint)):
        fills = f", or for inpainting one of {', '.join(FILLS)}"
        raise ValueError(f'start must be a tensor, "classical"{fills}; not {start!r}')
    if isinstance(start_std, str) and (
        start_std != "estimate" or not named or not isinstance(operator, Inpaint)
    ):
        raise ValueError('start_std="estimate" goes with a named start of inpainting')
    if not named:
        return start, start_std
    fill = "biharmonic" if start == "classical" else start  # ignored but for inpainting
    if start_std == "estimate" and samples > 1:
        from .replay import scattered  # replay builds on this module

        return inpaint_start(operator, y, fill, kept=start_sigma if scattered(operator) else None)
    return classical_start(operator, y, fill), None if start_std == "estimate" else start_std


def start_error_std(
    operator: Operator, y: Tensor, fill: str = "biharmonic", kept: float | None = None
) -> Tensor:
    """Per-pixel std of the error of :func:`classical_start`'s ``fill`` for inpainting
    (``Inpaint``), estimated from the observed pixels of ``y`` themselves: ``N x 1 x H x W``, 0
    where observed. :func:`inpaint_start` gives the fill and this std from one set of fills.
    ``kept``: a warm start's noise level; the std of the part of the error that a solver
    started there keeps instead (:func:`kept_gain`): what ``solve(..., start_std="estimate")``
    adds to the draws' spread for a scattered hole (random pixels); for a box or strokes it adds
    the whole error (:func:`~diffvision.restore.replay.scattered`, with the runs behind it).

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
    errors within 2 std for the biharmonic fill; for other masks bench/results/start_error.md.
    With ``kept`` (bench/results/restoration_inpaint_kept.md): 1.22 and 91% for the same box
    holes, and for noisy random-pixel inpainting, where the whole error is far too wide,
    within 0.05-0.23 of calibrated (bench/results/noisy_inpaint_map_held-out.md).
    Costs a fill of the hole and a copy per copy and method (3 copies for a hole that spans
    the image, e.g. random pixels, whose many small holes make a biharmonic fill slow).
    """
    if not isinstance(operator, Inpaint):
        raise ValueError(f"no estimate of the start's error for {type(operator).__name__}")
    return inpaint_start(operator, y, fill, kept=kept)[1]


def inpaint_start(
    operator: Inpaint,
    y: Tensor,
    fill: str = "biharmonic",
    error: bool = True,
    kept: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The classical fill of the hole (``N x C x H x W``, y where observed) and, with ``error``,
    the std of its error (``N x 1 x H x W``, see :func:`start_error_std`), from one set of
    fills of copies of the hole. ``kept``: the noise level of a warm start from the fill; the
    std is then that of the part of the error such a start keeps (:func:`kept_gain`).

    ``fill="blend"``: sum_j w_j fill_j over the biharmonic, Navier-Stokes and Telea fills, the
    weights (summing to 1, one set per image) fitted by :func:`blend_weights` to how the three
    fills predict the observed pixels of the copies. Smooth fills differ in where they fail (the
    biharmonic one overshoots at strong edges, the others streak along isophotes), and their
    mean beats each of them where their errors differ; the fit moves away from the mean where
    the copies show one fill to be better. On the training photos it is +0.75 to +1.39 dB over
    the biharmonic fill, for four hole geometries (bench/results/fill_blend.md). On the held-out
    photos it is not better on average (28.17 vs 28.25 dB; +0.18 to +0.67 on three photos, but
    -1.72 on camera, where the copies favour the other fills and the hole does not:
    bench/results/restoration_inpaint_blend.md), so it is not the default: the copies assume
    the image around the hole is like the hole, and where it is not, the blend can fail badly.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, not {fill!r}")
    methods = BLENDED if fill == "blend" else (fill,)
    holes = (operator.mask.expand(len(y), 1, *y.shape[-2:]) == 0).cpu().numpy()[:, 0]
    images = y.detach().cpu().double().numpy()
    out, std = images.copy(), np.zeros(holes.shape)
    for i, hole in enumerate(holes):
        if not hole.any():
            continue
        if hole.all():
            raise ValueError("the hole covers the whole image: no observed pixels to fill it from")
        weights = np.ones(1)
        if fill == "blend" or error:
            copies = hole_copies(hole)
            candidates, target, distance = held_out_fills(images[i], hole, methods, copies)
            if fill == "blend":
                weights = blend_weights(candidates, target)
        fills = np.stack([fill_hole(images[i], hole, how) for how in methods], -1)[:, hole]
        out[i][:, hole] = fills @ weights
        if error:
            err = candidates @ weights - target
            if kept is None:
                err2 = (err**2).mean(0) - operator.sigma**2
            else:
                gain = kept_gain(out[i], kept, operator.sigma)
                err2 = _kept_error2(err, copies, gain, operator.sigma)
            pooled = _by_distance(distance, err2)
            std[i] = np.where(hole, np.sqrt(pooled(distance_transform_edt(hole))), 0.0)
    return torch.from_numpy(out).to(y), torch.from_numpy(std[:, None]).to(y) if error else None


def fill_hole(image: np.ndarray, hole: np.ndarray, how: str) -> np.ndarray:
    """One classical fill of ``image`` (``C x H x W``, float, in [-1, 1]) where ``hole``
    (``H x W`` bool) is true; ``how``: "biharmonic" (scikit-image, in float), "navier_stokes" or
    "telea" (OpenCV, radius 3 px, each channel as an 8-bit image: the same as OpenCV's 3-channel
    call; its float path misbehaves for Telea on values outside [0, 255])."""
    if how == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        filled = inpaint_biharmonic(np.moveaxis(image, 0, -1), hole, channel_axis=-1)
        return np.moveaxis(filled, -1, 0)
    import cv2

    flag = {"navier_stokes": cv2.INPAINT_NS, "telea": cv2.INPAINT_TELEA}[how]
    mask = hole.astype(np.uint8)
    bytes_ = np.round((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)
    filled = np.stack([cv2.inpaint(np.ascontiguousarray(c), mask, 3, flag) for c in bytes_])
    return filled.astype(image.dtype) / 127.5 - 1


class NoCopiesError(ValueError):
    """No copy of the hole lies in the observed pixels (:func:`hole_copies` is empty: every move
    of it wraps around the image onto the hole, as for a box of 2/3 of the image's sides), so a
    fill cannot be measured on y."""


def held_out_fills(image: np.ndarray, hole: np.ndarray, methods, copies=None) -> tuple:
    """How each fill of ``methods`` predicts observed pixels: the hole is copied
    ``COPY_SPACING`` hole-widths away in the 8 directions (wrapping at the edges; shifts that
    coincide there are made once; ``copies``: :func:`hole_copies` of ``hole`` where the caller
    has them already) and each copy filled together with the hole. Returns the fills at the
    copies' pixels (``C x P x M``), the image there (``C x P``) and each pixel's distance to the
    nearest observed one (``P``). Raises :class:`NoCopiesError` where there are no copies."""
    candidates, targets, distances = [], [], []
    for copy in hole_copies(hole) if copies is None else copies:
        both = hole | copy
        fills = [fill_hole(image, both, how)[:, copy] for how in methods]
        candidates.append(np.stack(fills, -1))
        targets.append(image[:, copy])
        distances.append(distance_transform_edt(both)[copy])
    if not candidates:
        raise NoCopiesError(
            "no copy of the hole fits in the observed pixels to measure its fill on"
        )
    return np.concatenate(candidates, 1), np.concatenate(targets, 1), np.concatenate(distances)


#: The 8 directions (rows, columns) in which :func:`hole_copies` moves the hole, in its order.
DIRECTIONS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)


def hole_copies(hole: np.ndarray, directions=DIRECTIONS) -> list[np.ndarray]:
    """The copies of ``hole`` (``H x W`` bool) on which :func:`held_out_fills` measures a fill:
    the hole moved ``COPY_SPACING`` times its bounding box in each of ``directions`` (default:
    the 8; wrapping at the edges; shifts that coincide there made once), less the hole itself;
    empty ones dropped. In the order of ``directions``."""
    rows, cols = np.nonzero(hole)
    size = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    shifts = {  # modulo the image: a hole spanning it (random pixels) has only 3 distinct
        (round(dr * COPY_SPACING * size[0]) % hole.shape[0],
         round(dc * COPY_SPACING * size[1]) % hole.shape[1]): None
        for dr, dc in directions
    }  # fmt: skip
    copies = (np.roll(hole, shift, axis=(0, 1)) & ~hole for shift in shifts)
    return [copy for copy in copies if copy.any()]


def kept_gain(image: np.ndarray, level: float, noise: float = 0.0) -> np.ndarray:
    """The fraction of a start's error at each spatial frequency that a solver warm-started at
    noise ``level`` keeps: ``P / (P + level^2)`` (``H x W``, in ``numpy.fft.fft2``'s layout),
    with P the power spectrum of ``image`` (``C x H x W`` in [-1, 1]; a Hann-windowed
    periodogram per pixel, mean over channels, averaged over rings of frequency) less
    ``noise^2``; 1 at frequency 0.

    Why: a warm start ``x_s = f + level * n`` from an estimate ``f = x + e`` asks the prior for x
    given x_s. For a stationary Gaussian prior with spectrum P, the posterior mean is ``W x_s``
    with W this gain at each frequency, so ``W e`` reaches every draw alike (the draws' spread
    misses it) and the rest of e is drawn afresh (their spread holds it). Photos have P falling
    steeply with frequency: a fill's coarse error is kept, its pixel-scale error redrawn. The
    image's mean is kept whole (a prior of patches does not know it)."""
    _, h, w = image.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    centred = (image - image.mean((1, 2), keepdims=True)) * window
    power = (np.abs(np.fft.fft2(centred)) ** 2).mean(0) / (window**2).sum()
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    n = max(min(32, min(h, w) // 2), 1)
    ring = np.minimum((radius / radius.max() * n).astype(int), n - 1)
    ac = radius > 0  # frequency 0 holds no power once the mean is taken off
    count = np.bincount(ring[ac], minlength=n)
    mean = np.bincount(ring[ac], power[ac], minlength=n) / np.maximum(count, 1)
    full = count > 0
    centres = np.bincount(ring[ac], radius[ac], minlength=n)[full] / count[full]
    p = np.maximum(np.interp(radius, centres, mean[full]) - noise**2, 0.0)
    gain = p / (p + level**2)
    gain[0, 0] = 1.0
    return gain


def _kept_error2(err: np.ndarray, copies, gain: np.ndarray, noise: float) -> np.ndarray:
    """Squared error (mean over channels) at the copies' pixels of the part of a fill's error
    ``err`` (``C x P``, the copies' pixels in :func:`hole_copies`' order) that a warm start keeps
    (filtered by ``gain``), less what y's white noise of std ``noise`` contributes to it
    (``noise^2`` times the copy's indicator convolved with the filter's squared impulse
    response)."""
    response2 = np.fft.fft2(np.real(np.fft.ifft2(gain)) ** 2)
    out, at = [], 0
    for copy in copies:
        n = int(copy.sum())
        image = np.zeros((len(err), *copy.shape))
        image[:, copy] = err[:, at : at + n]
        kept = np.real(np.fft.ifft2(np.fft.fft2(image) * gain))[:, copy]
        noise2 = np.real(np.fft.ifft2(np.fft.fft2(copy.astype(float)) * response2))[copy]
        out.append((kept**2).mean(0) - noise**2 * noise2)
        at += n
    return np.concatenate(out)


def blend_weights(candidates: np.ndarray, target: np.ndarray, shrink: float = BLEND_SHRINK):
    """Weights ``w`` (``M``, summing to 1) of ``M`` fills that predict ``target``:
    ``candidates`` ``... x M``, ``target`` shaped like ``candidates[..., 0]``.

    Ridge regression toward the fills' mean: with ``B`` the fills less their mean at each pixel
    and ``r`` the target less that mean, ``w = 1/M + (B^T B + lam I)^-1 B^T r``; ``B`` has the
    constant vector in its null space, so the correction sums to 0. ``lam`` is ``shrink`` times
    the mean non-zero eigenvalue of ``B^T B`` (trace / (M - 1)), so the fit weighs as much as
    the prior when the fills' differences predict the target as strongly as a typical
    direction; ``shrink`` must be > 0."""
    if shrink <= 0:
        raise ValueError("shrink must be > 0")
    a = candidates.reshape(-1, candidates.shape[-1]).astype(np.float64)
    m = a.shape[1]
    if m == 1:
        return np.ones(1)
    mean = a.mean(1, keepdims=True)
    b, r = a - mean, target.reshape(-1) - mean[:, 0]
    gram = b.T @ b
    lam = shrink * np.trace(gram) / (m - 1)
    if lam == 0:  # the fills agree everywhere: any weights do
        return np.full(m, 1 / m)
    return 1 / m + np.linalg.solve(gram + lam * np.eye(m), b.T @ r)


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
