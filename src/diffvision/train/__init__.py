"""Training: the loop, loss, EMA, checkpoints and multi-process set-up."""

from .loss import DEFAULT_WEIGHTING, denoising_loss
from .trainer import TrainConfig, Trainer, train

__all__ = ["DEFAULT_WEIGHTING", "TrainConfig", "Trainer", "denoising_loss", "train"]
