"""Mask-wearing classifier (issue 6): is a face masked, and where did the model look (Grad-CAM)?

A ResNet-18 (narrow by default) on 112x112 ArcFace-aligned face crops, 2 classes (unmasked / masked) or 3
(none / correct / incorrect: nose or chin uncovered). Heavy modules (torch, pytorch_grad_cam) are imported
by the submodules only, so ``import occluface.maskcheck`` stays cheap.

Entry points: :func:`occluface.maskcheck.predict.mask_check` (every face in an image),
:func:`predict_mask_state` / :func:`gradcam_png` for callers that already detected faces.
"""

from __future__ import annotations

from typing import Any

CLASSES = {2: ("unmasked", "masked"), 3: ("none", "correct", "incorrect")}

__all__ = ["CLASSES", "predict_mask_state", "gradcam_png", "mask_check"]


def predict_mask_state(image: Any, faces: Any, **kwargs: Any) -> list[dict]:
    """See :func:`occluface.maskcheck.predict.predict_mask_state`."""
    from occluface.maskcheck.predict import predict_mask_state as fn

    return fn(image, faces, **kwargs)


def gradcam_png(image: Any, face: Any, **kwargs: Any) -> bytes:
    """See :func:`occluface.maskcheck.predict.gradcam_png`."""
    from occluface.maskcheck.predict import gradcam_png as fn

    return fn(image, face, **kwargs)


def mask_check(image: Any, **kwargs: Any) -> tuple[list[dict], Any]:
    """See :func:`occluface.maskcheck.predict.mask_check`."""
    from occluface.maskcheck.predict import mask_check as fn

    return fn(image, **kwargs)
