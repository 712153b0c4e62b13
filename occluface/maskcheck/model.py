"""The mask classifier network and its weight files.

``resnet18`` from the model registry (``width`` base channels; 32 keeps the accuracy at a quarter of the
parameters) with a ``classes``-way head, wrapped so it takes 0..1 RGB tensors and normalises them itself:
callers (Grad-CAM included) never have to know the statistics. Weight files hold fp16 tensors plus the
metadata needed to rebuild the network, so one file is all ``mask-check`` needs.

A network trained on synthetic masks and clean faces is surer of "unmasked" than real masked photos
deserve, so a weight file may also carry a *masked-logit bias* chosen on the validation split
(:func:`occluface.maskcheck.calibrate.choose_mask_bias`). It is added to the masked classes' logits in
``forward``: probabilities, labels and the argmax everywhere (CLI, API, identify, reports) move together,
and Grad-CAM, which reads gradients, is untouched.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occluface.errors import CheckpointError, OccluFaceError
from occluface.maskcheck.labels import CLASSES

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "models" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "maskcls_resnet18.pt"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class MaskNet(nn.Module):
    """Normalisation + ResNet backbone; input B x 3 x H x W in 0..1, output B x classes logits."""

    def __init__(self, classes: int = 2, width: int = 32, input_size: int = 112, dropout: float = 0.0):
        super().__init__()
        if classes not in CLASSES:
            raise OccluFaceError(f"classes must be 2 (unmasked/masked) or 3 (none/correct/incorrect), got {classes}")
        from occluface.models import create

        self.classes = classes
        self.width = width
        self.input_size = int(input_size)
        self.backbone = create("resnet18", embedding_size=classes, input_size=input_size, width=width, dropout=dropout)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.mask_bias = 0.0  # added to every masked class's logit (0 while training; see the module doc)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES[self.classes]

    cam_stage = "layer4"

    @property
    def cam_layer(self) -> nn.Module:
        """The layer Grad-CAM reads: the last block of ``cam_stage`` (layer4 = the last spatial map; layer3
        gives a map twice as fine, useful at small input sizes)."""
        return getattr(self.backbone, self.cam_stage)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.backbone((x - self.mean) / self.std)
        if self.mask_bias:
            shift = torch.full((self.classes,), float(self.mask_bias), dtype=logits.dtype, device=logits.device)
            shift[0] = 0.0  # class 0 is unmasked / none
            logits = logits + shift
        return logits


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 crops -> N x 3 x H x W float tensor in 0..1."""
    arr = np.asarray(crops)
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


def save_weights(path: str | Path, model: MaskNet, meta: dict[str, Any] | None = None, *, half: bool = True) -> Path:
    """Write the weights (fp16 by default, halving the file) and what is needed to rebuild the network."""
    from occluface.models.checkpoint import save_checkpoint

    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    info = {"classes": model.classes, "width": model.width, "input_size": model.input_size, "arch": "resnet18",
            "cam_stage": model.cam_stage, "mask_bias": float(model.mask_bias)}
    return save_checkpoint(path, {"backbone": state, "model": info, "meta": dict(meta or {})})


def load_weights(path: str | Path | None = None) -> MaskNet:
    """Rebuild a MaskNet from a weight file (default: the shipped one), in eval mode, float32 on CPU."""
    from occluface.models.checkpoint import load_checkpoint

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    payload = load_checkpoint(path)
    info = payload.get("model")
    if not isinstance(info, dict) or "classes" not in info:
        raise CheckpointError(f"{path}: not a mask-classifier weight file (no 'model' info)")
    model = MaskNet(int(info["classes"]), int(info["width"]), int(info["input_size"]))
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["backbone"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the network ({str(exc).splitlines()[0]})") from None
    model.meta = payload.get("meta", {})
    if info.get("cam_stage") in ("layer3", "layer4"):
        model.cam_stage = info["cam_stage"]
    bias = info.get("mask_bias", 0.0)
    if not isinstance(bias, (int, float)) or not np.isfinite(bias):
        raise CheckpointError(f"{path}: mask_bias must be a finite number, got {bias!r}")
    model.mask_bias = float(bias)
    return model.eval()


@lru_cache(maxsize=4)
def cached_model(path: str | None = None) -> MaskNet:
    """One loaded model per weight file per process (the CLI, API and tests load it many times)."""
    return load_weights(path)


def predict_proba(model: MaskNet, crops: np.ndarray, batch_size: int = 256, tta: bool = False) -> np.ndarray:
    """Class probabilities (N x classes) for uint8 crops (resized to the model's input size if needed);
    ``tta`` averages each crop with its mirror image (a mask is symmetric; steadier on odd poses)."""
    model.eval()
    crops = np.asarray(crops)
    if len(crops) and crops.shape[1:3] != (model.input_size, model.input_size):
        import cv2

        s = model.input_size
        crops = np.stack([cv2.resize(c, (s, s), interpolation=cv2.INTER_AREA) for c in crops])
    out = []
    for i in range(0, len(crops), batch_size):
        x = to_tensor(crops[i : i + batch_size])
        with torch.no_grad():
            p = torch.softmax(model(x), 1)
        if tta:
            with torch.no_grad():
                p = (p + torch.softmax(model(x.flip(3)), 1)) / 2
        out.append(p.numpy())
    return np.concatenate(out) if out else np.zeros((0, model.classes), np.float32)
