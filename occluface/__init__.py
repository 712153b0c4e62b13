"""occluface: face recognition that keeps working when faces are partly hidden.

The front door (everything the CLI, the API and the demo use, in a few names)::

    from occluface import Recognizer, open_gallery

    rec = Recognizer(open_gallery("gallery.sqlite3"))      # sface-erase matcher, auto detector
    rec.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
    for match in rec.identify("gate.jpg"):
        print(match.label, round(match.similarity, 3), match.mask)

Names are imported on first use, so ``import occluface`` costs nothing until one is touched.
See docs/architecture.md for the way a photo travels and the package layers.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Recognizer", "Match", "Verification", "annotate", "read_image", "DEFAULT_MODEL",
    "open_gallery", "create_detector", "list_detectors", "create_matcher", "list_matchers",
    "create_model", "list_models", "load_rgb", "OccluFaceError", "ImageError", "NoFaceError", "__version__",
]


def __getattr__(name: str) -> Any:  # PEP 562: the front door's names, imported when first asked for
    if name in ("Recognizer", "Match", "Verification", "annotate", "read_image", "DEFAULT_MODEL"):
        from occluface.recognition import service

        return getattr(service, name)
    if name == "open_gallery":
        from occluface.gallery.connect import open_gallery

        return open_gallery
    if name in ("create_detector", "list_detectors"):
        from occluface.faces import detect

        return getattr(detect, name)
    if name in ("create_matcher", "list_matchers"):
        from occluface.recognition import matchers

        return getattr(matchers, name)
    if name in ("create_model", "list_models"):
        from occluface.models import registry

        return getattr(registry, {"create_model": "create"}.get(name, name))
    if name == "load_rgb":
        from occluface.data.images import load_rgb

        return load_rgb
    if name in ("OccluFaceError", "ImageError", "NoFaceError"):
        from occluface import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'occluface' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
