"""One interface over several face detectors, so every command can swap them by name.

Each detector returns :class:`Face` objects (box, score, 5 ArcFace landmarks) in the coordinates of
the image it was given. The shared :meth:`Detector.detect` does the pre-processing that decides
whether masked or tightly cropped faces are found at all:

* tight crops (the face fills the frame, like Yale B's 168x192 crops) get a border, because every
  detector here needs some context around the face;
* small images are upscaled and huge ones downscaled to the size range each model works best at;
* boxes and landmarks are mapped back to the original image.

The ``"auto"`` detector runs CenterFace (the first one here that reliably found masked faces) and, only on
images where it finds nothing, takes a second CenterFace look at a lower threshold, then falls back to MTCNN
and then dlib's CNN (first one that finds a face wins; NMS on its faces). The ``"fast"`` detector puts YuNet (6 ms a photo against CenterFace's 50) in front of that chain: it finds as
many faces on every subset of ``occluface bench detect`` (docs/results/detection-yunet), but its landmarks on
masked faces cost the SFace matchers 5 masked rank-1 points, so the service's default stays ``"auto"``.
"""

from __future__ import annotations

import threading

from occluface import settings
from occluface.errors import OccluFaceError
from occluface.faces.base import (  # noqa: F401  (the detection interface, re-exported: import it from here)
    MIN_IMAGE_SIDE,
    _FACTORIES,
    CombinedDetector,
    DarkImageDetector,
    RefineDetector,
    Detector,
    Face,
    as_rgb,
    iou,
    nms,
    pick_main_face,
    register,
    too_small,
)


# ----------------------------------------------------------------------------- registry

#: What the recognition service detects with (defined in ``occluface.settings``, so the CLI can name it without
#: importing OpenCV).
DEFAULT_DETECTOR = settings.DEFAULT_DETECTOR

_CACHE: dict[str, Detector] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: "auto" creates its members


def _load_builtin() -> None:
    # Imported for their @register side effects; each defers its heavy imports to first use.
    from occluface.faces import centerface, dlib_detectors, mtcnn, yunet  # noqa: F401


def list_detectors() -> dict[str, str]:
    """Detector names and one-line descriptions, the service's default first."""
    _load_builtin()
    return {name: desc for name, (_, desc) in sorted(_FACTORIES.items(), key=lambda kv: kv[0] != DEFAULT_DETECTOR)}


def create_detector(name: str = "auto") -> Detector:
    """The detector called ``name`` (see :func:`list_detectors`); models are loaded once and shared."""
    _load_builtin()
    key = (name or "auto").strip().lower()
    if key not in _FACTORIES:
        raise OccluFaceError(f"unknown face detector {name!r}; choose one of: {', '.join(list_detectors())}")
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _FACTORIES[key][0]()
        return _CACHE[key]


@register("centerface-dark", "CenterFace on a contrast-equalised copy of near-black images (last resort)")
def _centerface_dark() -> Detector:
    return DarkImageDetector("centerface-dark", create_detector("centerface-low"))


@register("auto", "CenterFace; on images where it finds nothing: CenterFace second look, MTCNN, dlib CNN, "
          "then equalised near-black images (default)")
def _auto() -> Detector:
    members = ["centerface", "centerface-low", "mtcnn", "cnn", "centerface-dark"]
    return CombinedDetector("auto", [create_detector(m) for m in members])


@register("auto-224", "`auto` with CenterFace's first look at 224 px on photos of at most 400 px (a third of its time "
          "on a 250 px photo); the rest of the chain unchanged")
def _auto_224() -> Detector:
    members = ["centerface-224", "centerface-low", "mtcnn", "cnn", "centerface-dark"]
    return CombinedDetector("auto-224", [create_detector(m) for m in members])


@register("fast", "YuNet first (about 5x faster than CenterFace here); on images where it finds nothing, the whole "
          "`auto` chain (its masked-face landmarks align SFace chips worse)")
def _fast() -> Detector:
    members = ["yunet", "centerface", "centerface-low", "mtcnn", "cnn", "centerface-dark"]
    return CombinedDetector("fast", [create_detector(m) for m in members])


@register("auto-roi", "YuNet finds the faces, CenterFace re-detects each on a crop around it at the photo's resolution "
          "(CenterFace's landmarks at a fraction of its time on large photos); where none is confirmed, the `auto` chain")
def _auto_roi() -> Detector:
    return RefineDetector("auto-roi", create_detector("yunet"), create_detector("centerface"), create_detector("auto"))
