"""Whole photos with a small model: a denoiser that works on overlapping tiles in batches and
blends them with smooth weights, so a model trained on 32 x 32 patches restores images of any
size with every solver."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import Tensor

from ..memory import available_bytes, batch_bytes, saved_bytes
from ..process import check_int
from .operators import Inpaint, Operator
from .solvers import Restoration, resolve_starts, solve

#: ``checkpoint="auto"`` keeps the tiles' activations for the backward pass only where their
#: count takes at most this share of the free memory: the count is a lower bound (the backward
#: pass's gradients, the solver's state and the kernels' workspaces come on top).
KEEP_SHARE = 0.5


def tile_starts(length: int, tile: int, overlap: int, offset: int = 0) -> list[int]:
    """Tile offsets covering ``length`` pixels with at least ``overlap`` shared pixels.

    ``offset`` 0: tiles spread evenly from border to border. ``offset`` in
    ``(0, tile - overlap)``: the first and last tile stay at the borders and the inner ones sit at
    ``offset + k * (tile - overlap)``, so a grid shifted from call to call has no fixed seams."""
    if tile > length:
        raise ValueError(f"tile ({tile} px) larger than the image side ({length} px)")
    if not 0 <= overlap < tile:
        raise ValueError("overlap must be in [0, tile)")
    stride = tile - overlap
    if not 0 <= offset < stride:
        raise ValueError("offset must be in [0, tile - overlap)")
    if offset:
        return sorted({0, *range(offset, length - tile, stride), length - tile})
    count = max(1, math.ceil((length - overlap) / stride))
    if count == 1:
        return [0]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_window(tile: int, overlap: int) -> Tensor:
    """``tile x tile`` weights: 1 in the middle, a raised-cosine ramp over the ``overlap`` border
    (never 0, so image borders covered by one tile keep their value)."""
    ramp = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        t = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
        edge = torch.sin(0.5 * math.pi * t) ** 2
        ramp[:overlap] = edge
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp[:, None] * ramp[None, :]


class TiledDenoiser:
    """A denoiser for images of any size made from one trained on ``tile`` x ``tile`` patches:
    ``D(x, sigma)`` splits x into overlapping tiles, denoises them in batches of ``batch`` and
    blends the estimates with :func:`blend_window` weights.

    Because it is a denoiser, every solver and sampler runs unchanged on the whole image, and
    operators stay global (an FFT blur, a box mask, a downsampling): only the prior is local.
    Differentiable (for ``dps``). ``x``: ``N x C x H x W`` with H, W >= tile.

    ``shift``: the first call uses the even grid, later calls a grid shifted by a
    deterministic low-discrepancy offset (golden-ratio sequence), so that across the steps of a
    solver no seam stays put and no tile lies wholly inside a hole every time (a tile that sees
    only the hole of an inpainting mask never sees the context).

    ``checkpoint``: with a gradient wanted and more than one batch of tiles, whether to
    recompute each batch's activations in the backward pass instead of keeping them all (see
    :meth:`_denoise`): True always, False never, ``"auto"`` (default) only where keeping them
    would not fit, by :meth:`kept_bytes` against :data:`KEEP_SHARE` of the free memory.
    Checkpointing holds memory to one batch's activations for 1.4-2.4x the time of a gradient
    call (``bench/results/tile_blend.md``).

    ``progress``: called as ``progress(done, total)`` after each batch of tiles of a call, with
    the tiles done and the call's tiles (a progress bar for a single long call, as ``mmse``'s).
    """

    def __init__(
        self,
        denoiser,
        tile: int = 32,
        overlap: int = 8,
        batch: int = 256,
        shift: bool = True,
        checkpoint: bool | str = "auto",
        progress=None,
    ):
        if checkpoint not in (True, False, "auto"):
            raise ValueError(f"checkpoint must be True, False or 'auto', not {checkpoint!r}")
        check_int("tile", tile, 1)  # batch 0 was range()'s "arg 3 must not be zero"
        check_int("overlap", overlap, 0)
        check_int("batch", batch, 1)
        if overlap >= tile:
            raise ValueError(f"overlap must be in [0, tile), not {overlap} with tile {tile}")
        self.denoiser, self.tile, self.overlap, self.batch = denoiser, tile, overlap, batch
        self.shift, self.checkpoint, self.calls = shift, checkpoint, 0
        self.progress = progress
        self._bytes_per_tile: dict[tuple, tuple[int, int]] = {}  # see kept_bytes
        for name in ("sigma_min", "sigma_max"):
            if hasattr(denoiser, name):
                setattr(self, name, getattr(denoiser, name))

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        n, _, h, w = x.shape
        t = self.tile
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(n)
        offsets = (0, 0)
        if self.shift:
            golden = (math.sqrt(5) - 1) / 2
            u, v = (self.calls * golden) % 1.0, (self.calls * golden**2) % 1.0
            offsets = (int(u * (t - self.overlap)), int(v * (t - self.overlap)))
            self.calls += 1
        rows = tile_starts(h, t, self.overlap, offsets[0])
        cols = tile_starts(w, t, self.overlap, offsets[1])
        # the flat pixel index of every tile's pixels, P x t x t, tile by tile (row-major)
        span = torch.arange(t, device=x.device)
        top = torch.tensor(rows, device=x.device)[:, None] + span  # len(rows) x t
        left = torch.tensor(cols, device=x.device)[:, None] + span  # len(cols) x t
        index = (top[:, None, :, None] * w + left[None, :, None, :]).reshape(-1)
        count = len(rows) * len(cols)
        flat = x.flatten(2)  # n x C x (H W)
        tiles = flat[..., index].reshape(n, -1, count, t, t).transpose(1, 2).flatten(0, 1)
        sigmas = sigma.repeat_interleave(count)
        out = self._denoise(tiles, sigmas)  # (n P) x C x t x t
        weight = blend_window(t, self.overlap).to(x)
        weighted = (out * weight).reshape(n, count, -1, t * t).transpose(1, 2).flatten(2)
        # one scatter-add of all tiles: cost in proportion to the tiles' pixels, not P x H x W
        blended = torch.zeros_like(flat).index_add(2, index, weighted)
        total = torch.zeros(h * w, dtype=x.dtype, device=x.device)
        total = total.index_add(0, index, weight.flatten().repeat(count))
        return (blended / total).view_as(x)

    def _denoise(self, tiles: Tensor, sigmas: Tensor) -> Tensor:
        """The denoiser on all tiles, in batches of ``batch``. Where a gradient is wanted
        (``dps``), the tiles fill more than one batch, and :meth:`checkpoints` says so, each
        batch is checkpointed: only its input is kept, and the backward pass recomputes its
        activations one batch at a time, so memory does not grow with the tiles
        (``bench/results/tile_blend.md``)."""
        checkpointed = self.checkpoints(tiles, sigmas)
        parts = []
        for i in range(0, len(tiles), self.batch):
            batch = (tiles[i : i + self.batch], sigmas[i : i + self.batch])
            if checkpointed:
                parts.append(
                    torch.utils.checkpoint.checkpoint(self.denoiser, *batch, use_reentrant=False)
                )
            else:
                parts.append(self.denoiser(*batch))
            if self.progress is not None:
                self.progress(min(i + self.batch, len(tiles)), len(tiles))
        return torch.cat(parts)

    def checkpoints(self, tiles: Tensor, sigmas: Tensor) -> bool:
        """Whether :meth:`_denoise` checkpoints its batches on ``tiles``: never without a
        gradient wanted or with one batch (checkpointing would keep as much at the peak and
        only cost time); with ``checkpoint="auto"``, where keeping every batch's activations
        (:meth:`kept_bytes`) would take more than :data:`KEEP_SHARE` of the memory free on
        the tiles' device, or where that memory is not known."""
        # tiles cut from an x that wants a gradient, under grad mode: they want one too
        if not (self.checkpoint and len(tiles) > self.batch and tiles.requires_grad):
            return False
        if self.checkpoint != "auto":
            return True
        free = available_bytes(tiles.device)
        return free is None or self.kept_bytes(tiles, sigmas) > KEEP_SHARE * free

    def kept_bytes(self, tiles: Tensor, sigmas: Tensor) -> int:
        """The bytes that autograd keeps for the backward pass of the denoiser on all
        ``tiles`` (``T x C x t x t``, with their ``sigmas``) left uncheckpointed: its count
        (:func:`~diffvision.memory.saved_bytes`) on one tile and on two, which the network's
        per-sample layers make affine in the tiles, extrapolated to T. Measured once per tile
        shape, dtype and device (two small forward passes)."""
        key = (tuple(tiles.shape[1:]), tiles.dtype, tiles.device)
        if key not in self._bytes_per_tile:
            exclude = self.denoiser if isinstance(self.denoiser, torch.nn.Module) else None

            def run_on(n: int) -> Tensor:
                return self.denoiser(tiles[:n].detach().requires_grad_(True), sigmas[:n])

            self._bytes_per_tile[key] = batch_bytes(
                run_on, lambda fn: saved_bytes(fn, exclude=exclude)
            )
        one, each = self._bytes_per_tile[key]
        return one + (len(tiles) - 1) * each


def blend_tile_by_tile(
    denoiser, x: Tensor, sigma: Tensor, rows: list[int], cols: list[int], tile: int, overlap: int
) -> Tensor:
    """The estimate of :class:`TiledDenoiser` on the grid ``rows x cols`` written out tile by
    tile: ``sum_k pad(w D(x_k)) / sum_k pad(w)``, an image-sized add per tile (so its cost grows
    with tiles x pixels). The reference for its tests and ``bench/tile_blend.py``; ``sigma``:
    one per image."""
    h, w = x.shape[-2:]
    weight = blend_window(tile, overlap).to(x)
    num, den = torch.zeros_like(x), torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for r in rows:
        for c in cols:
            part = (..., slice(r, r + tile), slice(c, c + tile))
            pad = (c, w - c - tile, r, h - r - tile)
            num = num + torch.nn.functional.pad(weight * denoiser(x[part], sigma), pad)
            den[part] += weight
    return num / den


def solve_tiled(
    denoiser,
    operator: Operator,
    y: Tensor,
    *,
    tile: int = 32,
    overlap: int = 8,
    batch: int = 256,
    shift: bool = True,
    window: bool = True,
    progress=None,
    **options,
) -> Tensor | Restoration:
    """:func:`~diffvision.restore.solve` on whole images with a model trained on ``tile`` x
    ``tile`` patches, through :class:`TiledDenoiser` (``shift``: move the tile grid between
    calls; ``progress``: its per-call progress callback). Same arguments and return type as
    ``solve``; images no larger than a tile are solved directly.

    ``window``: for noise-free inpainting, solve only the rectangle around the hole that tiles
    touching it can reach (the hole's bounding box grown by ``tile`` pixels) and keep y
    elsewhere: the prior is local, the observed pixels are final, so the rest of the image only
    costs time (a 128 px box in a 512 px photo: 7x fewer tiles). A named ``start`` (and
    ``start_std``) is made from the whole of y first."""
    k = options.get("n_samples", 1)  # named starts: from the whole of y, before the window
    options["start_std"] = resolve_starts(operator, y, options.get("start_std"), k, options)
    h, w = operator.pinv(y[:1]).shape[-2:]
    tiled = min(h, w) > tile
    prior = (
        TiledDenoiser(denoiser, tile, overlap, batch, shift, progress=progress)
        if tiled
        else denoiser
    )
    box = _hole_window(operator, tile) if window and tiled else None
    if box is None:
        return solve(prior, operator, y, **options)
    part = (..., slice(box[0], box[1]), slice(box[2], box[3]))
    for name in ("start", "start_std"):  # shaped like the image: cut to the window too
        if options.get(name) is not None:
            options[name] = options[name][part]
    inner = solve(prior, Inpaint(operator.mask[part]), y[part], **options)
    if not isinstance(inner, Restoration):
        return _paste(y, inner, part)
    zeros = torch.zeros_like(y)  # the observed pixels are certain
    return Restoration(
        _paste(y, inner.mean, part),
        _paste(zeros, inner.std, part),
        _paste(y, inner.samples, part),
        None if inner.stated is None else _paste(zeros, inner.stated, part),
    )


def network_input_shape(
    operator: Operator,
    y: Tensor,
    *,
    tile: int = 32,
    batch: int = 256,
    n_samples: int = 1,
    window: bool = True,
) -> tuple[int, int, int, int]:
    """The largest input that :func:`solve_tiled` (same arguments) gives the network in one
    call, ``B x C x h x w``, or a smaller one, for memory checks
    (:func:`~diffvision.samplers.check_sample_fits`): images no larger than a tile go in whole,
    all N K draws at once; larger ones (for noise-free inpainting, the window around the hole)
    in tiles, ``batch`` at a time or all of them where fewer, of which each image has at least
    ceil(H / tile) ceil(W / tile) (any cover by tiles has)."""
    c, h, w = operator.pinv(y[:1]).shape[-3:]
    images = len(y) * n_samples
    if min(h, w) <= tile:
        return images, c, h, w
    box = _hole_window(operator, tile) if window else None
    if box is not None:
        h, w = box[1] - box[0], box[3] - box[2]
    tiles = images * math.ceil(h / tile) * math.ceil(w / tile)
    return min(batch, tiles), c, tile, tile


def _hole_window(operator: Operator, margin: int) -> tuple[int, int, int, int] | None:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the hole of a noise-free ``Inpaint`` (all images
    together) grown by ``margin``; None for other operators, no hole, or a window as large as
    the image."""
    if not isinstance(operator, Inpaint) or operator.sigma > 0:
        return None
    hole = (operator.mask == 0).any(0).any(0)  # H x W
    if not bool(hole.any()):
        return None
    rows = torch.nonzero(hole.any(1)).flatten()
    cols = torch.nonzero(hole.any(0)).flatten()
    h, w = hole.shape
    box = (
        max(int(rows[0]) - margin, 0),
        min(int(rows[-1]) + 1 + margin, h),
        max(int(cols[0]) - margin, 0),
        min(int(cols[-1]) + 1 + margin, w),
    )
    return None if box == (0, h, 0, w) else box


def _paste(outside: Tensor, inside: Tensor, part) -> Tensor:
    """``outside`` (broadcast to ``inside``'s leading dimensions) with ``inside`` at ``part``."""
    out = outside.expand(*inside.shape[:-2], *outside.shape[-2:]).clone()
    out[part] = inside
    return out
