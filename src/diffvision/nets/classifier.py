"""A noise-aware classifier ``p(c | x, sigma)`` for small images: the class posterior that
:class:`~diffvision.denoiser.ClassMixture` uses to mix a model's class-conditional branches into
an unconditional denoiser.

A plain MLP on the pixels (meant for images up to about 32x32; the digits demo uses 8x8), with
the input scaled to unit variance the way EDM scales the denoiser's input (Karras et al. 2022,
Table 1: ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``) and the noise level entering as random
Fourier features of ``log(sigma) / 4`` (EDM's ``c_noise``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass
class NoiseClassifierConfig:
    channels: int
    size: int
    num_classes: int
    hidden: int = 256
    depth: int = 3  # hidden layers
    fourier: int = 8  # Fourier frequencies of the noise level (2 features each)
    sigma_data: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


class NoiseClassifier(nn.Module):
    """``forward(x, sigma)``: ``x`` of shape ``N x C x H x W`` (noisy images, data in [-1, 1] plus
    noise of standard deviation ``sigma``) and ``sigma`` of shape ``(N,)`` -> ``N x K`` logits."""

    def __init__(self, config: NoiseClassifierConfig, generator: torch.Generator | None = None):
        super().__init__()
        if min(config.channels, config.size, config.num_classes, config.hidden, config.depth) < 1:
            raise ValueError(f"invalid classifier config {config}")
        self.config = config
        # Frequencies of the noise features: fixed at construction, saved with the weights.
        self.register_buffer("freqs", 2 * torch.randn(config.fourier, generator=generator))
        width = config.channels * config.size**2 + 2 * config.fourier
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        scaled = x.flatten(1) / (sigma[:, None] ** 2 + self.config.sigma_data**2).sqrt()
        angle = sigma.log()[:, None] / 4 * self.freqs
        return self.net(torch.cat([scaled, angle.sin(), angle.cos()], dim=1))
