"""``apply``: one entry point for every occlusion kind, deterministic under a seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from occluface.data.occlusion.common import check_params, pick
from occluface.data.occlusion.dust import DUST_PARAMS, apply_dust
from occluface.data.occlusion.faces import as_face_list, find_landmarks
from occluface.data.occlusion.lighting import LOWLIGHT_PARAMS, apply_lowlight
from occluface.data.occlusion.masks import MASK_PARAMS, MASK_TYPES, apply_mask, list_textures
from occluface.data.occlusion.partial import PARTIAL_PARAMS, apply_partial
from occluface.errors import OccluFaceError

KINDS = ("surgical", "kn95", "cloth", "texture", "mask", "dust", "lowlight", "partial", "mixed", "scarf")
#: Parameter names each kind accepts ("mask" also takes ``type``; "mixed" takes ``kinds``).
PARAMS: dict[str, tuple[str, ...]] = {
    **MASK_PARAMS,
    "mask": tuple(sorted({"type", *(n for names in MASK_PARAMS.values() for n in names)})),
    "dust": DUST_PARAMS,
    "lowlight": LOWLIGHT_PARAMS,
    "partial": PARTIAL_PARAMS,
    "mixed": ("kinds", "textures"),  # plus any other kind's parameter, used when that kind is drawn
}
MIXED_KINDS = ("mask", "dust", "lowlight", "partial")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise OccluFaceError(f"expected a numpy image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise OccluFaceError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise OccluFaceError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if min(image.shape[:2]) < 8:
        raise OccluFaceError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to occlude")
    return np.ascontiguousarray(image)


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def apply_with_info(
    image: np.ndarray,
    kind: str,
    *,
    seed: int = 0,
    landmarks: np.ndarray | None = None,
    **params: Any,
) -> tuple[np.ndarray, dict]:
    """Like :func:`apply` but also returns what was done: ``{"kind": resolved kind, **parameters}``."""
    if kind not in KINDS:
        raise OccluFaceError(f"unknown occlusion kind {kind!r}; choose one of: {', '.join(KINDS)}")
    squeeze = isinstance(image, np.ndarray) and image.ndim == 2
    rgb = _as_rgb(image)
    grey = _is_grey(rgb)
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
    faces: list[np.ndarray] | None = as_face_list(landmarks) if landmarks is not None else None

    def faces_fn() -> list[np.ndarray]:
        nonlocal faces
        if faces is None:
            faces = find_landmarks(rgb)
        return faces

    if kind == "mixed":
        check_params("mixed", params, {n for names in PARAMS.values() for n in names})
        choices = params.pop("kinds", MIXED_KINDS)
        if isinstance(choices, str):
            choices = tuple(c.strip() for c in choices.split(",") if c.strip())
        bad = [c for c in choices if c not in KINDS or c == "mixed"]
        if bad or not choices:
            raise OccluFaceError(f"mixed kinds must be chosen from {', '.join(k for k in KINDS if k != 'mixed')}, got {choices!r}")
        kind = pick(rng, list(choices))
        params = {k: v for k, v in params.items() if k in PARAMS[kind]}
    if kind == "mask":
        mtype = params.pop("type", None)
        if mtype is None:
            has_textures = bool(params.get("texture")) or bool(list_textures(params.get("textures")))
            types = list(MASK_TYPES) if has_textures else list(MASK_TYPES[:3])
            mtype = pick(rng, types, [3.5, 2, 3, 1.5][: len(types)])
        if mtype not in MASK_TYPES:
            raise OccluFaceError(f"mask type {mtype!r} is not one of {', '.join(MASK_TYPES)}")
        kind = mtype
        params = {k: v for k, v in params.items() if k in MASK_PARAMS[kind]}

    x = rgb.astype(np.float32) / 255.0
    if kind in MASK_TYPES or kind == "scarf":
        x, info = apply_mask(x, faces_fn(), kind, rng, params)
    elif kind == "dust":
        x, info = apply_dust(x, faces_fn(), rng, params)
    elif kind == "lowlight":
        x, info = apply_lowlight(x, rng, params)
    else:
        x, info = apply_partial(x, faces_fn, rng, params)
    if grey:  # keep grey datasets (Yale B) grey
        x = np.repeat((x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114)[..., None], 3, axis=2)
    out = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    if squeeze:
        out = out[..., 0]
    return out, {"kind": kind, **info}


def apply(
    image: np.ndarray,
    kind: str,
    *,
    seed: int = 0,
    landmarks: np.ndarray | None = None,
    **params: Any,
) -> np.ndarray:
    """Occlude ``image`` (HxWx3 uint8 RGB) with ``kind`` (one of :data:`KINDS`); same shape and dtype out.

    Landmarks (68x2, or N x 68 x 2 for several faces) are found automatically when not given;
    kinds anchored to the face raise :class:`occluface.errors.OccluFaceError` when there is none.
    Unset parameters are drawn from ``seed``: the same seed gives identical bytes.
    """
    return apply_with_info(image, kind, seed=seed, landmarks=landmarks, **params)[0]


def occlude(image: np.ndarray, kind: str, *, seed: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """Occluded copy of ``image`` by name: ``"plain"`` (the flat grey polygon, needs the 68 landmarks) or any
    of :data:`KINDS` (see :func:`apply`)."""
    if kind == "plain":
        from occluface.data.occlusion.plain import apply_plain_mask

        if landmarks is None:
            raise OccluFaceError("the plain mask needs the face's 68 landmarks")
        return apply_plain_mask(image, landmarks)
    return apply(image, kind, seed=seed, landmarks=landmarks)

