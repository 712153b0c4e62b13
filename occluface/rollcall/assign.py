"""Faces -> roster identities: per-face argmax, global one-to-one assignment, and the paper's two-stage game.

Zhu et al. ("Classroom Roll-Call System Based on ResNet Networks") observe that recognising each face on its
own maps several faces to one student; they instead pick the face<->identity mapping that maximises the payoff
U = prod p(x_ij), the product of the chosen confidences. Maximising that product over one-to-one mappings is the
assignment problem on -log p, solved exactly by `scipy.optimize.linear_sum_assignment` (Hungarian method).

Three methods, all returning one roster index (or None) per face:

* `greedy_assign` -- each face takes its most confident identity if that confidence > threshold; two faces may
  get the same identity (the failure the paper fixes).
* `global_assign` -- one-to-one mapping of all faces and identities maximising the product of confidences;
  faces whose matched confidence is <= threshold, or that are left over (more faces than students), are
  uncertain.
* `paper_assign` -- the paper's procedure literally: faces with a unique best identity above the threshold form
  the attendance set I_a; the other faces (low confidence, or sharing their best identity with another face)
  form I_u and are matched one-to-one, maximising the product, to the identities not yet present (I_c);
  those matches join the attendance list (optionally only above `second_stage_min`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from occluface.errors import OccluFaceError

__all__ = [
    "METHODS",
    "FaceResult",
    "RollCallResult",
    "greedy_assign",
    "global_assign",
    "paper_assign",
    "assign",
    "rollcall",
]

METHODS = ("greedy", "global", "paper")
_EPS = 1e-12


def _check_matrix(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise OccluFaceError(f"confidence matrix must be faces x identities (2-D), got shape {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 + 1e-9):
        raise OccluFaceError("confidences must be probabilities in [0, 1] (no NaN)")
    return p


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise OccluFaceError(f"threshold must lie in [0, 1), got {threshold}")
    return t


def greedy_assign(p, threshold: float = 0.6) -> list[int | None]:
    """Per-face argmax, kept only when its confidence > threshold; duplicates allowed."""
    p, t = _check_matrix(p), _check_threshold(threshold)
    if p.shape[1] == 0:
        return [None] * p.shape[0]
    best = p.argmax(axis=1)
    return [int(j) if p[i, j] > t else None for i, j in enumerate(best)]


def _hungarian(p: np.ndarray) -> dict[int, int]:
    """Row -> column of the one-to-one matching maximising the product of p (rectangular allowed)."""
    if p.size == 0:
        return {}
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.log(np.clip(p, _EPS, 1.0)))
    return {int(r): int(c) for r, c in zip(rows, cols)}


def global_assign(p, threshold: float = 0.6) -> list[int | None]:
    """One-to-one mapping maximising prod p over matched pairs; matches with p <= threshold become None."""
    p, t = _check_matrix(p), _check_threshold(threshold)
    match = _hungarian(p)
    return [match[i] if i in match and p[i, match[i]] > t else None for i in range(p.shape[0])]


def paper_assign(p, threshold: float = 0.6, second_stage_min: float = 0.0) -> list[int | None]:
    """The paper's two stages: confident unique faces first, then the game (max product) on the rest.

    Stage 1: a face whose best confidence C_m > threshold and whose best identity is no other face's best
    identity joins I_a. Stage 2: faces not in I_a are matched one-to-one to the identities not in I_a,
    maximising the product of confidences; a match is kept when its confidence > `second_stage_min` (0 = keep
    every match, as the paper adds the whole mapping table to the attendance list).
    """
    p, t = _check_matrix(p), _check_threshold(threshold)
    n, m = p.shape
    out: list[int | None] = [None] * n
    if m == 0:
        return out
    best = p.argmax(axis=1)
    counts = np.bincount(best, minlength=m)
    for i in range(n):
        if p[i, best[i]] > t and counts[best[i]] == 1:
            out[i] = int(best[i])
    uncertain = [i for i in range(n) if out[i] is None]
    free = sorted(set(range(m)) - {j for j in out if j is not None})
    if uncertain and free:
        sub = p[np.ix_(uncertain, free)]
        for r, c in _hungarian(sub).items():
            if sub[r, c] > second_stage_min:
                out[uncertain[r]] = free[c]
    return out


def assign(p, method: str = "global", threshold: float = 0.6) -> list[int | None]:
    """Dispatch to greedy / global / paper assignment."""
    key = str(method).strip().lower()
    if key == "greedy":
        return greedy_assign(p, threshold)
    if key == "global":
        return global_assign(p, threshold)
    if key == "paper":
        return paper_assign(p, threshold)
    raise OccluFaceError(f"unknown assignment method {method!r}; known: {', '.join(METHODS)}")


@dataclass
class FaceResult:
    """One face of the photo: its identity (None when uncertain) and the confidence behind the decision.

    `candidate` is the identity the face was matched to (global/paper) or its argmax (greedy) even when the
    confidence was too low to accept it; `confidence` is p(face, candidate).
    """

    index: int
    identity: str | None
    confidence: float
    candidate: str | None
    status: str  # "present" | "uncertain"
    box: tuple[float, float, float, float] | None = None


@dataclass
class RollCallResult:
    """Who is present, who is absent, and whom a person should check (`unresolved`)."""

    faces: list[FaceResult]
    present: list[str]
    absent: list[str]
    unresolved: list[str]
    method: str
    threshold: float
    roster: list[str] = field(default_factory=list)

    @property
    def assigned(self) -> list[str | None]:
        """Identity per face (None = uncertain), the input of `occluface.rollcall.metrics.er_ur`."""
        return [f.identity for f in self.faces]

    @property
    def uncertain_faces(self) -> list[int]:
        return [f.index for f in self.faces if f.status == "uncertain"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _columns(model_classes: Sequence[str], roster_names: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    classes = [str(c) for c in model_classes]
    if roster_names is None:
        return classes, np.arange(len(classes))
    names = [str(r) for r in roster_names]
    if len(set(names)) != len(names):
        raise OccluFaceError("roster names must be unique")
    missing = [r for r in names if r not in classes]
    if missing:
        raise OccluFaceError(f"roster name(s) {', '.join(missing[:5])} were not enrolled in the confidence model")
    return names, np.asarray([classes.index(r) for r in names])


def rollcall(
    face_embeddings,
    confidence_model,
    roster_names: Sequence[str] | None = None,
    threshold: float = 0.6,
    method: str = "global",
    boxes: Sequence[Sequence[float]] | None = None,
    probabilities: np.ndarray | None = None,
) -> RollCallResult:
    """Roll-call of one group photo: confidences from the fitted model, then the chosen assignment.

    `roster_names` (default: every identity the model was fitted on) may be a subset of them; its columns are
    renormalised to sum to 1. Pass `probabilities` (F x model classes) to reuse confidences already computed.
    """
    if method not in METHODS:
        raise OccluFaceError(f"unknown assignment method {method!r}; known: {', '.join(METHODS)}")
    classes = getattr(confidence_model, "classes_", None)
    names, cols = _columns([] if classes is None else list(classes), roster_names)
    if not names:
        raise OccluFaceError("the confidence model has no roster identities; fit it on enrolment embeddings first")
    p = confidence_model.predict_proba(face_embeddings) if probabilities is None else np.asarray(probabilities, float)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise OccluFaceError(f"confidences must be faces x {len(classes)} roster identities, got shape {p.shape}")
    p = _check_matrix(p)[:, cols]
    if roster_names is not None:
        p = p / np.maximum(p.sum(axis=1, keepdims=True), _EPS)
    if boxes is not None and len(boxes) != len(p):
        raise OccluFaceError(f"got {len(p)} faces but {len(boxes)} boxes")
    chosen = assign(p, method, threshold)
    if method == "greedy" or not p.size:
        candidates = [int(j) for j in p.argmax(axis=1)] if p.size else [None] * len(p)
    else:
        match = _hungarian(p)
        candidates = [c if c is not None else match.get(i, int(p[i].argmax())) for i, c in enumerate(chosen)]
    faces = []
    for i, (ident, cand) in enumerate(zip(chosen, candidates)):
        conf = float(p[i, cand]) if cand is not None else 0.0
        faces.append(
            FaceResult(
                index=i,
                identity=names[ident] if ident is not None else None,
                confidence=conf,
                candidate=names[cand] if cand is not None else None,
                status="present" if ident is not None else "uncertain",
                box=tuple(float(v) for v in boxes[i]) if boxes is not None else None,
            )
        )
    present = sorted({f.identity for f in faces if f.identity is not None})
    unresolved = sorted({f.candidate for f in faces if f.status == "uncertain" and f.candidate is not None} - set(present))
    absent = sorted(set(names) - set(present) - set(unresolved))
    return RollCallResult(faces, present, absent, unresolved, method, float(threshold), list(names))
