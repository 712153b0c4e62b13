"""Checkpoints that survive crashes, and loading a trained backbone + head for evaluation.

A checkpoint is a ``torch.save``d dict with the keys in ``CHECKPOINT_KEYS``. Writes go to a temporary file
in the same folder, are fsynced and then ``os.replace``d over the target, so a crash or full disk mid-write
leaves the previous checkpoint untouched (a half-written ``last.pt`` would otherwise lose the whole run).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occluface.errors import CheckpointError, OccluFaceError
from occluface.io import atomic_write
from occluface.models.config import TrainConfig

__all__ = ["CHECKPOINT_KEYS", "save_checkpoint", "load_checkpoint", "LoadedModel", "load_model", "build_backbone"]

CHECKPOINT_KEYS = (
    "backbone",
    "head",
    "optimizer",
    "scheduler",
    "epoch",
    "step",
    "config",
    "classes",
    "split",
    "metrics",
)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` to ``path`` (:func:`occluface.io.atomic_write`); returns the path."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)
    except (OSError, RuntimeError, pickle.PicklingError, TypeError) as exc:
        raise CheckpointError(f"{path}: could not write checkpoint ({exc})") from exc
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; CheckpointError names the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises a zoo of types (RuntimeError, KeyError, UnpicklingError...) for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({first})") from None
    if not isinstance(payload, dict) or "backbone" not in payload:
        raise CheckpointError(f"{path}: not an occluface checkpoint (no 'backbone' weights)")
    return payload


def build_backbone(config: TrainConfig) -> nn.Module:
    """The backbone a config describes, freshly initialised (dropout passed only when set)."""
    from occluface.models import create

    kwargs: dict[str, Any] = {}
    if config.dropout is not None:
        kwargs["dropout"] = config.dropout
    return create(config.model, embedding_size=config.embedding_size, input_size=config.input_size, **kwargs)


@dataclass
class LoadedModel:
    """A trained model ready for inference: ``backbone`` (eval mode) maps images to embeddings."""

    backbone: nn.Module
    head: nn.Module
    config: TrainConfig
    classes: list[str]
    split: dict[str, list[str]]
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.backbone.input_size)  # type: ignore[return-value]

    @property
    def embedding_size(self) -> int:
        return int(self.backbone.embedding_size)


def load_model(path: str | Path, map_location: Any = "cpu") -> LoadedModel:
    """Rebuild backbone and head from a checkpoint and load their weights (both in eval mode)."""
    from occluface.losses import create_head

    path = Path(path)
    payload = load_checkpoint(path, map_location=map_location)
    missing = [k for k in ("backbone", "head", "config", "classes") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not an occluface training checkpoint (missing {', '.join(missing)})")
    try:
        config = TrainConfig.from_dict(payload["config"])
        classes = [str(c) for c in payload["classes"]]
        backbone = build_backbone(config)
        head = create_head(config.loss, config.embedding_size, len(classes), s=config.s, m=config.m)
    except OccluFaceError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model it was trained with ({exc})") from None
    for name, module in (("backbone", backbone), ("head", head)):
        try:
            module.load_state_dict(payload[name])
        except (RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{path}: {name} weights do not fit {config.model!r} ({first})") from None
    device = torch.device(map_location) if isinstance(map_location, (str, torch.device)) else torch.device("cpu")
    backbone.to(device).eval()
    head.to(device).eval()
    split = payload.get("split") or {"train": [], "test": []}
    return LoadedModel(backbone, head, config, classes, split, dict(payload.get("metrics") or {}), path)
