"""The original ResNet-18/34/50/101/152 (He et al., 2016) as embedding backbones.

Built on torchvision's implementation (same module names, so its state dicts load) with two additions:
`variant` chooses where a down-sampling bottleneck strides -- "v1" puts the stride in the first 1x1 conv as
in the paper (ResNet-50 = 3.8 G multiply-adds, Table 1), "v1.5" in the 3x3 conv as torchvision does
(~4.1 G, slightly more accurate) -- and a Dropout before the final Linear. With embedding_size=1000 at 224x224
the network is exactly the classic ImageNet classifier; for faces the Linear output is the embedding.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from occluface.errors import OccluFaceError
from occluface.models.registry import check_batch, register_depths

__all__ = ["ResNet", "VARIANTS", "LAYERS"]

VARIANTS = ("v1", "v1.5")
LAYERS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (tv_resnet.BasicBlock, [2, 2, 2, 2]),
    34: (tv_resnet.BasicBlock, [3, 4, 6, 3]),
    50: (tv_resnet.Bottleneck, [3, 4, 6, 3]),
    101: (tv_resnet.Bottleneck, [3, 4, 23, 3]),
    152: (tv_resnet.Bottleneck, [3, 8, 36, 3]),
}


class ResNet(tv_resnet.ResNet):
    """torchvision ResNet + stride variant + Dropout head; maps B x 3 x H x W to B x embedding_size.

    Global average pooling makes any input size >= 32 work; `input_size` is recorded as the size it expects.
    For BasicBlock depths (18/34) v1 and v1.5 are identical: there is no 1x1 conv to move the stride to.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: list[int],
        *,
        embedding_size: int = 512,
        input_size: tuple[int, int] = (224, 224),
        dropout: float = 0.0,
        variant: str = "v1",
        zero_init_residual: bool = False,
        width: int = 64,
        name: str = "resnet",
    ):
        if variant not in VARIANTS:
            raise OccluFaceError(f"{name}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise OccluFaceError(f"{name}: dropout must be in [0, 1), got {dropout}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 4:
            raise OccluFaceError(f"{name}: width must be an integer of at least 4 channels, got {width!r}")
        super().__init__(block, layers, num_classes=embedding_size, zero_init_residual=zero_init_residual)
        self.width = width
        if width != 64:
            _narrow(self, block, layers, width, embedding_size, zero_init_residual)
        self.name = name
        self.variant = variant
        self.embedding_size = embedding_size
        self.input_size = tuple(input_size)
        self.dropout = nn.Dropout(p=float(dropout))
        if variant == "v1":
            move_stride_to_first_conv(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x, self.name)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def _narrow(model: tv_resnet.ResNet, block, layers, width, embedding_size, zero_init_residual) -> None:
    """Rebuild the stem, stages and head with `width` base channels instead of 64 (stages width x 1/2/4/8),
    initialised as torchvision does: a cheap ResNet for small tasks (width 32 = about 1/4 of the FLOPs)."""
    model.inplanes, model.dilation = width, 1
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, layers[0])
    model.layer2 = model._make_layer(block, width * 2, layers[1], stride=2)
    model.layer3 = model._make_layer(block, width * 4, layers[2], stride=2)
    model.layer4 = model._make_layer(block, width * 8, layers[3], stride=2)
    model.fc = nn.Linear(width * 8 * block.expansion, embedding_size)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            last = getattr(m, "bn3", None) if isinstance(m, tv_resnet.Bottleneck) else getattr(m, "bn2", None)
            if isinstance(m, (tv_resnet.Bottleneck, tv_resnet.BasicBlock)) and last is not None:
                nn.init.constant_(last.weight, 0)


def move_stride_to_first_conv(model: nn.Module) -> int:
    """Turn torchvision (v1.5) bottlenecks into the paper's v1: stride 2 on conv1 (1x1), stride 1 on conv2.

    Returns how many blocks were changed. Works on any module tree holding torchvision-style bottlenecks
    (conv1 1x1 / conv2 3x3 / conv3 1x1), e.g. the CBAM variant.
    """
    changed = 0
    for m in model.modules():
        conv1, conv2 = getattr(m, "conv1", None), getattr(m, "conv2", None)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and hasattr(m, "conv3")):
            continue
        if conv1.kernel_size == (1, 1) and conv2.stride != (1, 1):
            conv1.stride, conv2.stride = conv2.stride, (1, 1)
            changed += 1
    return changed


def _resnet(stage: tuple[type[nn.Module], list[int]], **kwargs) -> ResNet:
    block, layers = stage
    return ResNet(block, layers, **kwargs)


register_depths(
    "resnet", LAYERS, _resnet, default_input_size=224,
    options=dict(dropout=0.0, variant="v1", zero_init_residual=False, width=64),
    describe=lambda d: f"Original ResNet-{d} (He et al. 2016), GAP -> Dropout -> FC embedding",
)
