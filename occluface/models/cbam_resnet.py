"""The coal-mine "improved ResNet" (paper 000): bottleneck residual blocks + BN + CBAM in every block + Dropout.

What the paper specifies and how it maps here:
- "two 3x3 convs replaced by 1x1-3x3-1x1": every block is a bottleneck, including `cbam_resnet18`, which
  therefore has [2, 2, 2, 2] *bottleneck* blocks (an 18-layer layout made of bottlenecks, unlike resnet18);
  `cbam_resnet50` has the usual [3, 4, 6, 3].
- "Batch Norm at each network layer": BN after every convolution (torchvision's bottleneck does this).
- CBAM "at each layer ... in every stage": a CBAM module (channel attention, reduction 16, then 7x7 spatial
  attention) on the residual branch of every block, before the addition, as in the CBAM paper.
- Dropout (p=0.5, "randomly discarding half of the hidden neurons") before the final fully connected layer.
The paper is silent on the bottleneck stride; we use the same `variant` switch as `resnet*` (default "v1").
"""

from __future__ import annotations

import torch
from torchvision.models import resnet as tv_resnet

from occluface.errors import OccluFaceError
from occluface.models.attention import CBAM
from occluface.models.registry import register_depths
from occluface.models.resnet import ResNet

__all__ = ["CBAMBottleneck", "CBAMResNet", "cbam_block", "STAGES"]

STAGES: dict[int, list[int]] = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}


class CBAMBottleneck(tv_resnet.Bottleneck):
    """torchvision bottleneck (conv-BN everywhere) with CBAM re-weighting its output before the shortcut."""

    reduction: int = 16
    kernel_size: int = 7

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cbam = CBAM(self.conv3.out_channels, reduction=self.reduction, kernel_size=self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.cbam(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def cbam_block(reduction: int = 16, kernel_size: int = 7) -> type[CBAMBottleneck]:
    """A CBAMBottleneck class with the given CBAM settings (torchvision builds blocks from a class)."""
    if reduction == CBAMBottleneck.reduction and kernel_size == CBAMBottleneck.kernel_size:
        return CBAMBottleneck
    return type(f"CBAMBottleneck_r{reduction}_k{kernel_size}", (CBAMBottleneck,),
                {"reduction": int(reduction), "kernel_size": int(kernel_size)})


class CBAMResNet(ResNet):
    """ResNet of CBAM bottlenecks with a Dropout-before-FC embedding head (default p=0.5)."""

    def __init__(
        self,
        layers: list[int],
        *,
        reduction: int = 16,
        kernel_size: int = 7,
        dropout: float = 0.5,
        **kwargs,
    ):
        if reduction < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise OccluFaceError(f"CBAM needs reduction >= 1 and an odd kernel_size, got {reduction}, {kernel_size}")
        super().__init__(cbam_block(reduction, kernel_size), layers, dropout=dropout, **kwargs)


register_depths(
    "cbam_resnet", STAGES, CBAMResNet, default_input_size=224,
    options=dict(dropout=0.5, reduction=16, kernel_size=7, variant="v1", zero_init_residual=False),
    describe=lambda d: f"Coal-mine improved ResNet: {STAGES[d]} CBAM bottlenecks, BN, Dropout(0.5) before FC",
)
