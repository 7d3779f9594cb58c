"""Recalibrating a std map by replay: solve the same problem once more, one measurement down,
where the truth is known, and scale the std map by how far off it was there.

Posterior draws of a learned prior are overconfident: their spread misses the prior's own
errors (4x super-resolution of the held-out photos, mean of 4: RMS error 2.5x the RMS std, where
a calibrated posterior gives 1.12). Natural images look alike across scales, so a solver that
restores ``x`` from ``y = A(x)`` is about as far off when it restores ``y`` from ``A(y)`` (for
deblurring, a coarser copy of y: :func:`replay_truth`); there the truth is known, and the ratio
of the RMS error to the RMS std says how much to widen (or narrow) the map. This is
split-conformal calibration with the held-out set made from ``y`` itself by a second measurement.
Denoising has no coarser copy of y to play the truth; its replay splits y's noise in two
instead (:func:`replay_problem`). Noise-free inpainting replays on copies of the hole moved
into the observed pixels, where y is the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from ..metrics.calibration import CERTAIN_STD, mixed_error_ratio
from ..process import check_int, is_int
from .operators import Deblur, Denoise, Inpaint, Operator, SuperResolution
from .solvers import Restoration
from .starts import SIGNAL_STD, hole_copies

#: The least ``lam`` of the filter that undoes the blur left in the deblurring replay's pooled
#: truth (:func:`replay_truth`, ``sharpen``): it caps the filter's gain at 1 / (2 sqrt(lam)) = 4.
#: The pooled image's blur is the kernel's spectrum only up to aliases, which a thin diagonal
#: motion blur has many of; an unbounded inverse amplifies them. Chosen on the training photos,
#: without a model, for the truth's error against the photo pooled before blurring, over 3
#: Gaussian and 3 motion kernels, with and without noise (bench/results/replay_truth.md).
SHARPEN_FLOOR = 1 / 64

#: ``a`` of the denoising replay (:func:`replay_problem`): y + a z is denoised, at sqrt(1 + a^2)
#: times y's noise level, against y - z / a, whose noise has 1 + 1 / a^2 times y's variance.
#: Smaller: a replay nearer y's own level but a noisier truth, so a noisier factor. Chosen of
#: 0.5, 1 and 2 on 8 training photos (256 px crops, noise 25, posterior, 4 draws): 2 brought
#: RMS error / RMS std to 1.00-1.17 (1.12 calibrated; 1.47-1.74 as drawn); at 1 one photo came
#: out at 2.53, and at 0.5 the truth's noise swamped the error on 4 of 8
#: (bench/results/replay_denoise_training.md).
RECORRUPT = 2.0


#: How many copies of the hole an inpainting replay hides (:func:`replay_holes`). The replay
#: solves the window around the hole and its copies, where the run solved the hole's: for a
#: central box of side w = 128 in a 512 px photo (tile 32) all 8 copies make it the whole photo,
#: 7x the run's tiles (about 15 min for camera at 8 samples on 2 cores); the two beside it,
#: 192 x 512 px, 2.7x. Fixed by that cost, not by how well the map came out.
REPLAY_COPIES = 2
#: How near (relative) the mean gap of an inpainting replay's hidden pixels must come to that
#: of y's hole before :func:`replay_holes` stops thinning them: four standard errors of the
#: mean gap over 2,000 pixels of a 50%-random hole (gaps 1.03 +- 0.12 px), so that sampling
#: noise in the gap does not decide where the thinning stops.
REPLAY_GAP_TOLERANCE = 0.01
#: The fewest pixels :func:`replay_holes` thins the copies of a hole to: a 32 px tile's worth.
#: Fewer make the replay's factor noisier (its errors are correlated over a few pixels).
REPLAY_MIN_PIXELS = 1024
#: The order in which :func:`replay_holes` takes the copies: along the rows first.
REPLAY_DIRECTIONS = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))


class NoReplayError(ValueError):
    """``y`` admits no replay: its operator has none, or y is too small for one."""


def kernel_spread(kernel: Tensor) -> float:
    """The larger of a blur kernel's two standard deviations along the axes, in pixels (2.0 for
    ``gaussian_kernel(13, 2.0)`` up to truncation; about ``size / sqrt(12)`` for a motion blur
    along an axis)."""
    k = kernel.double() / kernel.sum()
    r = torch.arange(k.shape[0], dtype=torch.float64)
    spreads = []
    for marginal in (k.sum(1), k.sum(0)):
        centre = (marginal * r).sum()
        spreads.append(float((marginal * (r - centre).square()).sum().sqrt()))
    return max(spreads)


def deblur_pooling(kernel: Tensor) -> int:
    """The default pooling of y for a deblurring replay: ``ceil(2 s)`` for the kernel's spread s
    (:func:`kernel_spread`), at least 1, which leaves a blur of at most half a pixel."""
    return max(1, math.ceil(2 * kernel_spread(kernel)))


def pooled_blur_spectrum(kernel: Tensor, scale: int, shape: tuple[int, int]) -> Tensor:
    """The blur that ``kernel`` leaves in an image pooled by ``scale``, as a spectrum on the
    pooled image's ``fft2`` grid (``shape`` = its H x W): the kernel's DTFT at 1 / ``scale`` of
    each frequency, ``K(u / scale, v / scale)`` (pooling maps the fine frequency f to the
    coarse ``scale * f``; aliases, which the pooling's box filter damps, are left out)."""
    k = kernel.double() / kernel.sum()
    taps_r = torch.arange(k.shape[0], dtype=torch.float64) - k.shape[0] // 2
    taps_c = torch.arange(k.shape[1], dtype=torch.float64) - k.shape[1] // 2
    rows = torch.exp(-2j * math.pi * torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
                     * taps_r[None, :] / scale)  # fmt: skip
    cols = torch.exp(-2j * math.pi * torch.fft.fftfreq(shape[1], dtype=torch.float64)[:, None]
                     * taps_c[None, :] / scale)  # fmt: skip
    return rows @ k.to(rows.dtype) @ cols.T


def _sharpened(
    pooled: Tensor, noise: float, k: Tensor, floor: float = SHARPEN_FLOOR
) -> tuple[Tensor, float]:
    """``pooled`` through ``conj(K) / (|K|^2 + lam)`` (see :func:`replay_truth`) and its noise
    variance after that filter (white noise of variance ``noise`` before)."""
    lam = noise / SIGNAL_STD**2 + floor
    k = k.to(pooled.device)
    gain = k.conj() / (k.abs().square() + lam)
    sharp = torch.fft.ifft2(torch.fft.fft2(pooled.double()) * gain).real.to(pooled.dtype)
    return sharp, noise * float(gain.abs().square().mean())


def replay_truth(
    operator: Operator, y: Tensor, scale: int | None = None, sharpen: bool = True
) -> tuple[Tensor, float]:
    """The image that plays the truth in the replay and the variance of y's noise left in it.

    - ``SuperResolution``: y itself (a natural image at 1 / factor of the scale), cut to a
      multiple of the factor on each side; its noise variance ``sigma_y^2``.
    - ``Deblur``: y average-pooled by ``scale`` (default: :func:`deblur_pooling`, 4 for a 2 px
      Gaussian), which leaves a blur of at most half a pixel, and with ``sharpen`` (the
      default) that blur undone (:func:`pooled_blur_spectrum`) by ``conj(K) / (|K|^2 + lam)``,
      ``lam`` = (its noise ``sigma_y / scale`` over a flat signal of std ``SIGNAL_STD``)^2 +
      ``SHARPEN_FLOOR``: a sharp natural image at 1 / scale of the scale, blurred next by the
      same kernel, so the replay poses the same problem as the original (replaying on y itself
      would deblur an image already smooth, an easier problem); its noise variance
      ``sigma_y^2 / scale^2``, times the filter's mean squared gain when sharpened. Unsharpened,
      the truth is smoother than a photo and the replay too easy: on the held-out photos the
      scaled map's RMS error / RMS std was 1.69 (1.12 calibrated), sharpened 1.32
      (bench/results/replay_scale.md).

    y: ``N x C x h x w`` as ``operator.forward`` makes it. Other operators raise ``ValueError``:
    their measurement is not a natural image (a grey one for ``Colorize``, a holed one for
    ``Inpaint``, a noisy one for ``Denoise``). Raises :class:`NoReplayError` (a ``ValueError``)
    where there is none."""
    if isinstance(operator, SuperResolution):
        f = operator.factor
        h, w = y.shape[-2] // f * f, y.shape[-1] // f * f
        if min(h, w) == 0:
            raise NoReplayError(f"y ({width_by_height(y)}) is smaller than the factor {f}")
        return y[..., :h, :w], operator.sigma**2
    if isinstance(operator, Deblur):
        if scale is not None:
            check_int("scale", scale, 1)  # 1.5 was a TypeError from the pooling
        s = scale or deblur_pooling(operator.kernel)
        if min(y.shape[-2:]) // s < operator.kernel.shape[0]:
            raise NoReplayError(
                f"y ({width_by_height(y)}) pooled by {s} is smaller than the kernel"
            )
        pooled, noise = F.avg_pool2d(y, s), operator.sigma**2 / s**2
        if not sharpen:
            return pooled, noise
        return _sharpened(
            pooled, noise, pooled_blur_spectrum(operator.kernel, s, pooled.shape[-2:])
        )
    raise NoReplayError(
        f"no replay for {type(operator).__name__}: only SuperResolution and Deblur have a "
        "replay truth, and noisy Denoise and noise-free Inpaint a replay problem"
    )


def replay_holes(
    hole: np.ndarray,
    copies: int = REPLAY_COPIES,
    min_pixels: int = REPLAY_MIN_PIXELS,
    tolerance: float = REPLAY_GAP_TOLERANCE,
) -> np.ndarray:
    """Where an inpainting replay hides y (``H x W`` bool): up to ``copies`` of the copies of
    ``hole`` that :func:`~diffvision.restore.starts.start_error_std` fills (``hole_copies``:
    moved 1.5 times its bounding box), left and right of it first, then above and below, then
    the diagonals, each taken only where it overlaps none taken before (so each is a hole of
    its own and y is known on all of it; random pixels, whose copies overlap, get 1). Empty
    where there is no room.

    The copies are then thinned, where that makes the replay's hidden pixels as far from the
    pixels it observes as y's hole is from y's: the gap of a pixel is its distance to the
    nearest observed one, and the copies are halved (a fixed random half of what is left,
    seed 0) while the mean gap over what is left is off the hole's by more than ``tolerance``
    (relative), halving brings it closer, and at least ``min_pixels`` are left. A scattered
    hole (random pixels) needs it: its one copy hides half the observed pixels at 50% missing,
    so the replay would solve a 75%-missing problem (mean gap 1.20 px against 1.03 for a
    256 px square; 1/8 of the copy: 1.04). A box's or a stroke's copies are kept whole: their
    gaps are near the hole's (a box's copies at the image's edge up to 25% wider), and a
    thinned copy's, all about 1 px, would be farther off."""
    held = np.zeros_like(hole)
    taken = 0
    for copy in hole_copies(hole, REPLAY_DIRECTIONS) if hole.any() else []:
        if taken == copies:
            break
        if not (copy & held).any():
            held |= copy
            taken += 1
    if not held.any():
        return held
    target = _mean_gap(hole, hole)
    draw = np.random.default_rng(0).random(hole.shape)
    keep, off = 1.0, abs(_mean_gap(hole | held, held) - target)
    while off > tolerance * target:
        thinner = held & (draw < keep / 2)
        if int(thinner.sum()) < min_pixels:
            break
        thinner_off = abs(_mean_gap(hole | thinner, thinner) - target)
        if thinner_off >= off:
            break
        keep, off = keep / 2, thinner_off
    return held & (draw < keep)


def replay_thins(operator: Inpaint, min_pixels: int = REPLAY_MIN_PIXELS) -> bool:
    """Whether :func:`replay_holes` thins the copies of the hole of every image of ``operator``:
    a scattered hole, such as random pixels, whose replay hides a sparse sample of the observed
    pixels spread over the image (a box's or a stroke's replay hides a few whole copies of it),
    on an image large enough that ``min_pixels`` are left (:func:`scattered`: any size).
    Where the std map of a warm start holds the fill's error (``Restoration.stated``), the
    command and ``bench/restoration.py`` replay it only then: for random pixels a replay mends
    the map, for a box it made it worse (``docs/restoration.md``)."""
    for mask in operator.mask.cpu():
        hole = mask[0].numpy() == 0
        whole = replay_holes(hole, min_pixels=hole.size + 1)  # too few left to thin: kept whole
        if not (whole & ~replay_holes(hole, min_pixels=min_pixels)).any():
            return False
    return True


def scattered(operator: Inpaint) -> bool:
    """Whether the hole of every image of ``operator`` is scattered, like random pixels, rather
    than a few compact or thin shapes, like a box or strokes: whether its replay's copies would
    be thinned to match the hole's gaps (:func:`replay_thins`) on an image of any size.

    A warm start's stated error depends on it (``restore.starts.warm_start``): for a scattered
    hole the part of the fill's error that the start keeps (``kept_gain``), for others the
    whole of it. Measured with the default solvers (``ddnm`` from the biharmonic fill at 0.3, 4
    draws; with noise ``repaint``; RMS error / RMS std over its calibrated value, medians over
    the photos; ``bench/results/inpaint_map_*``): 8 strokes 6 px wide, whole 0.98 (training
    photos, 10 steps) and 0.88 (held-out, 50 steps) against kept 1.40 and 1.20 (with noise
    10, training photos: 0.93 against 1.31); a 64 px box, 1.39 against 1.55 (with noise 10:
    1.36 against 1.50; held-out crops 0.86 against 0.92, camera 2.01; held-out
    quarter-size boxes, ``bench/results/restoration_inpaint_whole.md`` and ``..._kept.md``:
    1.15 against 1.22, 1.00 calibrated); 50% random pixels, whole 0.68 against kept 1.40
    (then replayed), and with noise 10 0.60 against 1.13. The draws of a model redraw a
    scattered hole's pixel-scale error, as the Gaussian gain says, but keep nearly all of a
    box's or a stroke's.
    """
    return replay_thins(operator, min_pixels=1)


def _mean_gap(missing: np.ndarray, where: np.ndarray) -> float:
    """Mean over ``where`` of the distance (pixels) to the nearest pixel not ``missing``
    (infinite if every pixel is missing)."""
    if missing.all():
        return math.inf
    return float(distance_transform_edt(missing)[where].mean())


def width_by_height(images: Tensor) -> str:
    """ "W x H" of ``... x H x W`` images, as the command says sizes."""
    return f"{images.shape[-1]} x {images.shape[-2]}"


def replay_problem(
    operator: Operator,
    y: Tensor,
    generator: torch.Generator | None = None,
    scale: int | None = None,
    sharpen: bool = True,
    recorrupt: float = RECORRUPT,
) -> tuple[Operator, Tensor, Tensor, float]:
    """The problem a replay solves: ``(operator, y2, truth, noise)``, where the solver restores
    ``truth`` from ``y2`` measured by ``operator``, and ``noise`` is the variance of the noise
    in ``truth`` (independent of ``y2``), which no restoration can predict.

    - ``SuperResolution``, ``Deblur``: the same operator, ``truth`` from :func:`replay_truth`
      and ``y2`` its measurement (fresh noise of the operator's sigma, from ``generator``).
    - ``Denoise`` at sigma > 0 (the recorruption of Pang et al. 2021, "Recorrupted-to-
      Recorrupted", CVPR): with ``z ~ N(0, sigma^2 I)`` from ``generator`` and
      ``a = recorrupt``, ``y2 = y + a z`` is denoised by ``Denoise(sigma sqrt(1 + a^2))`` and
      ``truth = y - z / a``. Both are the clean image plus Gaussian noise, ``n + a z`` and
      ``n - z / a``, whose covariance ``sigma^2 - sigma^2`` is 0: the truth's noise (variance
      ``sigma^2 (1 + 1 / a^2)``) is independent of y2, so it adds exactly its variance to the
      expected squared error of any estimate made from y2.

    - ``Inpaint`` without noise: y's hole, and :func:`replay_holes` (copies of it moved into the
      observed pixels) hidden too, so ``Inpaint(mask less the copies)`` and ``y2 = y`` there;
      ``truth = y`` on the copies and NaN in the original hole, where it is unknown (the solver
      keeps y elsewhere, with std 0, so only the copies count: :func:`replay_factor` skips NaN).
      It assumes the image around the copies is like the image around the hole, as the fill's
      error estimate does. With noise, y's observed pixels are both the replay's measurement
      and its truth, whose noise would then not be independent: no replay (its std map is
      calibrated by the fill's error estimate instead, ``start_error_std(..., kept=)``).

    y: ``N x C x h x w`` as ``operator.forward`` makes it. Other operators, a noise-free
    ``Denoise``, a noisy ``Inpaint``, one with no hole and one with no room for copies of a
    hole raise :class:`NoReplayError` (see :func:`replay_truth`). In a batch, images with no
    hole are left as they are (no copies: nothing to replay there)."""
    if isinstance(operator, Inpaint):
        return _inpainting_replay(operator, y)
    if not isinstance(operator, Denoise):
        truth, noise = replay_truth(operator, y, scale, sharpen)
        return operator, operator.measure(truth.double(), generator).to(y.dtype), truth, noise
    if operator.sigma <= 0 or recorrupt <= 0:
        raise NoReplayError("a denoising replay needs noise in y (sigma > 0) and recorrupt > 0")
    a = recorrupt
    z = torch.randn(y.shape, generator=generator, dtype=torch.float64) * operator.sigma
    z, y64 = z.to(y.device), y.double()
    again = Denoise(operator.sigma * math.sqrt(1 + a * a))
    truth = (y64 - z / a).to(y.dtype)
    return again, (y64 + a * z).to(y.dtype), truth, operator.sigma**2 * (1 + 1 / a**2)


def _inpainting_replay(operator: Inpaint, y: Tensor) -> tuple[Operator, Tensor, Tensor, float]:
    """:func:`replay_problem` for noise-free inpainting."""
    if operator.sigma > 0:
        raise NoReplayError(
            "a noisy inpainting has no replay (y's noisy pixels would be its truth too)"
        )
    masks = operator.mask.expand(len(y), 1, *y.shape[-2:]).cpu()
    held = torch.from_numpy(np.stack([replay_holes(m[0].numpy() == 0) for m in masks]))[:, None]
    holed = (masks == 0).flatten(1).any(1)  # an image with no hole needs no replay
    if not bool(holed.any()):
        raise NoReplayError("y has no hole: nothing to replay")
    if not bool(held.flatten(1).any(1)[holed].all()):
        raise NoReplayError("no room in the observed pixels for a copy of the hole")
    kept = (masks * ~held).to(operator.mask)
    truth = torch.where(masks.bool().to(y.device), y, torch.full_like(y, math.nan))
    return Inpaint(kept), y * kept.to(y), truth, 0.0


def replay_factor(
    operator: Operator,
    y: Tensor,
    run: Callable[[Operator, Tensor], Restoration],
    k: int,
    generator: torch.Generator | None = None,
    scale: int | None = None,
    sharpen: bool = True,
    recorrupt: float = RECORRUPT,
    min_size: int = 0,
    grey: bool = False,
) -> Tensor:
    """Per image, the factor that calibrates the std map of ``run`` on ``y``, measured by
    replaying ``run`` on ``A(y)`` (for denoising, on y recorrupted; for inpainting, on y with
    copies of the hole hidden too: :func:`replay_problem`).

    Args:
        operator: a ``SuperResolution``, ``Deblur`` (see :func:`replay_truth`), noisy
            ``Denoise`` or noise-free ``Inpaint`` (see :func:`replay_problem`), with its noise.
        y: the measurements, ``N x C x h x w`` in [-1, 1].
        run: ``run(operator, y) -> Restoration``, the solver as it was run on y (same method,
            steps, tiling, samples; it must build any warm start from the y it is given).
        k: the number of samples ``run`` draws (>= 2).
        generator: for the replay's measurement noise.
        scale, sharpen: for ``Deblur``, the pooling of y that makes the replay's truth and
            whether the blur left in it is undone (default; :func:`replay_truth`).
        recorrupt: for ``Denoise``, the split of y's noise (:func:`replay_problem`).
        min_size: the least side of the replay's image that ``run`` can take (a tiled
            solver's tile); smaller raises :class:`NoReplayError` before ``run`` is called.
        grey: ``run`` restores the channels' mean of the C channels of y (a grey image restored
            by a colour model: :meth:`~diffvision.restore.solvers.Restoration.channel_mean`),
            which is compared with the truth's channel mean, whose noise variance is a C-th of
            a channel's: the noise of y and of the replay, drawn per channel at the operator's
            sigma, averages down by C (a grey y whose one noise fills every channel is restored
            at sqrt(C) times its sigma, and averages back to it).

    Returns:
        ``N`` factors. ``std * factor`` (per image) has on the replay the RMS error / RMS std of a
        calibrated posterior sampled K times, ``sqrt(1 + 1/K)``
        (:func:`~diffvision.metrics.uncertainty_calibration`); where the run's std adds a stated
        part (``Restoration.stated``, a warm start's fill error), the mixed reference of
        ``uncertainty_calibration(..., stated=)`` on the replay, between that and 1. The
        replay's truth carries noise (y's, or for denoising its split), which no restoration
        can predict: its variance is taken off the mean squared error first (a factor of 0
        where nothing is left). 1 for an image whose replay has a std of zero everywhere (an
        inpainting with no hole in a batch): nothing to scale; ``ValueError`` where that is
        every image.
    """
    if not (is_int(k) and k >= 2):
        raise ValueError(f"a std map needs k >= 2 samples, not {k!r}")
    again, y2, truth, noise = replay_problem(operator, y, generator, scale, sharpen, recorrupt)
    if min(truth.shape[-2:]) < min_size:
        size = width_by_height(truth)
        raise NoReplayError(f"the replay's image ({size}) is smaller than a tile ({min_size} px)")
    if grey:
        truth, noise = truth.mean(1, keepdim=True), noise / truth.shape[1]
    result = run(again, y2)  # possibly on another device (the model's): compared on y's
    mean, std = result.mean.to(truth.device).double(), result.std.to(truth.device).double()
    known = truth.isfinite()  # NaN: unknown (an inpainting replay's original hole)
    err2 = torch.where(known, mean - truth.double(), 0.0).square()
    std2 = std.square()
    free = ((std > CERTAIN_STD) & known).double()
    counted = free.flatten(1).sum(1).clamp(min=1)
    mse = (err2 * free).flatten(1).sum(1) / counted - noise
    ms = (std2 * free).flatten(1).sum(1) / counted
    if bool((ms == 0).all()):
        raise ValueError("the replay's std is zero everywhere: nothing to calibrate")
    calibrated = torch.full_like(ms, 1 + 1 / k)  # the K-sample spread's E[err^2] / E[s^2]
    if result.stated is not None:  # a stated part e: E[err^2] = e^2 + (1 + 1/K) s^2
        e2 = result.stated.to(truth.device).double().expand_as(std2).square()
        s2 = (std2 - e2).clamp(min=0)
        calibrated = mixed_error_ratio((e2 * free).flatten(1), (s2 * free).flatten(1), k, 1)
    factor = (mse.clamp(min=0) / ms / calibrated).sqrt()  # NaN where ms = 0
    return torch.where(ms > 0, factor, 1.0).float()  # 1: nothing to scale in that image
