"""Grad-CAM heat maps with the ``grad-cam`` package (pytorch-grad-cam): where the classifier looked.

The map is computed on the aligned face crop at the last residual block and can be warped back into the
original photo (inverse of the alignment transform), so an operator sees the heat on the person.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from occluface.errors import OccluFaceError
from occluface.maskcheck.model import MaskNet, to_tensor


def gradcam(model: MaskNet, crop: np.ndarray, target: int | None = None) -> np.ndarray:
    """H x W float heat map in 0..1 for class ``target`` (default: the predicted class) of one uint8 crop."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise OccluFaceError(f"Grad-CAM needs an H x W x 3 uint8 crop, got {crop.shape} {crop.dtype}")
    model.eval()
    x = to_tensor(crop)
    if target is None:
        import torch

        with torch.no_grad():
            target = int(model(x).argmax(1)[0])
    if not 0 <= int(target) < model.classes:
        raise OccluFaceError(f"target class {target} is outside the model's {model.classes} classes")
    with GradCAM(model=model, target_layers=[model.cam_layer]) as cam:
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])[0]
    return np.nan_to_num(heat.astype(np.float32), nan=0.0)


def heat_fraction(heat: np.ndarray, region: np.ndarray) -> float:
    """Share of the total heat that lies inside the bool ``region`` (0 when the map is empty)."""
    total = float(heat.sum())
    return float(heat[region].sum()) / total if total > 0 else 0.0


def overlay(image: np.ndarray, heat: np.ndarray, *, strength: float = 0.45) -> np.ndarray:
    """Jet-coloured heat blended over an RGB uint8 image (pytorch_grad_cam's show_cam_on_image)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(image.astype(np.float32) / 255.0, np.clip(heat, 0, 1), use_rgb=True, image_weight=1 - strength)


def heat_to_image(heat: np.ndarray, landmarks5: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Warp a crop-space heat map back onto the original image; NaN outside the face crop."""
    from occluface.faces.align import similarity_matrix

    size = heat.shape[0]
    inverse = cv2.invertAffineTransform(similarity_matrix(landmarks5, size))
    h, w = image_shape[:2]
    warped = cv2.warpAffine(heat.astype(np.float32), inverse, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(np.ones_like(heat, np.float32), inverse, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    return np.where(inside > 0, warped, np.nan).astype(np.float32)


def overlay_faces(image: np.ndarray, heats: list[np.ndarray]) -> np.ndarray:
    """Heat maps from :func:`heat_to_image` blended over the photo inside each face crop only."""
    if not heats:
        return image.copy()
    stack = np.stack(heats)
    covered = ~np.all(np.isnan(stack), axis=0)
    heat = np.nan_to_num(np.nanmax(np.where(np.isnan(stack), -1, stack), axis=0).clip(0, 1))
    return np.where(covered[..., None], overlay(image, heat), image).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()
