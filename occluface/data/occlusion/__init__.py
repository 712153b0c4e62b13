"""Synthetic occlusion for face images: masks, coal dust, low light and partial occlusion.

``apply(image, kind, seed=..)`` occludes one HxWx3 uint8 RGB image; :class:`Occlude` does the same
inside a torchvision pipeline; ``occluface synth`` does it for a whole dataset folder.
"""

from occluface.data.occlusion.core import KINDS, MIXED_KINDS, PARAMS, apply, apply_with_info
from occluface.data.occlusion.faces import NoFaceError, find_landmarks
from occluface.data.occlusion.masks import MASK_TYPES, keypoints, list_textures, mask_region
from occluface.data.occlusion.preview import render_preview
from occluface.data.occlusion.synth import synthesize
from occluface.data.occlusion.transforms import Occlude

__all__ = [
    "KINDS",
    "MASK_TYPES",
    "MIXED_KINDS",
    "PARAMS",
    "NoFaceError",
    "Occlude",
    "apply",
    "apply_with_info",
    "find_landmarks",
    "keypoints",
    "list_textures",
    "mask_region",
    "render_preview",
    "synthesize",
]
