"""The critic: fully convolutional, no fully connected layer, ending in a 3x3 convolution to a 5x5x1
score map (the paper's design); the score of an image is the mean of its map.

144 -> 72 -> 36 -> 18 -> 9 (4x4 stride-2 convolutions) -> 5 (3x3 stride 2) -> 5x5x1 (3x3). The WGAN
family uses no normalisation (a gradient penalty is per-sample); ``batchnorm=True`` gives the DCGAN-style
critic of the comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from occluface.errors import OccluFaceError


class Critic(nn.Module):
    """B x 3 x 144 x 144 (0..1) -> B x 1 x 5 x 5 score map."""

    def __init__(self, width: int = 64, batchnorm: bool = False):
        super().__init__()
        if width < 1:
            raise OccluFaceError(f"critic width must be positive, got {width}")
        self.width, self.batchnorm = int(width), bool(batchnorm)
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1, bias=not (batchnorm and i > 0)))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(8 * width, 8 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(8 * width, 1, 3, stride=1, padding=1))  # the final 3x3 convolution -> 5x5x1
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise OccluFaceError(f"critic input must be B x 3 x H x W RGB, got {tuple(x.shape)}")
        return self.net(x * 2 - 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """One number per image: the mean of its 5x5 map."""
        return self(x).mean(dim=(1, 2, 3))

    def config(self) -> dict:
        return {"width": self.width, "batchnorm": self.batchnorm}
