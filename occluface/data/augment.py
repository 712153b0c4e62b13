"""Image -> tensor pipelines for training and evaluation (torchvision v2).

Training adds mild geometric jitter (flip, small shift/rotation/scale) because face crops from a detector
are never pixel-aligned the same way twice; evaluation only resizes. Pixels are mapped to [-1, 1]
(mean 0.5, std 0.5), the ArcFace convention every backbone here is trained with.

``extra`` transforms run first, on the decoded PIL image, so occlusion simulators (masks, coal dust,
darkening) plug in without knowing about tensors; they may return a PIL image or an HxWxC uint8 array.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from occluface.models.registry import normalize_input_size

__all__ = ["build_transform", "MEAN", "STD"]

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class _ApplyExtra:
    """Run one user transform and hand the next step a PIL RGB image whatever it returned."""

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn

    def __call__(self, image: Any) -> Image.Image:
        out = self.fn(image)
        if isinstance(out, np.ndarray):
            arr = out
            if arr.dtype != np.uint8:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
            out = Image.fromarray(arr)
        if isinstance(out, Image.Image) and out.mode != "RGB":
            out = out.convert("RGB")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fn!r})"


def build_transform(
    input_size: int | tuple[int, int],
    train: bool,
    augment: bool = True,
    extra: Sequence[Callable[[Any], Any]] | None = None,
) -> v2.Compose:
    """PIL image -> normalised float tensor of shape 3 x H x W.

    ``train and augment`` adds RandomHorizontalFlip and a small RandomAffine (±10°, ±5 % shift,
    0.9-1.1 scale); otherwise the pipeline is deterministic.
    """
    size = normalize_input_size(input_size)
    steps: list[Any] = [_ApplyExtra(fn) for fn in (extra or [])]
    steps.append(v2.Resize(size, antialias=True))
    if train and augment:
        steps += [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        ]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=MEAN, std=STD)]
    return v2.Compose(steps)
