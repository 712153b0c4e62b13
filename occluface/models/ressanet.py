"""ResSaNet-50/100 (Chang, Tsai & Lo, ICCV-W 2021): IResNet with SE/FReLU blocks and a self-attention stage.

Layout (Gao et al., Fig. 4), on the IResNet skeleton (3x3 stem, PReLU, 64/128/256/512 channels, BN-Dropout-
FC-BN head):
- stage 1: IBasic blocks;
- stages 2-3: SE-IBasic_F blocks -- IBasic whose PReLU is a FReLU (max(x, BN(depthwise3x3(x))), a per-pixel
  spatial condition) and whose residual branch ends in squeeze-and-excitation;
- stage 4: IBT blocks = an IBSA block (IBasic whose second 3x3 conv is BoTNet multi-head self-attention over
  the 7x7 map, 4 heads, 2-D relative position logits) followed by an MBConv block (1x1 expand -> depthwise
  3x3 -> 1x1 project, BN after each, PReLU, identity shortcut).
The papers leave some widths open; our choices are tuned to the published size/cost and land within 1 %
(ours 44.21 M / 6.33 G MACs vs 44.13 M / 6.29 G for -50; 66.43 M / 12.13 G vs 66.35 M / 12.11 G for -100):
SE reduction 4 (this alone reproduces the published -50 -> -100 parameter growth over IResNet), MBConv
expansion 3 (keeps stage 4 parameter-neutral against IBasic), and the first IBSA block strides with a 2x2
average pool in front of the attention, where IBasic strides its second conv.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from occluface.errors import OccluFaceError
from occluface.models.attention import FReLU, SEModule
from occluface.models.iresnet import IBasicBlock, IResNetBase, conv3x3
from occluface.models.registry import register_depths

__all__ = ["RelPosMHSA", "SEIBasicF", "IBSABlock", "MBConv", "IBTBlock", "ResSaNet", "STAGES"]

STAGES: dict[int, list[int]] = {18: [2, 2, 2, 2], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}


class RelPosMHSA(nn.Module):
    """BoTNet all-to-all multi-head self-attention on an H x W map with 2-D relative position logits.

    logits(i, j) = q_i . k_j + q_i . (r^h[row_j - row_i] + r^w[col_j - col_i]), scaled by 1/sqrt(d).
    The relative tables depend on the map size, which is why the backbone needs its `input_size` up front.
    """

    def __init__(self, channels: int, hw: tuple[int, int], heads: int = 4):
        super().__init__()
        if channels % heads:
            raise OccluFaceError(f"MHSA: {channels} channels do not split into {heads} heads")
        self.heads, self.hw = heads, tuple(hw)
        self.head_dim = channels // heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        h, w = self.hw
        std = self.head_dim**-0.5
        self.rel_h = nn.Parameter(torch.randn(2 * h - 1, self.head_dim) * std)
        self.rel_w = nn.Parameter(torch.randn(2 * w - 1, self.head_dim) * std)
        # idx[i, j] = j - i + (n - 1): where key j sits relative to query i, as a table row.
        self.register_buffer("idx_h", torch.arange(h)[None, :] - torch.arange(h)[:, None] + h - 1, persistent=False)
        self.register_buffer("idx_w", torch.arange(w)[None, :] - torch.arange(w)[:, None] + w - 1, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (h, w) != self.hw:
            raise OccluFaceError(f"MHSA built for a {self.hw} map, got {(h, w)}")
        n, d = self.heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, 3, n, d, h * w).transpose(-1, -2).unbind(1)  # each b, n, hw, d
        qg = q.reshape(b, n, h, w, d)
        rel_h = torch.einsum("bnhwd,hkd->bnhwk", qg, self.rel_h[self.idx_h])  # query row vs key row
        rel_w = torch.einsum("bnhwd,wld->bnhwl", qg, self.rel_w[self.idx_w])  # query col vs key col
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, n, h * w, h * w)
        scale = 1.0 / math.sqrt(d)
        attn = torch.softmax((q @ k.transpose(-1, -2) + bias) * scale, dim=-1)
        return (attn @ v).transpose(-1, -2).reshape(b, c, h, w)


class SEIBasicF(nn.Module):
    """SE-IBasic_F: BN-conv3x3-BN-FReLU-conv3x3(stride)-BN-SE + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 se_reduction: int = 4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.frelu = FReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.se = SEModule(planes, se_reduction, act=nn.PReLU)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.frelu(self.bn2(self.conv1(self.bn1(x))))))
        return self.se(out) + identity


class IBSABlock(nn.Module):
    """IBasic self-attention block: BN-conv3x3-BN-PReLU-[avgpool2x2]-MHSA-BN + shortcut (MHSA replaces conv2).

    IBasic strides in its second conv; with attention in that place the stride becomes a 2x2 average pool in
    front of it (BoTNet strides its attention with a pool too), so attention always sees the small map.
    """

    def __init__(self, inplanes: int, planes: int, hw: tuple[int, int], stride: int = 1,
                 downsample: nn.Module | None = None, heads: int = 4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        # ceil_mode matches the shortcut's ceil(n / 2) on odd maps.
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.mhsa = RelPosMHSA(planes, hw, heads)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.mhsa(self.pool(self.prelu(self.bn2(self.conv1(self.bn1(x)))))))
        return out + identity


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand -> depthwise 3x3 -> 1x1 project (BN each, PReLU) + identity."""

    def __init__(self, channels: int, expansion: int = 3):
        super().__init__()
        hidden = channels * int(expansion)
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden))
        self.depthwise = nn.Sequential(conv3x3(hidden, hidden, groups=hidden), nn.BatchNorm2d(hidden), nn.PReLU(hidden))
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.depthwise(self.expand(x)))


class IBTBlock(nn.Module):
    """IBasic Transformer: IBSA (local conv + global attention) followed by MBConv."""

    def __init__(self, inplanes: int, planes: int, hw: tuple[int, int], stride: int = 1,
                 downsample: nn.Module | None = None, heads: int = 4, expansion: int = 3):
        super().__init__()
        self.ibsa = IBSABlock(inplanes, planes, hw, stride, downsample, heads)
        self.mbconv = MBConv(planes, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mbconv(self.ibsa(x))


class ResSaNet(IResNetBase):
    """IBasic / SE-IBasic_F / SE-IBasic_F / IBT stages on the IResNet skeleton and head."""

    def __init__(self, layers, *, heads: int = 4, expansion: int = 3, se_reduction: int = 4, **kwargs):
        if heads < 1 or expansion < 1 or se_reduction < 1:
            raise OccluFaceError(f"ResSaNet: heads, expansion and se_reduction must be >= 1, got "
                                 f"{heads}, {expansion}, {se_reduction}")

        def make_block(stage, inplanes, planes, stride, downsample, hw):
            if stage == 0:
                return IBasicBlock(inplanes, planes, stride, downsample)
            if stage in (1, 2):
                return SEIBasicF(inplanes, planes, stride, downsample, se_reduction)
            return IBTBlock(inplanes, planes, hw, stride, downsample, heads, expansion)

        super().__init__(layers, make_block, **kwargs)


register_depths(
    "ressanet", STAGES, ResSaNet, default_input_size=112,
    options=dict(dropout=0.0, heads=4, expansion=3, se_reduction=4, zero_init_residual=False),
    describe=lambda d: f"ResSaNet-{d}: IResNet + SE-IBasic_F stages 2-3 + IBT (MHSA+MBConv) stage 4",
)
