"""diffvision: diffusion models for imaging and vision.

The central object is the denoiser ``D(x, sigma, cond) -> x0 estimate`` in sigma space
(``x = x0 + sigma * noise``); see ``docs/architecture.md``.
"""

from . import analytic, process, samplers
from .denoiser import ClassMixture, Denoiser, guided
from .io.model_folder import load, load_classifier
from .process import add_noise, get_schedule, loss_weight
from .samplers import likelihood, sample, sigma_steps

__version__ = "0.1.0"

__all__ = [
    "ClassMixture",
    "Denoiser",
    "__version__",
    "add_noise",
    "analytic",
    "get_schedule",
    "guided",
    "likelihood",
    "load",
    "load_classifier",
    "loss_weight",
    "process",
    "sample",
    "samplers",
    "sigma_steps",
]
