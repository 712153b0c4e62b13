"""Classroom roll-call (Zhu et al., "Classroom Roll-Call System Based on ResNet Networks").

Per-face calibrated confidences over the roster (`confidence`), faces with confidence > 0.6 taken as present and
the face<->identity mapping solved globally so no student is named twice (`assign`), the paper's ER/UR
(`metrics`), synthetic group photos (`compose`) and the greedy-vs-global benchmark (`bench`).
"""

from occluface.rollcall.assign import (
    METHODS,
    FaceResult,
    RollCallResult,
    assign,
    global_assign,
    greedy_assign,
    paper_assign,
    rollcall,
)
from occluface.rollcall.confidence import (
    CONFIDENCE_MODELS,
    ConfidenceModel,
    SoftmaxConfidence,
    SVMConfidence,
    make_confidence,
)
from occluface.rollcall.metrics import aggregate, er_ur

__all__ = [
    "CONFIDENCE_MODELS",
    "METHODS",
    "ConfidenceModel",
    "FaceResult",
    "RollCallResult",
    "SVMConfidence",
    "SoftmaxConfidence",
    "aggregate",
    "assign",
    "er_ur",
    "global_assign",
    "greedy_assign",
    "make_confidence",
    "paper_assign",
    "rollcall",
]
