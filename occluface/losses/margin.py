"""Classification heads that turn embeddings into logits for cross-entropy: plain softmax, ArcFace, CosFace.

The margin heads follow ArcFace (Deng et al., CVPR 2019; paper 004 trains IResNet/ResSaNet with it) and
CosFace (Wang et al., CVPR 2018). Both normalise embeddings and class weights, so logits are ``s * cos(theta)``;
during training the target class gets a margin (angular ``cos(theta + m)`` or additive ``cos(theta) - m``),
which forces tighter identity clusters than softmax. ``predict_logits`` leaves the margin out: that is what
inference and accuracy should use.

All margin maths runs in float32 even under autocast, because ``sqrt(1 - cos^2)`` and the scale ``s = 64``
overflow or lose all precision in float16.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from occluface.errors import OccluFaceError

__all__ = ["SoftmaxHead", "ArcFaceHead", "CosFaceHead", "create_head", "l1_penalty", "HEADS"]

# Keeps cos strictly inside (-1, 1): sqrt(1 - cos^2) then never sees 0, so its gradient stays finite.
_COS_EPS = 1e-6
_NORM_EPS = 1e-4


def _check_sizes(embedding_size: int, num_classes: int) -> None:
    for name, value in (("embedding_size", embedding_size), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OccluFaceError(f"{name} must be a positive int, got {value!r}")


class SoftmaxHead(nn.Module):
    """A plain linear classifier (the coal-mine paper's fully connected softmax layer)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        _check_sizes(embedding_size, num_classes)
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.fc = nn.Linear(embedding_size, num_classes)

    def predict_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.fc(embedding)

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embedding)


class _CosineHead(nn.Module):
    """Shared part of the margin heads: a normalised weight matrix and the scaled cosine logits."""

    def __init__(self, embedding_size: int, num_classes: int, s: float, m: float):
        super().__init__()
        _check_sizes(embedding_size, num_classes)
        if not (math.isfinite(s) and s > 0):
            raise OccluFaceError(f"scale s must be a positive number, got {s!r}")
        if not math.isfinite(m) or m < 0:
            raise OccluFaceError(f"margin m must be a non-negative number, got {m!r}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.s = float(s)
        self.m = float(m)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """cos(theta) between each embedding and each class centre, clamped inside (-1, 1).

        Embeddings are divided by ``sqrt(|x|^2 + eps^2)`` rather than ``max(|x|, eps)``: a zero embedding then
        gives cos = 0 with a bounded gradient (about ``1/eps``) instead of NaN or 1e14.
        """
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            x = embedding.float()
            emb = x * torch.rsqrt((x * x).sum(dim=1, keepdim=True) + _NORM_EPS**2)
            w = F.normalize(self.weight.float(), dim=1)
            return F.linear(emb, w).clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS)

    def predict_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.s * self.cosine(embedding)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(embedding)
        if labels is None:
            return self.s * cos
        labels = labels.to(device=cos.device, dtype=torch.long).view(-1, 1)
        target = cos.gather(1, labels)
        logits = cos.scatter(1, labels, self.target_logit(target))
        return self.s * logits

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, s={self.s}, m={self.m}"


class ArcFaceHead(_CosineHead):
    """Additive angular margin: the target logit is ``s * cos(theta + m)``.

    ``cos(theta + m)`` stops decreasing once ``theta + m > pi``, which would reward pushing a sample *away*
    from its class. As in the ArcFace reference code, beyond ``theta > pi - m`` the target uses the linear
    continuation ``cos(theta) - m * sin(m)`` instead, which is monotone and continuous at the threshold.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__(embedding_size, num_classes, s, m)
        if self.m >= math.pi:
            raise OccluFaceError(f"ArcFace margin m must be below pi radians, got {m!r}")
        self.cos_m = math.cos(self.m)
        self.sin_m = math.sin(self.m)
        self.th = math.cos(math.pi - self.m)  # cos(theta) below this means theta + m > pi
        self.mm = math.sin(math.pi - self.m) * self.m

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        sin = torch.sqrt((1.0 - cos * cos).clamp_min(1e-12))
        phi = cos * self.cos_m - sin * self.sin_m  # cos(theta + m)
        return torch.where(cos > self.th, phi, cos - self.mm)


class CosFaceHead(_CosineHead):
    """Additive cosine margin (large-margin cosine loss): the target logit is ``s * (cos(theta) - m)``."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(embedding_size, num_classes, s, m)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.m


HEADS: dict[str, type[nn.Module]] = {"softmax": SoftmaxHead, "arcface": ArcFaceHead, "cosface": CosFaceHead}


def create_head(name: str, embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    """Build a head by name; ``s``/``m`` set to ``None`` mean the head's default, and softmax ignores them."""
    key = str(name).strip().lower()
    if key not in HEADS:
        raise OccluFaceError(f"unknown loss {name!r}; choose one of: {', '.join(HEADS)}")
    kw = {k: v for k, v in kw.items() if v is not None}
    if key == "softmax":
        kw.pop("s", None)
        kw.pop("m", None)
    unknown = sorted(set(kw) - {"s", "m"})
    if unknown:
        raise OccluFaceError(f"loss {key!r} does not take option(s) {', '.join(unknown)}")
    return HEADS[key](embedding_size, num_classes, **kw)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over trainable weight matrices and kernels (biases and norm scales excluded).

    The coal-mine paper uses L1 next to L2 regularisation; L2 is SGD's weight decay, this is the L1 term the
    trainer adds as ``l1 * l1_penalty(model)``. Biases and BatchNorm parameters are 1-D and left alone, as
    shrinking them only shifts activations.
    """
    terms = [p.abs().sum() for p in model.parameters() if p.requires_grad and p.dim() > 1]
    if not terms:
        device = next(model.parameters(), torch.empty(0)).device
        return torch.zeros((), device=device)
    return torch.stack([t.float() for t in terms]).sum()
