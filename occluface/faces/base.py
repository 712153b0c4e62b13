"""The detector interface: :class:`Face`, the :class:`Detector` base class with the pre-processing every
detector shares, the combinators (first-that-finds, near-black images) and the registry they are built by name
from. The detectors themselves (``centerface``, ``yunet``, ``mtcnn``, ``dlib_detectors``) import only this module;
``occluface.faces.detect`` loads them and builds the chains (``auto`` and others).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from occluface.errors import OccluFaceError


@dataclass(eq=False)
class Face:
    """A detected face: ``box`` (x1, y1, x2, y2), ``score`` and 5x2 ``landmarks`` in ArcFace order
    (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    detector: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        self.score = float(self.score)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2, float(self.box[1] + self.box[3]) / 2

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "detector": self.detector,
        }


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an image array and return it as contiguous HxWx3 uint8 RGB (grey and RGBA accepted)."""
    if not isinstance(image, np.ndarray):
        raise OccluFaceError(f"expected an image as a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise OccluFaceError(f"expected an HxW or HxWx3 image array, got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(image)


#: Images narrower or shorter than this cannot hold a detectable face: they simply have none.
MIN_IMAGE_SIDE = 8


def too_small(image: np.ndarray) -> bool:
    return min(image.shape[:2]) < MIN_IMAGE_SIDE


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union between one box ``a`` and boxes ``b`` (N x 4)."""
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[2], b[:, 2])
    y2 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a + area_b - inter, 1e-6)


def nms(faces: list[Face], threshold: float = 0.4) -> list[Face]:
    """Greedy non-maximum suppression that keeps earlier faces first (callers order by priority)."""
    kept: list[Face] = []
    for face in faces:
        if not kept or iou(face.box, np.stack([k.box for k in kept])).max() < threshold:
            kept.append(face)
    return kept


def pick_main_face(faces: list[Face], image_shape: tuple[int, ...]) -> Face | None:
    """The face an aligner should keep from a photo: large and near the centre (insightface's rule)."""
    if not faces:
        return None
    h, w = image_shape[:2]
    cx, cy = w / 2, h / 2

    def key(face: Face) -> float:
        fx, fy = face.center
        return face.area - 2.0 * ((fx - cx) ** 2 + (fy - cy) ** 2)

    return max(faces, key=key)


class Detector:
    """Base class: subclasses implement :meth:`_detect` on an image already padded and resized.

    ``pad_below``: images whose longer side is at most this many pixels are treated as possible
    tight crops and get a border of ``pad_fraction`` of their longer side on every side.
    ``min_side`` / ``max_side``: the padded image is scaled so its longer side lies in this range
    (``small_side``, when set, fixes the size of padded small images: for slow models).
    """

    name = "base"
    pad_below = 400
    pad_fraction = 0.3
    min_side = 320
    max_side = 1024
    small_side: int | None = None  # if set, padded small images are scaled to exactly this long side

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, int, float]:
        """Pad and resize; returns the working image, the border width and the scale factor."""
        h, w = image.shape[:2]
        pad = int(round(self.pad_fraction * max(h, w))) if max(h, w) <= self.pad_below else 0
        if pad:
            # A flat border of the image's mean colour: unlike a reflection it cannot create mirror faces.
            mean = [int(v) for v in image.reshape(-1, 3).mean(axis=0)]
            image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
        long_side = max(image.shape[:2])
        scale = 1.0
        if pad and self.small_side:
            scale = self.small_side / long_side
        elif long_side < self.min_side:
            scale = self.min_side / long_side
        elif long_side > self.max_side:
            scale = self.max_side / long_side
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(
                image,
                (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                interpolation=interp,
            )
        return np.ascontiguousarray(image), pad, scale

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in ``image_rgb`` (HxWx3 uint8 RGB, grey accepted), highest score first."""
        image = as_rgb(image_rgb)
        if too_small(image):
            return []
        h, w = image.shape[:2]
        work, pad, scale = self.prepare(image)
        faces = []
        for face in self._detect(work):
            box = face.box / scale - pad
            lms = face.landmarks / scale - pad
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not (0 <= cx < w and 0 <= cy < h):
                continue  # a "face" found in the added border
            box = np.array([max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)], np.float32)
            faces.append(Face(box, face.score, lms, face.detector or self.name))
        faces.sort(key=lambda f: -f.score)
        return faces

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class CombinedDetector(Detector):
    """Runs detectors in order; the first that finds any face wins (its faces, after NMS, are returned).

    Later members only run on images the earlier ones miss, so the cost stays that of the first
    member on most images, and scores from different models (not comparable) are never mixed.
    """

    def __init__(self, name: str, members: list[Detector]) -> None:
        super().__init__()
        self.name = name
        self.members = members

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = as_rgb(image_rgb)
        if too_small(image):
            return []
        for member in self.members:
            faces = member.detect(image)
            if faces:
                return nms(faces)
        return []


# ----------------------------------------------------------------------------- registry
_FACTORIES: dict[str, tuple[Callable[[], Detector], str]] = {}


def register(name: str, description: str) -> Callable[[Callable[[], Detector]], Callable[[], Detector]]:
    """Decorator: make a detector factory available to :func:`create_detector` under ``name``."""

    def wrap(factory: Callable[[], Detector]) -> Callable[[], Detector]:
        _FACTORIES[name] = (factory, description)
        return factory

    return wrap


class DarkImageDetector(Detector):
    """Near-black photos (a helmet lamp off to one side, Yale B's extreme light angles): equalise, then detect.

    Only images darker than ``max_mean`` are tried, with CLAHE on the lightness channel, so it adds
    nothing to ordinary photos; as the last resort of ``auto`` it recovers faces every model misses.
    """

    def __init__(self, name: str, member: Detector, max_mean: float = 60.0) -> None:
        super().__init__()
        self.name = name
        self.member = member
        self.max_mean = max_mean

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = as_rgb(image_rgb)
        if float(image.mean()) > self.max_mean:
            return []
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(4, 4)).apply(lab[:, :, 0])
        faces = self.member.detect(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
        for face in faces:
            face.detector = f"{face.detector}+equalised"
        return faces


class RefineDetector(Detector):
    """A cheap ``proposer`` finds the faces; a better ``refiner`` re-detects each one on a crop around it.

    The crop is a square ``context`` times the proposed face's longer side, cut from the photo at its own
    resolution and handed to the refiner like any photo (so the refiner's usual border and minimum size apply to
    small crops): its box and landmarks are what it would give on the whole photo, at a fraction of the pixels.
    A proposal the refiner does not confirm (no face of its own centred inside the proposed box) is dropped;
    when no proposal is confirmed, the ``fallback`` chain runs on the whole photo.
    """

    def __init__(self, name: str, proposer: Detector, refiner: Detector, fallback: Detector,
                 context: float = 2.0) -> None:
        super().__init__()
        self.name = name
        self.proposer, self.refiner, self.fallback = proposer, refiner, fallback
        self.context = float(context)

    def _confirm(self, image: np.ndarray, proposal: Face) -> Face | None:
        h, w = image.shape[:2]
        cx, cy = proposal.center
        half = self.context * max(proposal.width, proposal.height) / 2
        x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
        x1, y1 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
        if min(x1 - x0, y1 - y0) < MIN_IMAGE_SIDE:
            return None
        px0, py0, px1, py1 = proposal.box - np.array([x0, y0, x0, y0], np.float32)
        best = None
        for face in self.refiner.detect(image[y0:y1, x0:x1]):  # highest score first
            fx, fy = face.center
            if px0 <= fx <= px1 and py0 <= fy <= py1:
                best = face
                break
        if best is None:
            return None
        offset = np.array([x0, y0], np.float32)
        return Face(best.box + np.tile(offset, 2), best.score, best.landmarks + offset, f"{best.detector}@{self.proposer.name}")

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = as_rgb(image_rgb)
        if too_small(image):
            return []
        confirmed = [f for f in (self._confirm(image, p) for p in self.proposer.detect(image)) if f is not None]
        if not confirmed:
            return self.fallback.detect(image)
        confirmed.sort(key=lambda f: -f.score)
        return nms(confirmed)
