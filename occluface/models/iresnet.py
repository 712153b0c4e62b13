"""IResNet-18/34/50/100: the insightface ArcFace backbones (Duta et al. 2020 improved residual blocks).

Layout (Gao et al., Fig. 4): a 3x3/64 stem at full 112x112 resolution, four stages of IBasic blocks
(BN-conv3x3-BN-PReLU-conv3x3(stride)-BN, no activation after the addition) with 64/128/256/512 channels, each
stage halving the map (112 -> 7), then BN -> Dropout -> flatten -> FC -> BN1d to the embedding. Because the
head flattens the final map, `input_size` fixes the FC's input size; other sizes are rejected with a clear
message. `IResNetBase` is reused by ResSaNet, which swaps the block type of some stages.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from occluface.errors import OccluFaceError
from occluface.models.registry import check_batch, register_depths

__all__ = ["IBasicBlock", "IResNetBase", "IResNet", "STAGES", "downsampled", "conv3x3"]

STAGES: dict[int, list[int]] = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}
WIDTHS = (64, 128, 256, 512)

# make_block(stage_index, inplanes, planes, stride, downsample, out_hw) -> nn.Module
BlockMaker = Callable[[int, int, int, int, "nn.Module | None", tuple[int, int]], nn.Module]


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def downsampled(hw: tuple[int, int]) -> tuple[int, int]:
    """Map size after a stride-2 3x3/pad-1 conv (= ceil(n / 2)), so odd input sizes still line up."""
    return ((hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1)


class IBasicBlock(nn.Module):
    """BN-conv3x3-BN-PReLU-conv3x3(stride)-BN + shortcut: pre-activation style, stride on the second conv."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


def _ibasic(stage: int, inplanes: int, planes: int, stride: int, downsample, out_hw) -> nn.Module:
    return IBasicBlock(inplanes, planes, stride, downsample)


class IResNetBase(nn.Module):
    """Stem + 4 stages built by `make_block` + BN/Dropout/FC/BN1d head (the insightface recipe)."""

    def __init__(
        self,
        layers: Sequence[int],
        make_block: BlockMaker = _ibasic,
        *,
        embedding_size: int = 512,
        input_size: tuple[int, int] = (112, 112),
        dropout: float = 0.0,
        zero_init_residual: bool = False,
        name: str = "iresnet",
    ):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise OccluFaceError(f"{name}: layers must be 4 positive block counts, got {list(layers)}")
        if not 0.0 <= float(dropout) < 1.0:
            raise OccluFaceError(f"{name}: dropout must be in [0, 1), got {dropout}")
        if min(input_size) < 16:
            raise OccluFaceError(f"{name}: input_size must be at least 16x16, got {input_size}")
        self.name = name
        self.embedding_size = embedding_size
        self.input_size = tuple(input_size)

        self.conv1 = conv3x3(3, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.prelu = nn.PReLU(WIDTHS[0])
        inplanes, hw = WIDTHS[0], self.input_size
        stages = []
        for i, (planes, blocks) in enumerate(zip(WIDTHS, layers)):
            hw = downsampled(hw)  # every stage halves the map in its first block
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes)
            )
            stage = [make_block(i, inplanes, planes, 2, downsample, hw)]
            stage += [make_block(i, planes, planes, 1, None, hw) for _ in range(1, int(blocks))]
            stages.append(nn.Sequential(*stage))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_hw = hw
        self.bn2 = nn.BatchNorm2d(inplanes)
        self.dropout = nn.Dropout(p=float(dropout))
        self.fc = nn.Linear(inplanes * hw[0] * hw[1], embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init keeps activations O(1) even in eval mode before any training (insightface's
                # N(0, 0.1) overflows to inf/NaN in the deeper ResSaNet when BN still has unit stats).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Fixed unit scale on the embedding BN (as insightface): normalises without a learnable stretch.
        self.features.weight.requires_grad_(False)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None)  # last BN of every residual branch (IBasic and friends)
                if isinstance(last, nn.BatchNorm2d) and hasattr(m, "downsample"):
                    nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x, self.name, self.input_size)
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


class IResNet(IResNetBase):
    """IResNet with IBasic blocks in every stage."""

    def __init__(self, layers: Sequence[int], **kwargs):
        super().__init__(layers, _ibasic, **kwargs)


register_depths(
    "iresnet", STAGES, IResNet, default_input_size=112, options=dict(dropout=0.0, zero_init_residual=False),
    describe=lambda d: f"IResNet-{d} (insightface ArcFace backbone), IBasic stages {STAGES[d]}",
)
