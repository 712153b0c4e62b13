"""dlib's 68-point facial landmarks: the geometry that masks are fitted to and faces aligned by.

Index groups (iBUG 300-W): jaw 0-16, brows 17-26, nose bridge 27-30, nostrils 31-35,
eyes 36-41 (image-left) and 42-47 (image-right), mouth 48-67.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from occluface.models.files import dlib_model

JAW = slice(0, 17)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


@lru_cache(maxsize=None)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(dlib_model("landmarks68")))


def landmarks68(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """68 x 2 float array of (x, y) landmarks for the face inside ``box`` = (x1, y1, x2, y2)."""
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    shape = _predictor()(np.ascontiguousarray(image), dlib.rectangle(x1, y1, x2, y2))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The 5 ArcFace points (image-left eye, image-right eye, nose tip, left and right mouth corner)."""
    return np.stack(
        [
            lm68[LEFT_EYE].mean(axis=0),
            lm68[RIGHT_EYE].mean(axis=0),
            lm68[30],
            lm68[48],
            lm68[54],
        ]
    ).astype(np.float32)
