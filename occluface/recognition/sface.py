"""The SFace matcher: one aligned chip per face, its mask state once, SFace vectors, one threshold.

The way a face goes (``Recognizer`` calls it, nothing here calls back up):

1. **crop once**: the detector's 5 landmarks align one 112x112 ArcFace chip (:func:`chips`);
2. **mask state once**: the routing mask classifier (``maskroute_resnet18.pt``, 112 px, the same alignment)
   reads that same chip (:meth:`SFaceMatcher.mask_states`);
3. **embed**: SFace on the chip. With ``erase`` (the ``sface-erase`` matcher), a face called masked is also
   embedded with its lower face erased (rows from :data:`ERASE_FROM` down painted one flat grey), and it is
   compared with the enrolment photo erased the same way: no mask pixel and no mouth is compared, so a mask's
   colour, print or shape cannot carry identity or make two people look alike;
4. **match**: packed vectors (below) whose cosine, times :attr:`score_scale`, is the path's calibrated score.

Packing: a gallery vector is ``[full, erased, 1, 0] / sqrt(3)``; a bare probe ``[full, 0, 0, pad]``, a masked
probe ``[0, erased, offset, pad]`` (``offset`` = bare threshold - masked threshold, so one threshold serves
both paths; ``pad`` gives every probe the same norm ``R``). Their cosine is the path score / (R sqrt 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError
from occluface.recognition.thresholds import Thresholds, load_thresholds
from occluface.recognition.vectors import is_masked  # noqa: F401  (callers ask this module)
from occluface.recognition.vectors import unit_rows as _unit

#: First row (of 112) of the aligned chip that ``sface-erase`` paints over on masked faces, between the eyes
#: (template row 51.6) and the nose tip (71.7). Chosen on tuning people and tuning styles only
#: (docs/results/openset-tuning: best mean masked rank-1 of rows 56-72, LFW and Yale B pooled).
ERASE_FROM = 68
ERASE_GREY = 128
CHIP = 112

#: The mask classifier whose call picks the path and is reported as the face's mask state.
MASK_CLASSIFIER = Path(__file__).resolve().parents[1] / "models" / "weights" / "maskroute_resnet18.pt"


def chips(image: np.ndarray, faces: Sequence) -> np.ndarray:
    """N x 112 x 112 x 3 uint8 ArcFace-aligned chips from each face's 5 detector landmarks."""
    from occluface.faces.align import align_face

    if not faces:
        return np.zeros((0, CHIP, CHIP, 3), np.uint8)
    return np.stack([align_face(image, np.asarray(f.landmarks, np.float32).reshape(5, 2), CHIP) for f in faces])


def erase_lower(chips_: np.ndarray, start: int = ERASE_FROM) -> np.ndarray:
    """Copies of the chips with rows ``start``.. painted flat grey."""
    out = np.array(chips_, np.uint8, copy=True)
    if not 0 < start <= CHIP:
        raise OccluFaceError(f"erase start row must be in 1..{CHIP}, got {start}")
    out[:, start:] = ERASE_GREY
    return out


def mask_states_from_chips(model, chips_: np.ndarray) -> list[dict]:
    """``{"label", "prob"}`` per chip from a loaded mask classifier (its input is this alignment)."""
    from occluface.maskcheck.predict import states_from_crops

    return [{"label": s["label"], "prob": round(s["prob"], 4)} for s in states_from_crops(model, chips_)]


class SFaceMatcher:
    """SFace behind the matcher interface the recognition service uses (see the module docstring)."""

    def __init__(self, *, erase: bool = False, erase_from: int = ERASE_FROM, mask_classifier: str | Path = MASK_CLASSIFIER,
                 thresholds: Thresholds | None = None):
        from occluface.faces.embed import FaceEmbedder
        from occluface.maskcheck.model import cached_model
        from occluface.models.sface import SFACE_SHA256

        self.erase = bool(erase)
        self.erase_from = int(erase_from)
        self.model_id = "sface-erase" if self.erase else "sface"
        self.embedder = FaceEmbedder("sface")
        self.mask_model = cached_model(str(mask_classifier))
        self.version = f"{self.model_id}-v1:sface-{SFACE_SHA256[:12]}" + (f":erase{self.erase_from}" if self.erase else "")
        self.thresholds = thresholds or load_thresholds(self.model_id)
        masked_th = load_thresholds(self.model_id + "_masked") if self.erase else None
        both = self.thresholds.source == "calibrated" and masked_th is not None and masked_th.source == "calibrated"
        self.offset = float(self.thresholds.verify - masked_th.verify) if both else 0.0
        self.radius = float(np.sqrt(1.0 + self.offset ** 2))
        self.score_scale = float(self.radius * np.sqrt(3.0)) if self.erase else 1.0
        self.embedding_size = 2 * 128 + 2 if self.erase else 128

    # ------------------------------------------------------------ per face
    def mask_states(self, chips_: np.ndarray) -> list[dict]:
        return mask_states_from_chips(self.mask_model, chips_)

    def embed(self, chips_: np.ndarray) -> np.ndarray:
        return self.embedder.embed_chips(list(chips_))

    def gallery_from_chips(self, chips_: np.ndarray) -> np.ndarray:
        full = self.embed(chips_)
        if not self.erase:
            return full
        erased = self.embed(erase_lower(chips_, self.erase_from))
        ones = np.ones((len(full), 1), np.float32)
        return np.concatenate([full, erased, ones, 0 * ones], 1) / np.sqrt(3.0)

    def probes_from_chips(self, chips_: np.ndarray, masked: Sequence[bool]) -> np.ndarray:
        full = self.embed(chips_)
        if not self.erase:
            return full
        masked = np.asarray(masked, bool).reshape(-1, 1)
        if len(masked) != len(full):
            raise OccluFaceError(f"{len(masked)} mask calls for {len(full)} faces")
        erased = np.zeros_like(full)
        if masked.any():
            erased[masked[:, 0]] = self.embed(erase_lower(chips_[masked[:, 0]], self.erase_from))
        off = np.full((len(full), 1), self.offset, np.float32)
        packed = np.concatenate([full * ~masked, erased * masked, off * masked], 1)
        pad = np.sqrt(np.maximum(self.radius ** 2 - (packed.astype(np.float64) ** 2).sum(1, keepdims=True), 0.0))
        return (np.concatenate([packed, pad.astype(np.float32)], 1) / self.radius).astype(np.float32)

    # ------------------------------------------------------------ the service's calls
    def enrol_vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        return self.gallery_from_chips(chips(image, faces))

    def probe(self, image: np.ndarray, faces: Sequence, *, masks: bool = True) -> tuple[np.ndarray, list]:
        """(probe vectors, mask states) of the faces: one chip each, one mask call each (the call picks the path,
        so it is made even when ``masks`` is False; it is then not reported)."""
        c = chips(image, faces)
        states = self.mask_states(c)
        vectors = self.probes_from_chips(c, [is_masked(s) for s in states])
        return vectors, (states if masks else [None] * len(faces))

    def probe_vectors(self, image: np.ndarray, faces: Sequence, masked: Sequence[bool] | None = None) -> np.ndarray:
        """Probe vectors on the given paths (``masked``), or on the paths the classifier picks."""
        if masked is None:
            return self.probe(image, faces)[0]
        return self.probes_from_chips(chips(image, faces), masked)

    def rollcall_space(self, gallery_vectors: np.ndarray) -> np.ndarray:
        """The plain SFace embeddings inside stored gallery vectors (roll-call's confidence space)."""
        g = np.asarray(gallery_vectors, np.float32)
        return _unit(g[:, :128]) if self.erase else _unit(g)

    def rollcall_vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        """Plain SFace vectors of the faces: the space :meth:`rollcall_space` puts the gallery in."""
        return self.embed(chips(image, faces))
