"""5-point similarity alignment to the ArcFace template, the input every recognition backbone expects.

A similarity transform (rotation, uniform scale, translation) keeps the face's proportions, so a
masked face is aligned by its eyes and nose as well as by the covered mouth corners.
"""

from __future__ import annotations

import cv2
import numpy as np

from occluface.errors import OccluFaceError
from occluface.faces.detect import Detector, Face, as_rgb, create_detector

#: insightface's 112x112 ArcFace template: eyes, nose tip, mouth corners (image-left first).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def template(size: int = 112) -> np.ndarray:
    """The ArcFace template scaled to a ``size`` x ``size`` output."""
    return ARCFACE_TEMPLATE * (size / 112.0)


def similarity_matrix(landmarks5: np.ndarray, size: int = 112) -> np.ndarray:
    """2x3 least-squares similarity transform taking ``landmarks5`` onto the template."""
    try:
        src = np.asarray(landmarks5, dtype=np.float32)
    except (TypeError, ValueError):
        raise OccluFaceError(f"landmarks must be 5 (x, y) numbers, got {type(landmarks5).__name__}") from None
    if src.size != 10 or not np.all(np.isfinite(src)):
        raise OccluFaceError(f"expected 5 finite (x, y) landmarks, got array of shape {np.shape(landmarks5)}")
    src = src.reshape(5, 2)
    if np.ptp(src[:, 0]) < 1e-3 and np.ptp(src[:, 1]) < 1e-3:
        raise OccluFaceError("the 5 landmarks coincide; cannot align")
    return umeyama(src, template(size))


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform src -> dst (Umeyama 1991), as skimage's SimilarityTransform.

    All 5 points count equally; OpenCV's estimateAffinePartial2D only offers robust (RANSAC/LMEDS)
    fits, which may drop the mouth corners of a masked face when they are off.
    """
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1  # no reflections
    rot = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def align_face(image: np.ndarray, landmarks5: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp ``image`` so its 5 landmarks land on the ArcFace template; returns size x size x 3 uint8."""
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise OccluFaceError(f"alignment size must be an integer of at least 16 pixels, got {size!r}")
    image = as_rgb(image)
    matrix = similarity_matrix(landmarks5, size)
    return cv2.warpAffine(image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR, borderValue=0)


def detect_and_align(
    image: np.ndarray, detector: Detector | str | None = None, size: int = 112
) -> list[tuple[Face, np.ndarray]]:
    """Every face in ``image`` with its aligned crop, highest score first."""
    if detector is None or isinstance(detector, str):
        detector = create_detector(detector or "auto")
    image = as_rgb(image)
    return [(face, align_face(image, face.landmarks, size)) for face in detector.detect(image)]
