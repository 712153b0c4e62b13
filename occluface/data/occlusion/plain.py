"""The plain mask: a flat polygon over nose and mouth fitted to dlib's 68 landmarks (face_recognition's
``nose_bridge``/``chin`` points), the occlusion the project's reference figures were first measured with."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError

#: 68-point indices (0-based, iBUG order) of the plain mask: jaw 2..14 then the nose bridge point 28
#: (1-based 29, face_recognition's nose_bridge[1]) -- the polygon the reference figures were measured with.
PLAIN_POLYGON: tuple[int, ...] = tuple(range(2, 15)) + (28,)
PLAIN_GREY = (128, 128, 128)


def plain_mask_polygon(landmarks68: np.ndarray) -> np.ndarray:
    """The plain mask's polygon (K x 2 float) from 68 landmarks."""
    lm = np.asarray(landmarks68, dtype=np.float32)
    if lm.shape != (68, 2):
        raise OccluFaceError(f"plain mask needs 68 x 2 landmarks, got shape {lm.shape}")
    return lm[list(PLAIN_POLYGON)]


def apply_plain_mask(image: np.ndarray, landmarks68: np.ndarray, color: Sequence[int] = PLAIN_GREY) -> np.ndarray:
    """Copy of ``image`` with a flat polygon (grey unless ``color``) over nose and mouth."""
    import cv2

    out = np.array(image, dtype=np.uint8, copy=True)
    pts = np.round(plain_mask_polygon(landmarks68)).astype(np.int32).reshape(-1, 1, 2)
    fill = tuple(int(c) for c in color)[: out.shape[2]] if out.ndim == 3 else int(color[0])
    cv2.fillPoly(out, [pts], fill, lineType=cv2.LINE_AA)
    return out
