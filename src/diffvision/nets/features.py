"""Small domain feature networks for evaluation: a CNN classifier, or an autoencoder when the data
has no labels. Their penultimate activations are the features of Fréchet distance, KID and
precision/recall on data unlike ImageNet (digits, MNIST, shapes, your own images)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class FeatureNetConfig:
    """``channels`` x ``size`` x ``size`` inputs in [-1, 1]; ``classes`` > 0 gives a classifier
    head, 0 an autoencoder (decoder from the feature vector). ``width`` is the first layer's
    channel count (doubled twice); ``features`` the feature dimension."""

    channels: int = 1
    size: int = 8
    classes: int = 10
    width: int = 32
    features: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def _down(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.SiLU()
    )


class FeatureNet(nn.Module):
    """Three 3x3 conv stages (stride 1, 2, 2) + global average pool + linear to ``features``.

    ``net(images)`` returns ``N x features`` (float32); ``net.logits(images)`` the class logits;
    ``net.reconstruct(images)`` the autoencoder's output in [-1, 1] (same shape as the input).
    """

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        c, w = config, config.width
        self.config = config
        self.encoder = nn.Sequential(
            _down(c.channels, w, 1), _down(w, 2 * w, 2), _down(2 * w, 4 * w, 2)
        )
        self.project = nn.Linear(4 * w, c.features)
        if c.classes > 0:
            self.head = nn.Linear(c.features, c.classes)
        else:
            self.low = (c.size + 3) // 4
            self.expand = nn.Linear(c.features, 4 * w * self.low * self.low)
            self.decoder = nn.Sequential(
                nn.Upsample(scale_factor=2),
                _down(4 * w, 2 * w, 1),
                nn.Upsample(scale_factor=2),
                _down(2 * w, w, 1),
                nn.Conv2d(w, c.channels, 3, padding=1),
            )

    def forward(self, images: Tensor) -> Tensor:
        h = self.encoder(images.float()).mean(dim=(2, 3))
        return self.project(h)

    def logits(self, images: Tensor) -> Tensor:
        if self.config.classes == 0:
            raise ValueError("this feature network is an autoencoder; it has no classifier")
        return self.head(F.silu(self(images)))

    def reconstruct(self, images: Tensor) -> Tensor:
        if self.config.classes > 0:
            raise ValueError("this feature network is a classifier; it has no decoder")
        z = self.expand(self(images)).view(len(images), -1, self.low, self.low)
        out = self.decoder(z)[..., : self.config.size, : self.config.size]
        return torch.tanh(out)
