"""Image restoration with a diffusion prior: measurement operators, solvers and tiling.

``diffvision.restore.solve(denoiser, operator, y, solver=..., steps=...)`` restores images
``N x C x H x W`` in [-1, 1] from measurements ``y = A(x) + noise`` with any unconditional model.
"""

from .noise_level import estimate_sigma
from .operators import (
    Colorize,
    Deblur,
    Denoise,
    Inpaint,
    Operator,
    SuperResolution,
    box_mask,
    gaussian_kernel,
    kernel_offset,
    motion_kernel,
    random_mask,
    stroke_mask,
)
from .solvers import METHODS, SOLVERS, Restoration, solve

__all__ = [
    "METHODS",
    "SOLVERS",
    "Colorize",
    "Deblur",
    "Denoise",
    "Inpaint",
    "Operator",
    "Restoration",
    "SuperResolution",
    "box_mask",
    "estimate_sigma",
    "gaussian_kernel",
    "kernel_offset",
    "motion_kernel",
    "random_mask",
    "solve",
    "stroke_mask",
]
