"""Classical restorations to warm-start a diffusion solver from (``solve(..., start=...)``): a
smooth fill of an inpainting hole, a bicubic upscaling, a Wiener deconvolution, the noisy image
itself."""

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
