"""Attention modules shared by the backbones: CBAM (coal-mine improved ResNet) and SE (ResSaNet).

CBAM (Woo et al., ECCV 2018) re-weights channels, then positions, so occluded or dust-covered regions can be
down-weighted and the visible facial contours emphasised; SE (Hu et al.) is the channel half alone.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM", "SEModule", "FReLU"]


def _hidden(channels: int, reduction: int) -> int:
    if reduction < 1:
        raise ValueError(f"reduction must be >= 1, got {reduction}")
    return max(1, channels // reduction)


class ChannelAttention(nn.Module):
    """CBAM channel gate: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), one MLP shared by both descriptors."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _hidden(channels, reduction)
        # 1x1 convs == a shared two-layer MLP applied to the C x 1 x 1 descriptors.
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial gate: sigmoid(conv7x7([mean_c(x); max_c(x)])), Eq. (7) of the coal-mine paper."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Channel attention followed by spatial attention (the order the CBAM paper found best)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class SEModule(nn.Module):
    """Squeeze (global average pool) and excitation (1x1 conv MLP + sigmoid) channel re-weighting."""

    def __init__(self, channels: int, reduction: int = 16, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.mean(x, dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(w))))


class FReLU(nn.Module):
    """Funnel/flexible ReLU (Ma et al., 2020): max(x, BN(depthwise3x3(x))) -- a spatial condition per pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, self.bn(self.conv(x)))
