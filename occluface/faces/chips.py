"""dlib face chips: the exact crop dlib's ResNet was trained on, made the way dlib/face_recognition make it.

dlib's descriptor is only accurate on chips from `dlib.get_face_chip` fitted to its 5-point landmarks
(`shape_predictor_5_face_landmarks.dat`) with size 150 and padding 0.25 -- what `face_recognition`'s
`face_encodings(model="small")` does internally. Any other alignment costs accuracy, so the baseline uses this.

Boxes are (x1, y1, x2, y2) pixel coordinates, the convention of `occluface.faces.landmarks`; they may reach
outside the image (useful for tight crops whose face fills the frame).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError
from occluface.models.files import dlib_model

__all__ = ["dlib_chip", "dlib_chips", "dlib_shape5", "as_rgb_uint8", "full_image_box"]

Box = tuple[float, float, float, float]


@lru_cache(maxsize=None)
def _predictor5():
    import dlib

    return dlib.shape_predictor(str(dlib_model("landmarks5")))


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Contiguous H x W x 3 uint8 view of an RGB or grey image; dlib accepts nothing else."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise OccluFaceError(f"face image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise OccluFaceError(f"face image must be H x W x 3 (RGB) or H x W (grey), got shape {image.shape}")
    return np.ascontiguousarray(image)


def full_image_box(image: np.ndarray, padding: float = 0.0) -> Box:
    """The whole image as a face box, grown by ``padding`` x its size on every side (for tight face crops)."""
    h, w = np.asarray(image).shape[:2]
    dx, dy = padding * w, padding * h
    return (-dx, -dy, w - 1 + dx, h - 1 + dy)


def _rectangle(box: Box):
    import dlib

    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise OccluFaceError(f"face box must be four numbers (x1, y1, x2, y2), got {box!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise OccluFaceError(f"face box {box!r} is empty (need x2 > x1 and y2 > y1)")
    return dlib.rectangle(x1, y1, x2, y2)


def dlib_shape5(image_rgb: np.ndarray, box: Box):
    """dlib `full_object_detection` of the 5 landmarks (eye corners, nose base) inside ``box``."""
    return _predictor5()(as_rgb_uint8(image_rgb), _rectangle(box))


def dlib_chip(image_rgb: np.ndarray, box: Box, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """size x size x 3 uint8 aligned face chip of the face inside ``box`` (dlib's 5-point alignment)."""
    import dlib

    image = as_rgb_uint8(image_rgb)
    shape = _predictor5()(image, _rectangle(box))
    return dlib.get_face_chip(image, shape, size=int(size), padding=float(padding))


def dlib_chips(
    image_rgb: np.ndarray, boxes: Sequence[Box], size: int = 150, padding: float = 0.25
) -> list[np.ndarray]:
    """One chip per box of the same image (one call to dlib's C++ chip extractor for all of them)."""
    import dlib

    image = as_rgb_uint8(image_rgb)
    if len(boxes) == 0:
        return []
    shapes = dlib.full_object_detections()
    for box in boxes:
        shapes.append(_predictor5()(image, _rectangle(box)))
    return list(dlib.get_face_chips(image, shapes, size=int(size), padding=float(padding)))
