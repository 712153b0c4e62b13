"""dlib's two face detectors: HOG (fast, frontal, fails under masks) and CNN/MMOD (slower, better).

Neither gives landmarks, so the 5 ArcFace points come from dlib's 68-point shape predictor
(:mod:`occluface.faces.landmarks`) run inside each box.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from occluface.faces.base import Detector, Face, register
from occluface.faces.landmarks import five_points, landmarks68
from occluface.models.files import dlib_model


@lru_cache(maxsize=None)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _mmod():
    import dlib

    return dlib.cnn_face_detection_model_v1(str(dlib_model("mmod")))


class _DlibDetector(Detector):
    """Shared part: boxes from dlib, 5 points from the 68-point predictor."""

    def _boxes(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        raise NotImplementedError

    def _detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:  # dlib objects are not documented as thread-safe
            found = self._boxes(image)
            faces = []
            for box, score in found:
                lm5 = five_points(landmarks68(image, box))
                faces.append(Face(np.array(box, np.float32), score, lm5, self.name))
        return faces


class HogDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal detector; finds faces of about 80 px and up."""

    name = "hog"
    min_side = 400
    max_side = 1000

    def __init__(self, upsample: int = 0) -> None:
        super().__init__()
        self.upsample = upsample
        _hog()

    def _boxes(self, image):
        rects, scores, _ = _hog().run(image, self.upsample, 0.0)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


class CnnDetector(_DlibDetector):
    """dlib's CNN (max-margin object detection) face detector from ``mmod_human_face_detector.dat``.

    It is the slowest model here on CPU (time grows with pixel count: ~0.35 s for 256x256, ~2.5 s
    for 640x640 on one core), so images are capped at 640 px on the longer side and padded small
    crops are brought to 320 px (measured: same hits as 400+ px on Yale B / mask_cls / RWMFD samples
    at 70% of the time; 256 px lost half the RWMFD faces).
    """

    name = "cnn"
    min_side = 320
    max_side = 640
    small_side = 320

    def __init__(self, upsample: int = 0) -> None:
        super().__init__()
        self.upsample = upsample
        _mmod()

    def _boxes(self, image):
        dets = _mmod()(image, self.upsample)
        out = []
        for d in dets:
            r = d.rect
            out.append(((r.left(), r.top(), r.right(), r.bottom()), float(d.confidence)))
        return out


@register("hog", "dlib HOG + SVM (fast; misses masked, tilted and small faces)")
def _make_hog() -> Detector:
    return HogDetector()


@register("cnn", "dlib CNN / MMOD (mmod_human_face_detector.dat; slow on CPU)")
def _make_cnn() -> Detector:
    return CnnDetector()
