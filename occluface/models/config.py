"""Everything a training run depends on, in one dataclass that round-trips through JSON and checkpoints.

Defaults follow the papers: SGD with lr 0.1 divided by 10 in steps (coal-mine paper 000), momentum 0.9 and
weight decay 5e-4 (ArcFace / paper 004), an 80/20 split within each identity (paper 000).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from occluface.errors import OccluFaceError

__all__ = ["TrainConfig", "LOSSES", "SCHEDULES", "RESUME_IGNORED"]

LOSSES = ("softmax", "arcface", "cosface")
SCHEDULES = ("step", "cosine")

#: Fields that may change between a run and its resumption: they do not change what a step computes.
RESUME_IGNORED = frozenset(
    {"data", "out", "epochs", "max_steps", "eval_every", "log_every", "num_workers", "amp", "channels_last"}
)


@dataclass
class TrainConfig:
    """Settings of one training run (see ``occluface train --help`` for what each one means)."""

    model: str = "resnet18"
    data: str = "../shared/data/yaleb"
    out: str = "runs/train"
    epochs: int = 30
    batch_size: int = 64  # per process when run under torchrun
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    l1: float = 0.0
    schedule: str = "step"
    step_size: int = 10  # epochs between /10 decays (ignored when milestones are given)
    milestones: list[int] | None = None
    gamma: float = 0.1
    loss: str = "softmax"
    s: float | None = None  # margin-head scale; None = head default (64)
    m: float | None = None  # margin; None = head default (ArcFace 0.5, CosFace 0.35)
    embedding_size: int = 512
    input_size: int | tuple[int, int] | None = 112  # None = model default
    dropout: float | None = None  # None = model default
    split_by: str = "image"
    test_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    amp: bool = True  # only takes effect on CUDA
    channels_last: bool = True  # only takes effect on CUDA
    num_workers: int = 2
    eval_every: int = 100  # iterations between test evaluations (0 = only at epoch ends)
    log_every: int = 10  # iterations between train log records
    max_steps: int | None = None  # stop after this many iterations (smoke tests, timing)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into the checkpoint

    def __post_init__(self) -> None:
        if isinstance(self.input_size, list):
            self.input_size = tuple(self.input_size)  # type: ignore[assignment]
        if self.milestones is not None:
            self.milestones = [int(v) for v in self.milestones]

    def validate(self) -> "TrainConfig":
        """Raise OccluFaceError naming the first bad setting; returns self for chaining."""

        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if allow_zero else 1):
                raise OccluFaceError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} int, got {v!r}")

        def number(name: str, lo: float, lo_open: bool = False, hi: float | None = None) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v < hi)
            if not ok:
                bound = f"> {lo}" if lo_open else f">= {lo}"
                raise OccluFaceError(
                    f"{name} must be a number {bound}{f' and < {hi}' if hi is not None else ''}, got {v!r}"
                )

        if not str(self.model).strip():
            raise OccluFaceError("model must be a model name, e.g. resnet18")
        for name in ("epochs", "batch_size", "step_size", "embedding_size"):
            positive_int(name)
        for name in ("num_workers", "eval_every", "log_every"):
            positive_int(name, allow_zero=True)
        if self.max_steps is not None:
            positive_int("max_steps")
        number("lr", 0.0, lo_open=True)
        number("momentum", 0.0, hi=1.0)
        number("weight_decay", 0.0)
        number("l1", 0.0)
        number("gamma", 0.0, lo_open=True)
        number("test_fraction", 0.0, hi=1.0)
        if self.loss not in LOSSES:
            raise OccluFaceError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise OccluFaceError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.split_by not in ("image", "identity"):
            raise OccluFaceError(f"split_by must be 'image' or 'identity', got {self.split_by!r}")
        if self.milestones is not None and (not self.milestones or any(v < 1 for v in self.milestones)):
            raise OccluFaceError(f"milestones must be a non-empty list of positive epochs, got {self.milestones!r}")
        if self.dropout is not None:
            number("dropout", 0.0, hi=1.0)
        for name in ("s", "m"):
            if getattr(self, name) is not None:
                number(name, 0.0, lo_open=name == "s")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = asdict(self)
        if isinstance(d["input_size"], tuple):
            d["input_size"] = list(d["input_size"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> "TrainConfig":
        """Inverse of ``to_dict``. Unknown keys (from a newer version) are ignored unless ``strict``."""
        if not isinstance(data, dict):
            raise OccluFaceError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if strict and unknown:
            raise OccluFaceError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def resume_key(self) -> dict[str, Any]:
        """The settings that must match for a checkpoint to be resumed under this config."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_IGNORED}
