"""Measurement operators ``y = A(x) + sigma_y * noise`` on images ``N x C x H x W`` in [-1, 1].

Every operator here is linear and gives ``forward`` (A), ``transpose`` (A^T) and ``pinv`` (the
Moore-Penrose pseudo-inverse A^+, in closed form, or for bicubic downsampling by the small
matrices of its two axes; no SVD). ``sigma`` is the measurement noise standard deviation in
the model's units (images in [-1, 1]: sigma 25 on the 0-255 scale is 25 / 127.5).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..process import check_int, check_nonnegative, check_positive, is_int, is_number


class Operator:
    """A linear measurement operator with Gaussian noise ``sigma`` (model units)."""

    name = "operator"

    def __init__(self, sigma: float = 0.0):
        check_nonnegative(sigma=sigma)
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def transpose(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``A(x) + sigma * noise``: a simulated measurement of clean images ``x``."""
        y = self.forward(x)
        if self.sigma > 0:
            noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu")
            y = y + self.sigma * noise.to(y.device)
        return y

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """``x + A^+ (y - A x)``: replace the part of ``x`` that A sees by what y says (the
        range/null-space decomposition of DDNM, Wang et al. 2023, Eq. 7)."""
        return x + self.pinv(y - self.forward(x))

    #: The common singular value of A when all are equal (used by :meth:`pinv_capped`).
    singular = 1.0

    def pinv_capped(self, r: Tensor, cap: Tensor) -> Tensor:
        """``A^+ r`` with each singular value's gain ``1 / s`` capped at ``cap`` (``N`` values,
        one per sample): the noise-aware pseudo-inverse of DDNM+ (Wang et al. 2023, Eq. 17).
        This default is exact for operators whose singular values all equal ``singular``."""
        scale = (cap * self.singular).clamp(max=1).view(-1, *[1] * (r.ndim - 1))
        return scale * self.pinv(r)

    def spectral(self, v: Tensor, fn) -> Tensor:
        """``V diag(fn(s)) V^T v``: scale each right-singular direction of A (image space) by a
        function ``fn`` of its singular value ``s`` (a float64 tensor; 0 in A's null space).
        This default is exact for operators whose singular values all equal ``singular``:
        ``fn(0) (v - A^+ A v) + fn(singular) A^+ A v``."""
        on_range = self.pinv(self.forward(v))
        null, rng = (float(fn(torch.tensor(s, dtype=torch.float64))) for s in (0.0, self.singular))
        return null * (v - on_range) + rng * on_range

    def noise_left(self, z: Tensor, cap: float) -> Tensor:
        """The share of a sampler step's noise ``z`` that DDNM+ still injects once y's noise,
        passed through :meth:`pinv_capped` at ``cap``, has taken its part (Wang et al. 2023,
        Eq. 19). ``cap`` is the gain at which y's noise alone fills the step's std: along each
        singular direction the gain ``g = min(1 / s, cap)`` passes a fraction ``g / cap`` of
        it, so ``z`` is scaled there by ``sqrt(1 - (g / cap)^2)``; A's null space keeps all of
        ``z``. One ``cap > 0`` for the batch. Through :meth:`spectral`."""

        def keep(sv):
            gain = torch.where(sv > 0, torch.clamp(1 / sv.clamp(min=1e-300), max=cap), 0.0)
            return torch.sqrt((1 - (gain / cap) ** 2).clamp(min=0))

        return self.spectral(z, keep)

    def repeat(self, k: int) -> Operator:
        """The operator for a batch repeated ``k`` times (``torch.cat([y] * k)``)."""
        return self


class Denoise(Operator):
    """``A = I``: y is the image plus Gaussian noise of standard deviation ``sigma``."""

    name = "denoise"

    def forward(self, x):
        return x

    def transpose(self, y):
        return y

    def pinv(self, y):
        return y


class Inpaint(Operator):
    """Keep the observed pixels: ``A x = mask * x`` (y keeps the image's shape, 0 in the hole).

    ``mask``: ``H x W`` or ``N x 1 x H x W``, 1 where the pixel is observed, 0 in the hole.
    A is an orthogonal projection, so ``A^T = A^+ = A``.
    """

    name = "inpaint"

    def __init__(self, mask: Tensor, sigma: float = 0.0):
        super().__init__(sigma)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim == 2:
            mask = mask[None, None]
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError("mask must be H x W or N x 1 x H x W")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (hole) and 1 (observed)")
        self.mask = mask

    def forward(self, x):
        return x * self.mask.to(x)

    transpose = forward
    pinv = forward

    def repeat(self, k):
        return Inpaint(
            self.mask.repeat(k, 1, 1, 1) if len(self.mask) > 1 else self.mask, self.sigma
        )


@functools.lru_cache(maxsize=16)
def bicubic_matrices(n: int, factor: int) -> tuple[Tensor, Tensor]:
    """Antialiased bicubic downsampling of one axis of length ``n`` by ``factor`` as a float64
    ``n/factor x n`` matrix ``M``, and its Moore-Penrose pseudo-inverse (``n x n/factor``;
    cached, for the last 16 sizes).
    ``torch.nn.functional.interpolate`` resamples the two axes one after the other, so an
    image X becomes ``M_h X M_w^T``; ``M`` is read off by resampling the rows of the ``n x n``
    identity image (its columns kept: at scale 1 the kernel leaves them as they are), 1024
    columns at a time (8 MiB each per 1,000 px of ``n``)."""
    blocks = []
    for first in range(0, n, 1024):
        eye = torch.zeros(n, min(1024, n - first), dtype=torch.float64)  # columns of I_n
        eye[first : first + eye.shape[1]].fill_diagonal_(1)
        small = F.interpolate(
            eye[None, None], size=(n // factor, eye.shape[1]), mode="bicubic",
            align_corners=False, antialias=True,
        )  # fmt: skip
        blocks.append(small[0, 0])
    matrix = torch.cat(blocks, dim=1)
    # full row rank, so A^+ = A^T (A A^T)^-1, by a solve (no SVD)
    return matrix, torch.linalg.solve(matrix @ matrix.T, matrix).T


class SuperResolution(Operator):
    """Downsampling by an integer ``factor``: ``method="pool"`` (average of each factor x factor
    block; ``A^+`` is nearest-neighbour upsampling) or ``"bicubic"`` (antialiased bicubic as in
    PIL / ``torch.nn.functional.interpolate``; ``A^T`` and ``A^+`` exact, by the matrices of its
    two axes, :func:`bicubic_matrices`). y is ``N x C x H/factor x W/factor``."""

    name = "superres"

    def __init__(self, factor: int, method: str = "bicubic", sigma: float = 0.0):
        super().__init__(sigma)
        check_int("factor", factor, 1)
        if method not in ("pool", "bicubic"):
            raise ValueError("method must be pool or bicubic")
        self.factor, self.method = factor, method
        # Average pooling: A A^T = I / factor^2. Bicubic: about the same (an approximation).
        self.singular = 1.0 / self.factor

    def forward(self, x):
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image size must be a multiple of the factor {self.factor}")
        if self.method == "pool":
            return F.avg_pool2d(x, self.factor)
        size = (x.shape[-2] // self.factor, x.shape[-1] // self.factor)
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)

    def transpose(self, y):
        if self.method == "pool":
            return F.interpolate(y, scale_factor=self.factor, mode="nearest") / self.factor**2
        return self._axes(y, lambda m: m[0].T)

    def pinv(self, y):
        if self.method == "pool":  # A A^T = I / factor^2
            return F.interpolate(y, scale_factor=self.factor, mode="nearest")
        return self._axes(y, lambda m: m[1])

    def _axes(self, y: Tensor, pick) -> Tensor:
        """``P_h y P_w^T`` with ``P = pick(bicubic_matrices(n, factor))`` for each axis of the
        full-size image, computed in float64."""
        rows, cols = (pick(bicubic_matrices(n * self.factor, self.factor)) for n in y.shape[-2:])
        out = rows.to(y.device) @ y.double() @ cols.to(y.device).T
        return out.to(y.dtype)


class Deblur(Operator):
    """Circular convolution with a ``kernel`` (``k x k``, normalised to sum 1), by FFT.

    ``A^T`` convolves with the flipped kernel (conjugate spectrum); ``A^+`` divides by the
    spectrum where ``|K| > rcond * max|K|`` and zeroes the rest (the truncated pseudo-inverse).
    Build kernels with :func:`gaussian_kernel` or :func:`motion_kernel`.
    """

    name = "deblur"

    def __init__(self, kernel: Tensor, sigma: float = 0.0, rcond: float = 1e-3):
        super().__init__(sigma)
        kernel = checked_kernel(kernel)
        if not (is_number(rcond) and 0 <= rcond < 1):  # NaN kept no frequency: A^+ was 0
            raise ValueError(f"rcond must be a number in [0, 1), not {rcond!r}")
        self.kernel = kernel / kernel.sum()
        self.rcond = rcond

    def _spectrum(self, shape, device) -> Tensor:
        h, w = shape[-2:]
        k = self.kernel.shape[0]
        if k > min(h, w):
            raise ValueError(f"kernel ({k} px) larger than the image ({h} x {w})")
        pad = torch.zeros(h, w, dtype=torch.float64)
        pad[:k, :k] = self.kernel
        pad = torch.roll(pad, shifts=(-(k // 2), -(k // 2)), dims=(0, 1))  # centre at (0, 0)
        return torch.fft.rfft2(pad).to(device)

    def _apply(self, x: Tensor, fn) -> Tensor:
        spec = fn(self._spectrum(x.shape, x.device))
        out = torch.fft.irfft2(torch.fft.rfft2(x.double()) * spec, s=x.shape[-2:])
        return out.to(x.dtype)

    def forward(self, x):
        return self._apply(x, lambda k: k)

    def transpose(self, y):
        return self._apply(y, torch.conj)

    def _gain(self, k: Tensor, cap: Tensor | None) -> Tensor:
        """Per-frequency inverse gain ``1 / K`` (truncated below ``rcond``), magnitudes capped."""
        keep = k.abs() > self.rcond * k.abs().max()
        safe = torch.where(keep, k, torch.ones_like(k))
        gain = torch.where(keep, 1 / safe, 0)
        if cap is not None:
            limit = cap.double().view(-1, 1, 1, 1).to(k.device)
            gain = gain * torch.clamp(limit * safe.abs(), max=1)
        return gain

    def pinv(self, y):
        return self._apply(y, lambda k: self._gain(k, None))

    def pinv_capped(self, r, cap):
        return self._apply(r, lambda k: self._gain(k, cap))

    def spectral(self, v, fn):
        def multiplier(k):  # per frequency: fn(|K|), |K| counted as 0 where A^+ truncates it
            kept = k.abs() > self.rcond * k.abs().max()
            return fn(torch.where(kept, k.abs(), torch.zeros_like(k.abs())))

        return self._apply(v, multiplier)

    def regularized_inverse(self, y: Tensor, lam: float) -> Tensor:
        """Tikhonov's ``(A^T A + lam I)^-1 A^T y``, exact per frequency: ``conj(K) Y / (|K|^2 +
        lam)``. With ``lam = sigma_y^2 / sigma_x^2`` it is the Wiener filter for a signal of
        flat spectrum and variance ``sigma_x^2`` per pixel."""
        check_positive(lam=lam)  # NaN passed a check of lam <= 0: a NaN result
        return self._apply(y, lambda k: k.conj() / (k.abs() ** 2 + lam))


class Colorize(Operator):
    """RGB to grey: ``A x`` is the mean of the three channels (``N x 1 x H x W``).
    ``A A^T = I / 3``, so ``A^+ y`` repeats y in all three channels."""

    name = "colorize"
    singular = 1 / math.sqrt(3)

    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("colorize needs RGB images (3 channels)")
        return x.mean(1, keepdim=True)

    def transpose(self, y):
        return y.expand(-1, 3, -1, -1) / 3

    def pinv(self, y):
        return y.expand(-1, 3, -1, -1).clone()


# --------------------------------------------------------------------------- masks and kernels
def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> Tensor:
    """``H x W`` mask with a rectangular hole ``(x, y, w, h)`` in pixels (0 inside)."""
    if len(box) != 4 or not all(is_int(v) for v in box):  # 1.5 was a TypeError from slicing,
        raise ValueError(f"box {box} must be x, y, w, h in whole pixels")  # 3 values Python's
    x, y, w, h = box  # "not enough values to unpack"
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"box {box} does not fit a {width} x {height} image")
    mask = torch.ones(height, width)
    mask[y : y + h, x : x + w] = 0
    return mask


def random_mask(height: int, width: int, missing: float, generator=None) -> Tensor:
    """``H x W`` mask with a fraction ``missing`` of the pixels dropped independently."""
    if not 0 <= missing < 1:
        raise ValueError("the missing fraction must be in [0, 1)")
    return (torch.rand(height, width, generator=generator) >= missing).float()


def stroke_mask(height: int, width: int, strokes: int = 4, thickness: int = 3, generator=None):
    """``H x W`` mask with random thick line strokes as holes (scribbles, scratches). Drawing
    stops once no pixel is left observed: further strokes would change nothing (so ``strokes``
    of a billion ends within seconds rather than days)."""
    check_int("strokes", strokes, 0)
    check_positive(thickness=thickness)
    mask = torch.ones(height, width)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for _ in range(strokes):
        if not bool(mask.any()):
            break
        x0, x1 = (torch.rand(2, generator=generator) * width).tolist()
        y0, y1 = (torch.rand(2, generator=generator) * height).tolist()
        dx, dy = x1 - x0, y1 - y0
        length2 = max(dx * dx + dy * dy, 1e-9)
        t = (((xx - x0) * dx + (yy - y0) * dy) / length2).clamp(0, 1)
        dist = ((xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2).sqrt()
        mask[dist <= thickness / 2] = 0
    return mask


def check_odd_size(size: int) -> None:
    """Raise ValueError unless a kernel's ``size`` is a positive odd integer."""
    if not (is_int(size) and size >= 1 and size % 2):
        raise ValueError(f"the kernel size must be a positive odd integer, not {size!r}")


def checked_kernel(kernel: Tensor) -> Tensor:
    """``kernel`` as a float64 tensor, checked to be what :class:`Deblur` and
    :func:`kernel_offset` take: square ``k x k`` with k odd, finite, of positive sum; raises
    ``ValueError`` naming what is wrong otherwise."""
    kernel = torch.as_tensor(kernel, dtype=torch.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(
            f"kernel must be a square k x k tensor with odd k, not {tuple(kernel.shape)}"
        )
    if not torch.isfinite(kernel).all():  # NaN passed a sum's check: a NaN result
        raise ValueError("kernel holds NaN or infinite values")
    mass = float(kernel.sum())
    if mass <= 0:
        raise ValueError(f"kernel must have a positive sum, not {mass:g}")
    return kernel


def kernel_offset(kernel: Tensor) -> tuple[float, float]:
    """The centre of mass of a ``k x k`` blur kernel (k odd, of positive sum) from its middle
    pixel, as ``(across, down)`` in pixels. ``Deblur`` takes the middle pixel as the point
    source's position: a PSF cropped off-centre by ``d`` (its centre of mass off by ``d`` where
    the true PSF's is at its origin) deblurs an image into one shifted by ``-d``."""
    kernel = checked_kernel(kernel)
    mass = float(kernel.sum())
    r = torch.arange(kernel.shape[0], dtype=torch.float64) - kernel.shape[0] // 2
    return float((kernel.sum(0) * r).sum()) / mass, float((kernel.sum(1) * r).sum()) / mass


def gaussian_kernel(size: int, std: float) -> Tensor:
    """``size x size`` Gaussian blur kernel (odd size) with standard deviation ``std`` pixels."""
    check_odd_size(size)
    check_positive(std=std)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * std**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernel(size: int, angle: float = 0.0) -> Tensor:
    """``size x size`` linear motion blur along ``angle`` degrees (anti-aliased line)."""
    check_odd_size(size)
    if not math.isfinite(angle):
        raise ValueError("the angle must be a finite number")
    k = torch.zeros(size, size, dtype=torch.float64)
    c = size // 2
    a = math.radians(angle)
    for t in torch.linspace(-c, c, 8 * size).tolist():
        x, y = c + t * math.cos(a), c - t * math.sin(a)
        x0, y0 = math.floor(x), math.floor(y)
        for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                if 0 <= xi < size and 0 <= yi < size:
                    k[yi, xi] += wx * wy
    return k / k.sum()
