"""Decision thresholds stored with the model or matcher they belong to (the product's side of calibration).

A similarity threshold means nothing across models, so each carries its own, picked on labelled data at a
target error rate (``occluface.bench.calibration`` and ``occluface bench`` make them) and reported with the
FAR/FRR it gave there. Lookup order: an explicit file, the user's calibration (``occluface calibrate``), the
calibration shipped in the package, else an explicitly *uncalibrated* fallback that every report flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from occluface.io import write_json
from occluface.errors import OccluFaceError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "models" / "thresholds"
UNCALIBRATED_THRESHOLD = 0.5


@dataclass
class Thresholds:
    """Verification and open-set identification thresholds on cosine similarity."""

    model_id: str
    verify: float
    identify: float
    target_far: float
    far: float | None = None
    frr: float | None = None
    n_genuine: int = 0
    n_impostor: int = 0
    n_images: int = 0
    n_identities: int = 0
    data: str = ""
    source: str = "uncalibrated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Thresholds":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _safe(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in model_id)


def user_thresholds_path(model_id: str) -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("occluface")) / "thresholds" / f"{_safe(model_id)}.json"


def shipped_thresholds_path(model_id: str) -> Path:
    return SHIPPED_DIR / f"{_safe(model_id)}.json"


def save_thresholds(th: Thresholds, path: str | Path) -> Path:
    """Write atomically so a crash never leaves a half-written calibration behind."""
    return write_json(path, th.to_dict())


def load_thresholds(model_id: str, path: str | Path | None = None) -> Thresholds:
    """The thresholds for ``model_id`` (see the module docstring for the lookup order)."""
    candidates = [Path(path)] if path else [user_thresholds_path(model_id), shipped_thresholds_path(model_id)]
    for p in candidates:
        if p.is_file():
            try:
                th = Thresholds.from_dict(json.loads(p.read_text()))
            except (ValueError, TypeError) as exc:
                raise OccluFaceError(f"{p}: not a valid thresholds file ({exc})") from None
            if th.model_id != model_id:
                raise OccluFaceError(f"{p}: calibrated for model {th.model_id!r}, not {model_id!r}")
            return th
        if path:
            raise OccluFaceError(f"{p}: no such thresholds file")
    return Thresholds(model_id, UNCALIBRATED_THRESHOLD, UNCALIBRATED_THRESHOLD, target_far=float("nan"))
