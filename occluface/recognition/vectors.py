"""Small pieces every matcher shares: unit rows and what counts as a masked face."""

from __future__ import annotations

import numpy as np

from occluface.errors import OccluFaceError


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero or non-finite row is an error (it would match nothing or anything)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(norm)) or np.any(norm == 0):
        raise OccluFaceError("an embedding is zero or not finite; cannot normalise it")
    return x / norm


def is_masked(state: dict | None) -> bool:
    """Whether a mask state (``{"label": ...}``) sends a face down the masked path: any worn mask, correctly or not."""
    return state is not None and state.get("label") not in ("unmasked", "none")
