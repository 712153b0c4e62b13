"""Run-time use: the mask state (and Grad-CAM) of every face in a photo.

``mask_check(image)`` detects, aligns and classifies every face; ``predict_mask_state(image, faces)`` and
``gradcam_png(image, face)`` serve callers that already have the faces (``identify``, the REST API).
Faces may be :class:`occluface.faces.detect.Face` objects or dicts with ``landmarks`` (5x2) and ``box``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occluface.errors import OccluFaceError
from occluface.maskcheck.model import MaskNet, cached_model

LABEL_COLORS = {"masked": (40, 180, 60), "correct": (40, 180, 60), "unmasked": (220, 40, 40), "none": (220, 40, 40),
                "incorrect": (240, 160, 20)}


def _model(weights: str | Path | MaskNet | None) -> MaskNet:
    if isinstance(weights, MaskNet):
        return weights
    return cached_model(str(weights) if weights is not None else None)


def _landmarks(face: Any) -> np.ndarray:
    lm = face.get("landmarks") if isinstance(face, dict) else getattr(face, "landmarks", None)
    if lm is None:
        raise OccluFaceError("a face needs 5 'landmarks' (as given by the detector) to be classified")
    return np.asarray(lm, np.float32).reshape(5, 2)


def _box(face: Any) -> list[float] | None:
    box = face.get("box") if isinstance(face, dict) else getattr(face, "box", None)
    return None if box is None else [float(v) for v in np.asarray(box).reshape(4)]


def face_crops(image: np.ndarray, faces: list[Any], size: int) -> np.ndarray:
    """Aligned uint8 crops (N x size x size x 3) of the faces, as the classifier was trained on."""
    from occluface.faces.align import align_face

    if not faces:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([align_face(image, _landmarks(f), size) for f in faces])


def predict_mask_state(image: Any, faces: list[Any], *, weights: str | Path | MaskNet | None = None) -> list[dict]:
    """For each face: ``{"label", "prob" (of that label), "probs": {class: p}}``, in the order given."""
    from occluface.data.images import load_rgb

    image = load_rgb(image) if not isinstance(image, np.ndarray) else image
    model = _model(weights)
    return states_from_crops(model, face_crops(image, list(faces), model.input_size))


def states_from_crops(model: MaskNet, crops: np.ndarray) -> list[dict]:
    """``{"label", "prob", "probs"}`` per aligned crop, in order."""
    from occluface.maskcheck.model import predict_proba

    if len(crops) == 0:
        return []
    proba = predict_proba(model, np.asarray(crops))
    out = []
    for p in proba:
        k = int(p.argmax())
        out.append({"label": model.class_names[k], "prob": float(p[k]),
                    "probs": {name: float(v) for name, v in zip(model.class_names, p)}})
    return out


def face_heat(image: np.ndarray, face: Any, model: MaskNet, target: int | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(aligned crop, its Grad-CAM heat map) for one face; ``target`` is a class index or name."""
    from occluface.maskcheck.cam import gradcam

    if isinstance(target, str):
        if target not in model.class_names:
            raise OccluFaceError(f"unknown class {target!r}; the model has {', '.join(model.class_names)}")
        target = model.class_names.index(target)
    crop = face_crops(image, [face], model.input_size)[0]
    return crop, gradcam(model, crop, target)


def gradcam_png(image: Any, face: Any, *, weights: str | Path | MaskNet | None = None, target: int | str | None = None,
                whole_image: bool = False, size: int = 224) -> bytes:
    """PNG of the Grad-CAM heat map of one face: over its aligned crop (``size`` px) or over the whole photo."""
    from occluface.data.images import load_rgb
    from occluface.maskcheck.cam import heat_to_image, overlay_faces, png_bytes

    image = load_rgb(image) if not isinstance(image, np.ndarray) else image
    model = _model(weights)
    crop, heat = face_heat(image, face, model, target)
    if whole_image:
        return png_bytes(overlay_faces(image, [heat_to_image(heat, _landmarks(face), image.shape)]))
    from occluface.maskcheck.cam import overlay

    big = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
    return png_bytes(overlay(big, heat))


def draw_results(image: np.ndarray, results: list[dict], heats: list[np.ndarray] | None = None) -> np.ndarray:
    """The photo with every face's heat map (if given), box and 'label prob' caption."""
    from occluface.maskcheck.cam import overlay_faces

    out = overlay_faces(image, heats or [])
    thick = max(1, round(max(image.shape[:2]) / 400))
    for r in results:
        if r.get("box") is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in r["box"])
        color = LABEL_COLORS.get(r["label"], (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        text = f"{r['label']} {r['prob']:.2f}"
        scale = max(0.4, thick * 0.45)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(y1 - 4, th + 4)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty + 2), color, -1)
        cv2.putText(out, text, (x1 + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def mask_check(image: Any, *, weights: str | Path | MaskNet | None = None, detector: str = "auto",
               cam: bool = False) -> tuple[list[dict], np.ndarray | None]:
    """Every face of a photo (path, bytes or array): results ``[{box, score, label, prob, probs}]`` and, when
    ``cam``, the annotated RGB image with each face's Grad-CAM heat map (else None)."""
    from occluface.data.images import load_rgb
    from occluface.faces.detect import create_detector
    from occluface.maskcheck.cam import heat_to_image

    image = load_rgb(image) if not isinstance(image, np.ndarray) else image
    model = _model(weights)
    faces = create_detector(detector).detect(image)
    states = predict_mask_state(image, faces, weights=model)
    results = [{"box": _box(f), "score": float(f.score), **s} for f, s in zip(faces, states)]
    if not cam:
        return results, None
    heats = []
    for f in faces:
        _, heat = face_heat(image, f, model)
        heats.append(heat_to_image(heat, _landmarks(f), image.shape))
    return results, draw_results(image, results, heats)
