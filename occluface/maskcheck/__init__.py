"""Mask-wearing classifier (issue 6): is a face masked, and where did the model look (Grad-CAM)?

A ResNet-18 (narrow by default) on 112x112 ArcFace-aligned face crops, 2 classes (unmasked / masked) or 3
(none / correct / incorrect: nose or chin uncovered). Heavy modules (torch, pytorch_grad_cam) are imported
by the submodules only, so ``import occluface.maskcheck`` stays cheap.

Entry points: :func:`occluface.maskcheck.predict.mask_check` (every face in an image),
:func:`predict_mask_state` / :func:`gradcam_png` for callers that already detected faces.
"""

from __future__ import annotations

from typing import Any

from occluface.maskcheck.labels import CLASSES

__all__ = ["CLASSES", "predict_mask_state", "gradcam_png", "mask_check"]


_LAZY = {"predict_mask_state", "gradcam_png", "mask_check"}


def __getattr__(name: str) -> Any:
    """``predict_mask_state``, ``gradcam_png`` and ``mask_check`` of :mod:`occluface.maskcheck.predict`, imported
    on first use (the package itself stays free of torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module("occluface.maskcheck.predict"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
