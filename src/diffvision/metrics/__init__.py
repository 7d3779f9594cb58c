"""Evaluation metrics: distribution distances on features, Inception-v3 features from a local
file, PSNR / SSIM on images, calibration of restoration uncertainty; model evaluation
(:mod:`.evaluate`)."""

from .calibration import uncertainty_calibration
from .distribution import (
    frechet_distance,
    frechet_from_moments,
    kernel_distance,
    precision_recall,
    random_patches,
    sliced_wasserstein,
)
from .image import psnr, ssim
from .inception import InceptionV3, load_inception

__all__ = [
    "InceptionV3",
    "frechet_distance",
    "frechet_from_moments",
    "kernel_distance",
    "load_inception",
    "precision_recall",
    "psnr",
    "random_patches",
    "sliced_wasserstein",
    "ssim",
    "uncertainty_calibration",
]
