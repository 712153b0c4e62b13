"""Synthetic classroom photos: single-face images tiled into one group picture with known boxes and names.

Real labelled class photos are not available, so the roll-call benchmark builds them from held-out photos of
known people: each face (with some context around it, optionally masked first with
`occluface.data.occlusion.apply`) is rescaled to a random size and dropped at a jittered position of a grid on a
noisy gradient background. The same seed gives the same bytes; ground-truth boxes and identities come back
with the picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError

__all__ = ["ComposedImage", "compose_group", "default_face_box"]

Box = tuple[float, float, float, float]


@dataclass
class ComposedImage:
    """A composed group photo: `boxes[i]` (x1, y1, x2, y2) holds the face of `identities[i]`."""

    image: np.ndarray
    boxes: list[Box]
    identities: list[str | None]
    occlusions: list[str | None]
    notes: list[str] = field(default_factory=list)


def default_face_box(image: np.ndarray) -> Box:
    """Face box of a single-face photo: dlib's HOG detection nearest the centre, else the LFW centre box.

    LFW (deep-funneled) photos are 250x250 with the face at about (80, 85)-(175, 185); that proportion is the
    fallback for photos where HOG finds nothing (e.g. masked or dark faces).
    """
    from occluface.faces.chips import as_rgb_uint8

    image = as_rgb_uint8(image)
    h, w = image.shape[:2]
    rects = _hog()(image, 0)
    if len(rects):
        centre = np.array([w / 2, h / 2])
        r = min(rects, key=lambda r: float(np.hypot((r.left() + r.right()) / 2 - centre[0], (r.top() + r.bottom()) / 2 - centre[1])))
        return (float(r.left()), float(r.top()), float(r.right()), float(r.bottom()))
    return (0.32 * w, 0.34 * h, 0.70 * w, 0.74 * h)


_HOG = None


def _hog():
    global _HOG
    if _HOG is None:
        import dlib

        _HOG = dlib.get_frontal_face_detector()
    return _HOG


def _check_box(box, shape, i) -> np.ndarray:
    try:
        b = np.asarray(box, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise OccluFaceError(f"face {i}: box must be four numbers (x1, y1, x2, y2), got {box!r}") from None
    if not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        raise OccluFaceError(f"face {i}: box {box!r} is empty or not finite")
    return b


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A vertical two-colour gradient with mild noise: plain enough not to look like a face."""
    top, bottom = rng.uniform(40, 220, size=3), rng.uniform(40, 220, size=3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    bg = (1 - t) * top + t * bottom
    bg = np.broadcast_to(bg, (h, w, 3)) + rng.normal(0.0, 6.0, size=(h, w, 3))
    return np.clip(bg, 0, 255).astype(np.uint8)


def _occlude(image: np.ndarray, box: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, str | None]:
    """Masked copy via the occlusion module (landmarks fitted in the known box); None when no face fits."""
    from occluface.data.occlusion import apply
    from occluface.faces.landmarks import landmarks68

    try:
        lm = landmarks68(image, tuple(float(v) for v in box))
        return apply(image, kind, seed=seed, landmarks=lm), None
    except OccluFaceError as exc:
        return image, f"could not apply {kind}: {exc}"


def compose_group(
    images: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]] | None,
    identities: Sequence[str | None],
    *,
    seed: int = 0,
    occlusions: Sequence[str | None] | None = None,
    face_size: tuple[int, int] = (70, 110),
    context: float = 0.6,
    cols: int | None = None,
) -> ComposedImage:
    """Tile one face per source image into a group photo.

    `boxes[i]` is the face box inside `images[i]` (None: `default_face_box`); `occlusions[i]` an occlusion
    kind ("surgical", "mask", ...) to apply to that face first, or None. Each face is cut with `context` x
    its box size of margin per side, rescaled so the face box is `face_size` (min, max) pixels wide, and
    placed at a random offset in its (shuffled) grid cell.
    """
    from occluface.faces.chips import as_rgb_uint8
    import cv2

    n = len(images)
    if n == 0:
        raise OccluFaceError("compose_group needs at least one face image")
    if len(identities) != n or (boxes is not None and len(boxes) != n):
        raise OccluFaceError(f"got {n} images, {len(identities)} identities and {len(boxes) if boxes is not None else 'no'} boxes")
    if occlusions is not None and len(occlusions) != n:
        raise OccluFaceError(f"got {n} images but {len(occlusions)} occlusion kinds")
    lo, hi = int(face_size[0]), int(face_size[1])
    if not 16 <= lo <= hi:
        raise OccluFaceError(f"face_size must be (min, max) with 16 <= min <= max, got {face_size}")
    if context < 0:
        raise OccluFaceError(f"context must be >= 0, got {context}")
    rng = np.random.default_rng(seed)
    tiles, face_in_tile, applied, notes = [], [], [], []
    for i in range(n):
        img = as_rgb_uint8(images[i])
        b = _check_box(default_face_box(img) if boxes is None or boxes[i] is None else boxes[i], img.shape, i)
        kind = occlusions[i] if occlusions is not None else None
        occ_seed = int(rng.integers(0, 2**31 - 1))
        if kind:
            img, problem = _occlude(img, b, kind, occ_seed)
            if problem:
                notes.append(f"face {i}: {problem}")
                kind = None
        applied.append(kind or None)
        bw, bh = b[2] - b[0], b[3] - b[1]
        side = max(bw, bh) * (1 + 2 * context)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = int(round(side))
        pad = max(0, -x0, -y0, x0 + s - img.shape[1], y0 + s - img.shape[0])
        padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else img
        crop = padded[y0 + pad : y0 + pad + s, x0 + pad : x0 + pad + s]
        scale = rng.uniform(lo, hi) / bw
        out = max(8, int(round(s * scale)))
        scale = out / s
        tiles.append(cv2.resize(crop, (out, out), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
        face_in_tile.append(((b[0] - x0) * scale, (b[1] - y0) * scale, (b[2] - x0) * scale, (b[3] - y0) * scale))
    cols = int(cols) if cols else int(np.ceil(np.sqrt(n * 1.5)))
    rows = int(np.ceil(n / cols))
    cell = int(np.ceil(max(t.shape[0] for t in tiles) * 1.1))
    canvas = _background(rng, rows * cell, cols * cell)
    cells = rng.permutation(rows * cols)[:n]
    out_boxes: list[Box] = []
    for i, tile in enumerate(tiles):
        r, c = divmod(int(cells[i]), cols)
        t = tile.shape[0]
        ox = c * cell + int(rng.integers(0, cell - t + 1))
        oy = r * cell + int(rng.integers(0, cell - t + 1))
        canvas[oy : oy + t, ox : ox + t] = tile
        fx1, fy1, fx2, fy2 = face_in_tile[i]
        out_boxes.append((float(ox + fx1), float(oy + fy1), float(ox + fx2), float(oy + fy2)))
    return ComposedImage(canvas, out_boxes, list(identities), applied, notes)
