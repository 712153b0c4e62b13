"""Face boxes of training and benchmark photos (the data protocol's, not the service's detector chain).

Yale B photos are tight crops (the box is the whole image); other photos get dlib HOG's largest detection,
falling back to LFW's funneled layout or the whole image, so every photo of a run has a box.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["face_box"]

_DETECTOR = None
_LOCK = threading.Lock()


def face_box(image: np.ndarray, source: str = "") -> tuple[float, float, float, float]:
    """Face box (x1, y1, x2, y2) of the main face: Yale B = the whole (tight) crop; else dlib HOG's largest
    detection (upsampled once if none), falling back to the central half (LFW's funneled layout) or the whole
    image (small tight crops such as mask_cls)."""
    from occluface.faces.chips import full_image_box

    if source == "yaleb":
        return full_image_box(image)
    global _DETECTOR
    with _LOCK:
        if _DETECTOR is None:
            import dlib

            _DETECTOR = dlib.get_frontal_face_detector()
    for upsample in (0, 1):
        found = list(_DETECTOR(np.ascontiguousarray(image), upsample))
        if found:
            r = max(found, key=lambda r: r.width() * r.height())
            return (r.left(), r.top(), r.right(), r.bottom())
    h, w = image.shape[:2]
    if min(h, w) >= 200:
        return (w * 0.28, h * 0.28, w * 0.72, h * 0.72)
    return full_image_box(image)
