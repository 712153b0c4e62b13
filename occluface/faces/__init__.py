"""occluface.faces: detect faces (several detectors behind one interface) and align them to ArcFace's template."""

from occluface.faces.align import ARCFACE_TEMPLATE, align_face, detect_and_align
from occluface.faces.detect import Detector, Face, create_detector, list_detectors, pick_main_face

__all__ = [
    "ARCFACE_TEMPLATE",
    "Detector",
    "Face",
    "align_face",
    "create_detector",
    "detect_and_align",
    "list_detectors",
    "pick_main_face",
]
