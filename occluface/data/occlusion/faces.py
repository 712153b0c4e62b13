"""Finding the 68 landmarks that every face-anchored occlusion (masks, dust, brim, hand) is fitted to.

dlib's 68-point predictor was trained on boxes from dlib's HOG detector, so whatever detector finds
the face, the box handed to the predictor is rebuilt from the eyes and mouth in HOG proportions
(calibrated on the bundled LFW photos) and refined once from the predictor's own output. Tight crops
(Yale B 168x192, aligned 112x112) defeat most detectors, so when none finds a face in a crop-shaped,
non-blank image, the crop itself is taken as the face, in the proportions measured on Yale B.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from occluface.errors import NoFaceError, OccluFaceError

#: HOG box centre = eye midpoint + _T * (mouth midpoint - eye midpoint);
#: side = _K * (eye-mouth distance + inter-ocular distance) / 2  (40 LFW faces, std 0.1 / 0.18).
_T = 0.44
_K = 2.37
#: Tight-crop box as fractions of (width, height): (x1, y1, x2, y2), measured on Yale B crops.
TIGHT_BOX = (-0.06, 0.0, 1.06, 0.97)

_CACHE: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
_CACHE_SIZE = 256
_LOCK = threading.Lock()


def box_from_points(eyes_mid: np.ndarray, mouth_mid: np.ndarray, inter_ocular: float) -> np.ndarray:
    """A dlib-HOG-style square box (x1, y1, x2, y2) from eye and mouth midpoints."""
    v = mouth_mid - eyes_mid
    centre = eyes_mid + _T * v
    half = _K * (np.linalg.norm(v) + inter_ocular) / 4.0
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], np.float32)


def box_from_five(lm5: np.ndarray) -> np.ndarray:
    """HOG-style box from 5 ArcFace points (eyes, nose, mouth corners)."""
    lm5 = np.asarray(lm5, np.float32)
    return box_from_points((lm5[0] + lm5[1]) / 2, (lm5[3] + lm5[4]) / 2, float(np.linalg.norm(lm5[1] - lm5[0])))


def _fit68(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    from occluface.faces.landmarks import five_points, landmarks68

    lm = landmarks68(image, tuple(float(v) for v in box))
    refined = box_from_five(five_points(lm))  # the predictor is most accurate on boxes it was trained with
    return landmarks68(image, tuple(float(v) for v in refined))


@lru_cache(maxsize=1)
def _project_detector():
    """The project's detector when it is installed and loads; None otherwise (then dlib HOG is used)."""
    try:
        from occluface.faces.detect import create_detector

        return create_detector("auto")
    except Exception:  # missing module or model file: fall back to HOG, occlusion must still work
        return None


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def _detect_boxes(image: np.ndarray) -> list[np.ndarray]:
    det = _project_detector()
    if det is not None:
        try:
            faces = det.detect(image)
            boxes = [box_from_five(f.landmarks) for f in faces]
            return [b for b in boxes if b[2] - b[0] >= 20]
        except OccluFaceError:
            raise
        except Exception:  # a broken optional model must not stop occlusion; HOG below still runs
            pass
    h, w = image.shape[:2]
    pad = int(0.25 * max(h, w))
    mean = image.reshape(-1, 3).mean(axis=0)
    padded = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    padded[:] = mean.astype(np.uint8)
    padded[pad : pad + h, pad : pad + w] = image
    up = 1 if max(h, w) < 500 else 0
    with _LOCK:
        rects = _hog()(padded, up)
    boxes = []
    for r in rects:
        b = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) - pad
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if 0 <= cx < w and 0 <= cy < h:
            boxes.append(b)
    return boxes


def looks_like_tight_crop(image: np.ndarray) -> bool:
    """A small, face-shaped, non-blank picture: probably a face crop that detectors cannot see whole."""
    h, w = image.shape[:2]
    grey = image.mean(axis=2)
    return 0.6 <= w / h <= 1.6 and max(h, w) <= 400 and min(h, w) >= 32 and float(grey.std()) >= 8.0


def find_landmarks(image: np.ndarray, *, allow_tight_crop: bool = True) -> list[np.ndarray]:
    """68x2 landmarks of every face in ``image`` (largest first); raises NoFaceError when none."""
    image = np.ascontiguousarray(image)
    key = (image.shape, zlib.crc32(image.tobytes()), allow_tight_crop)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return [lm.copy() for lm in _CACHE[key]]
    # A flat picture (blank frame, solid fill) holds no face; detectors would only burn seconds on it.
    boxes = _detect_boxes(image) if float(image.std()) >= 2.0 else []
    if not boxes and allow_tight_crop and looks_like_tight_crop(image):
        h, w = image.shape[:2]
        boxes = [np.array(TIGHT_BOX, np.float32) * np.array([w, h, w, h], np.float32)]
    if not boxes:
        raise NoFaceError(
            f"no face found in the {image.shape[1]}x{image.shape[0]} image "
            "(mask, dust, brim and hand occlusions need one; lowlight and patch do not)"
        )
    boxes.sort(key=lambda b: -float((b[2] - b[0]) * (b[3] - b[1])))
    with _LOCK:
        result = [_fit68(image, b) for b in boxes]
        _CACHE[key] = [lm.copy() for lm in result]
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def as_face_list(landmarks) -> list[np.ndarray]:
    """Accept one 68x2 array, an N x 68 x 2 array or a list of 68x2 arrays."""
    arr = np.asarray(landmarks, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (68, 2):
        raise OccluFaceError(f"landmarks must be 68x2 (or N x 68 x 2), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise OccluFaceError("landmarks contain NaN or infinite values")
    return [a for a in arr]
