"""Evaluation metrics: distribution distances on features, and PSNR / SSIM on images."""

from .distribution import (
    frechet_distance,
    frechet_from_moments,
    kernel_distance,
    precision_recall,
    random_patches,
    sliced_wasserstein,
)
from .image import psnr, ssim

__all__ = [
    "frechet_distance",
    "frechet_from_moments",
    "kernel_distance",
    "precision_recall",
    "psnr",
    "random_patches",
    "sliced_wasserstein",
    "ssim",
]
