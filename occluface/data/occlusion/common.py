"""Helpers shared by every occlusion kind: parameters, colours, face geometry, soft shapes."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from occluface.errors import OccluFaceError


def check_params(kind: str, params: dict[str, Any], known: Iterable[str]) -> None:
    """Unknown parameter names are almost always typos: say which ones exist instead of ignoring them."""
    known = set(known)
    unknown = sorted(set(params) - known)
    if unknown:
        raise OccluFaceError(
            f"unknown parameter(s) {', '.join(unknown)} for occlusion kind {kind!r}; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )


def unit_range(name: str, value: Any, lo: float = 0.0, hi: float = 1.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OccluFaceError(f"parameter {name} must be a number, got {value!r}") from None
    if not (lo <= v <= hi) or not np.isfinite(v):
        raise OccluFaceError(f"parameter {name} must lie in [{lo}, {hi}], got {value!r}")
    return v


def pick(rng: np.random.Generator, options: list | tuple, weights: list[float] | None = None):
    """Deterministic choice that works for lists of tuples too."""
    if weights is not None:
        w = np.asarray(weights, float)
        return options[int(rng.choice(len(options), p=w / w.sum()))]
    return options[int(rng.integers(len(options)))]


def parse_color(name: str, value: Any, palette: dict[str, tuple[int, int, int]]) -> tuple[str, np.ndarray]:
    """A palette name, '#rrggbb' or an (r, g, b) triple -> (label, float RGB in 0..1)."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in palette:
            return key, np.asarray(palette[key], np.float32) / 255.0
        if key.startswith("#") and len(key) == 7:
            try:
                rgb = tuple(int(key[i : i + 2], 16) for i in (1, 3, 5))
            except ValueError:
                pass
            else:
                return key, np.asarray(rgb, np.float32) / 255.0
        raise OccluFaceError(f"{name} {value!r} is not one of {', '.join(palette)} nor a '#rrggbb' colour")
    try:
        rgb = np.asarray(value, np.float32).reshape(3)
    except (TypeError, ValueError):
        raise OccluFaceError(f"{name} must be a colour name, '#rrggbb' or (r, g, b), got {value!r}") from None
    if rgb.min() < 0 or rgb.max() > 255:
        raise OccluFaceError(f"{name} channels must lie in 0..255, got {value!r}")
    return "#%02x%02x%02x" % tuple(int(round(c)) for c in rgb), rgb / 255.0


PALETTE_FILE = Path(__file__).with_name("palettes.json")
#: Mask kinds whose colour names are shared (any mask colour works with any mask type).
MASK_PALETTES = ("surgical", "kn95", "cloth")


@lru_cache(maxsize=None)
def palette(kind: str) -> dict[str, tuple[int, int, int]]:
    """The named colours of one occlusion kind, from ``palettes.json`` (draw order kept)."""
    table = json.loads(PALETTE_FILE.read_text())
    if kind not in table or kind.startswith("_"):
        raise OccluFaceError(f"no colour palette {kind!r} in {PALETTE_FILE}")
    return {name: tuple(rgb) for name, rgb in table[kind]["colors"].items()}


@lru_cache(maxsize=None)
def _draw_weights(kind: str) -> tuple[float, ...] | None:
    weights = json.loads(PALETTE_FILE.read_text())[kind]["weights"]
    return None if weights is None else tuple(weights)


def draw_color(rng: np.random.Generator, kind: str, value: Any = None) -> tuple[str, np.ndarray]:
    """``value`` parsed as a colour of ``kind`` (see :func:`parse_color`), or a seeded draw from its palette.

    A mask kind also accepts the other mask kinds' colour names (its own shade wins)."""
    own = palette(kind)
    if value is None:
        weights = _draw_weights(kind)
        value = pick(rng, list(own), None if weights is None else list(weights))
    names = {**{n: c for k in MASK_PALETTES for n, c in palette(k).items()}, **own} if kind in MASK_PALETTES else own
    return parse_color("color", value, names)


def face_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(eye midpoint, mouth midpoint, eye-mouth distance, unit 'down' vector) of a 68-point face."""
    eyes = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    mouth = (lm[48] + lm[54]) / 2
    v = mouth - eyes
    em = float(np.linalg.norm(v)) or 1.0
    return eyes, mouth, em, v / em


def eye_guard(shape: tuple[int, int], lm: np.ndarray, grow: float = 1.0) -> np.ndarray:
    """Float HxW map, 1 over the eyes (an ellipse around each), 0 elsewhere: occlusions that must
    leave the eyes visible multiply their alpha by ``1 - guard``."""
    guard = np.zeros(shape[:2], np.uint8)
    for sl in (slice(36, 42), slice(42, 48)):
        eye = lm[sl]
        c = eye.mean(0)
        d = eye[3] - eye[0]
        width = float(np.linalg.norm(d)) or 1.0
        angle = float(np.degrees(np.arctan2(d[1], d[0])))
        axes = (int(round(0.85 * width * grow * 16)), int(round(0.6 * width * grow * 16)))
        centre = (int(round(c[0] * 16)), int(round(c[1] * 16)))
        cv2.ellipse(guard, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA, shift=4)
    return guard.astype(np.float32) / 255.0


def soft_polygon(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Anti-aliased filled polygon as a float HxW alpha in 0..1."""
    canvas = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(pts) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.3:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to zero mean, unit std (value noise at scale ``sigma``)."""
    n = blur(rng.standard_normal(shape[:2]).astype(np.float32), sigma)
    s = float(n.std()) or 1.0
    return (n - n.mean()) / s


def luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma in 0..1 of a float RGB image in 0..1."""
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def face_hull(shape: tuple[int, int], lm: np.ndarray, forehead: float = 0.55) -> np.ndarray:
    """Soft alpha of the whole face: the jaw line closed by the brows lifted by ``forehead`` eye-mouth units."""
    _, _, em, down = face_frame(lm)
    brows = lm[17:27][::-1] - down * forehead * em
    pts = np.concatenate([lm[0:17], brows])
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    return soft_polygon(shape, hull)
