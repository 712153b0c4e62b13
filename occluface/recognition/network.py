"""One network as a matcher: a registry backbone (``dlib_resnet``, ``occluface_resnet``, ``iresnet50`` ...) or a
training checkpoint, behind the same interface as the SFace and routed matchers.

Every face takes one path: the chip its weights expect (:class:`occluface.models.registry.Weights`), one
embedding, cosine against the stored vectors, the network's calibrated thresholds. Mask states are only
reported (the shipped mask classifier), they choose nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.recognition.thresholds import Thresholds, load_thresholds


def reported_mask_states(image: np.ndarray, faces: Sequence) -> list[dict[str, Any]]:
    """Whether each face wears a mask ({"label", "prob"}), from the shipped mask classifier (reported only)."""
    if not faces:
        return []
    from occluface.maskcheck.predict import predict_mask_state

    return [{"label": s["label"], "prob": round(float(s["prob"]), 4)} for s in predict_mask_state(image, list(faces))]


class NetworkMatcher:
    """A registry backbone by name, or a ``.pt`` checkpoint of ``occluface train`` / ``finetune``."""

    score_scale = 1.0

    def __init__(self, model: str, *, thresholds: Thresholds | None = None):
        from occluface.faces.embed import FaceEmbedder

        if Path(str(model)).suffix == ".pt" and Path(str(model)).is_file():
            from occluface.models.checkpoint import load_model

            loaded = load_model(model)
            self.embedder = FaceEmbedder(model=loaded.backbone)
            self.model_id = f"{loaded.config.model}@{Path(model).resolve().parent.name}"
            self.version = str(loaded.config.to_dict().get("seed", 0)) + ":" + Path(model).name
        else:
            from occluface.models.registry import model_weights

            self.embedder = FaceEmbedder(model)
            self.model_id = str(model)
            weights = model_weights(model)
            self.version = weights.version() if weights is not None else "untrained"
        self.embedding_size = self.embedder.embedding_size
        self.thresholds = thresholds or load_thresholds(self.model_id)

    def _vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        return self.embedder.embed_chips([self.embedder.chip(image, f.box, f.landmarks) for f in faces])

    def enrol_vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        return self._vectors(image, faces)

    def probe_vectors(self, image: np.ndarray, faces: Sequence, masked: Sequence[bool] | None = None) -> np.ndarray:
        return self._vectors(image, faces)  # one path, whatever the mask state

    def probe(self, image: np.ndarray, faces: Sequence, *, masks: bool = True) -> tuple[np.ndarray, list]:
        states = reported_mask_states(image, faces) if masks else [None] * len(faces)
        return self._vectors(image, faces), states

    def rollcall_space(self, gallery_vectors: np.ndarray) -> np.ndarray:
        return np.asarray(gallery_vectors, np.float32)

    def rollcall_vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        return self._vectors(image, faces)
