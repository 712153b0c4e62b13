"""Face masks fitted to the 68 landmarks, in the manner of MaskTheFace.

Every mask -- drawn procedurally (surgical, KN95, cloth) or taken from an RGBA picture -- lives in
a template canvas laid out like an average frontal face. A set of keypoints is defined on the
landmarks (upper edge over the nose bridge between points 28 and 29, sides just outside the jaw
points 1-15, bottom under the chin point 8, plus nose and mouth points inside so perspective
follows the nose), and the canvas is warped piece-wise affinely from the same keypoints on the
average face to those on the real face. The result is shaded by the face's own low-frequency light
so a mask on a half-lit Yale B face is half-lit too. An ellipse around each eye is always cleared.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occluface.settings import REPO_DATA
from occluface.data.occlusion.common import (
    blur,
    check_params,
    draw_color,
    eye_guard,
    face_frame,
    luminance,
    palette,
    pick,
    smooth_noise,
    soft_polygon,
    unit_range,
)
from occluface.data.occlusion.warp import triangulate, warp_rgba
from occluface.errors import OccluFaceError

MASK_TYPES = ("surgical", "kn95", "cloth", "texture")

SURGICAL_COLORS = palette("surgical")
KN95_COLORS = palette("kn95")
CLOTH_COLORS = palette("cloth")
#: Any mask colour name works with any mask type (a type's own shade wins where names overlap).
ALL_COLORS = {**CLOTH_COLORS, **KN95_COLORS, **SURGICAL_COLORS}
CLOTH_PATTERNS = ("plain", "stripes", "checks", "dots", "camo")

# Mean 68-point face (LFW, mirror-symmetrised), eye midpoint at the origin, unit = eye-mouth distance.
MEAN_FACE = np.array(
    [[-1.068, 0.067], [-1.057, 0.343], [-1.03, 0.617], [-0.979, 0.888], [-0.881, 1.141], [-0.719, 1.36],
     [-0.509, 1.535], [-0.271, 1.674], [0.0, 1.712], [0.271, 1.674], [0.509, 1.535], [0.719, 1.36],
     [0.881, 1.141], [0.979, 0.888], [1.03, 0.617], [1.057, 0.343], [1.068, 0.067], [-0.848, -0.151],
     [-0.725, -0.28], [-0.54, -0.327], [-0.346, -0.309], [-0.159, -0.243], [0.159, -0.243], [0.346, -0.309],
     [0.54, -0.327], [0.725, -0.28], [0.848, -0.151], [0.0, -0.043], [0.0, 0.136], [0.0, 0.315], [0.0, 0.5],
     [-0.208, 0.626], [-0.108, 0.664], [0.0, 0.696], [0.108, 0.664], [0.208, 0.626], [-0.634, 0.009],
     [-0.524, -0.06], [-0.393, -0.061], [-0.278, 0.017], [-0.4, 0.046], [-0.528, 0.048], [0.278, 0.017],
     [0.393, -0.061], [0.524, -0.06], [0.634, 0.009], [0.528, 0.048], [0.4, 0.046], [-0.401, 0.998],
     [-0.257, 0.92], [-0.11, 0.885], [0.0, 0.911], [0.11, 0.885], [0.257, 0.92], [0.401, 0.998], [0.262, 1.118],
     [0.12, 1.166], [0.0, 1.175], [-0.12, 1.166], [-0.262, 1.118], [-0.338, 0.997], [-0.112, 0.97], [0.0, 0.981],
     [0.112, 0.97], [0.338, 0.997], [0.114, 1.031], [0.0, 1.045], [-0.114, 1.031]],
    dtype=np.float64,
)

_RING = 0.3  # outer ring of keypoints, this far beyond the outline, so edges and ear loops are not clipped
_N_OUTLINE = 22


def keypoints(lm: np.ndarray) -> np.ndarray:
    """Mask keypoints on a 68-point face: 22 outline points (closed, starting at the nose bridge),
    then 14 interior points, then 22 outer-ring points. Shape (58, 2)."""
    lm = np.asarray(lm, np.float64)
    _, _, em, down = face_frame(lm)
    centre = (lm[30] + lm[57]) / 2
    jaw = []
    for i in range(1, 16):
        push = 0.09 if 5 <= i <= 11 else 0.05
        d = lm[i] - centre
        jaw.append(lm[i] + push * em * d / (np.linalg.norm(d) or 1.0))
    jaw = np.array(jaw)
    top = lm[28] + 0.5 * (lm[29] - lm[28])

    def edge(corner: np.ndarray, ts) -> list[np.ndarray]:
        return [corner + t * (top - corner) + 0.05 * em * np.sin(np.pi * t) * down for t in ts]

    outline = np.array([top, *edge(jaw[0], (0.75, 0.5, 0.25)), *jaw, *edge(jaw[-1], (0.25, 0.5, 0.75))])
    interior = np.array(
        [lm[29], lm[30], lm[31], lm[33], lm[35], lm[48], lm[51], lm[54], lm[57],
         (lm[8] + lm[57]) / 2, (lm[3] + lm[31]) / 2, (lm[13] + lm[35]) / 2,
         (lm[5] + lm[48]) / 2, (lm[11] + lm[54]) / 2]
    )
    c = outline.mean(0)
    ring = outline + _RING * (outline - c)
    return np.concatenate([outline, interior, ring])


def outline_polygon(lm: np.ndarray) -> np.ndarray:
    return keypoints(lm)[:_N_OUTLINE]


def mask_region(image_shape: tuple[int, ...], landmarks68: np.ndarray) -> np.ndarray:
    """Bool HxW: the nose-mouth-chin region a mask fitted to these landmarks covers (eyes excluded)."""
    lm = np.asarray(landmarks68, np.float64)
    if lm.shape != (68, 2):
        raise OccluFaceError(f"mask_region needs 68x2 landmarks, got shape {lm.shape}")
    shape = tuple(image_shape[:2])
    region = soft_polygon(shape, outline_polygon(lm)) >= 0.5
    return region & (eye_guard(shape, lm) < 0.5)


# ----------------------------------------------------------------------------- template canvas

_SCALE = 150.0  # canvas pixels per eye-mouth distance


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Template keypoints in canvas pixels, canvas (h, w), and the fixed triangulation."""
    pts = keypoints(MEAN_FACE) * _SCALE
    lo = pts.min(0) - 6
    pts = pts - lo
    w, h = (np.ceil(pts.max(0)) + 6).astype(int)
    return pts, (int(h), int(w)), triangulate(pts)


def _uv(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask-local coordinates: u in -1..1 across, v in 0..1 from the upper to the lower edge per column."""
    h, w = alpha.shape
    inside = alpha > 0.5
    cols = inside.any(0)
    ys = np.arange(h, dtype=np.float32)[:, None]
    top = np.where(cols, np.argmax(inside, 0), 0).astype(np.float32)
    bottom = np.where(cols, h - 1 - np.argmax(inside[::-1], 0), 1).astype(np.float32)
    v = np.clip((ys - top) / np.maximum(bottom - top, 1.0), 0, 1)
    xs = np.nonzero(cols)[0]
    cx, half = (xs[0] + xs[-1]) / 2, max((xs[-1] - xs[0]) / 2, 1)
    u = np.broadcast_to(((np.arange(w, dtype=np.float32) - cx) / half)[None, :], (h, w))
    return u, v


def _bezier(p0, p1, p2, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _ear_loops(rgb: np.ndarray, alpha: np.ndarray, pts: np.ndarray, color: np.ndarray, width: float) -> None:
    """Elastic loops leaving the mask's side corners towards the ears (only their start shows)."""
    outline = pts[:_N_OUTLINE]
    c = outline.mean(0)
    for top_i, low_i in ((4, 7), (18, 15)):  # jaw 1 -> jaw 4 (image-left), jaw 15 -> jaw 12 (image-right)
        p0, p2 = outline[top_i], outline[low_i]
        mid = (p0 + p2) / 2
        p1 = mid + 0.55 * (mid - c)  # bulges out towards the ear, inside the outer keypoint ring
        curve = _bezier(p0, p1, p2)
        h, w = alpha.shape
        x0, y0 = np.maximum(np.floor(curve.min(0) - width - 2).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(curve.max(0) + width + 2).astype(int), [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)  # drawn in the loop's own box: cheap
        local = np.round((curve - [x0, y0]) * 16).astype(np.int32)
        cv2.polylines(layer, [local], False, 255, max(1, int(width)), cv2.LINE_AA, 4)
        box = (slice(y0, y1), slice(x0, x1))
        a = layer.astype(np.float32) / 255.0 * (1 - alpha[box])
        shade = 0.85 + 0.15 * (np.arange(y0, y1, dtype=np.float32) / h)[:, None]
        rgb[box] = rgb[box] * (1 - a[..., None]) + (color * shade[..., None]) * a[..., None]
        alpha[box] = np.maximum(alpha[box], a)


def _cylinder(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A mask wraps round the face: darker towards the sides and under the chin."""
    return (0.72 + 0.28 * np.sqrt(np.clip(np.cos(u * np.pi / 2.2), 0, 1))) * (1 - 0.12 * np.clip(v - 0.8, 0, 1) / 0.2)


def _kn95_outline(pts: np.ndarray) -> np.ndarray:
    """A KN95 is a cup, not a sleeve: peaked over the nose, widest at the cheeks, then two slightly
    bulging sides meeting under the chin (the lower jaw stays uncovered)."""
    o = pts[:_N_OUTLINE]
    top = o[0] - [0, 10]
    chin = o[11] + [0, 4]
    left = _bezier(o[7], 0.5 * (o[7] + chin) + 0.45 * (o[9] - 0.5 * (o[7] + chin)), chin, 16)
    right = _bezier(chin, 0.5 * (o[15] + chin) + 0.45 * (o[13] - 0.5 * (o[15] + chin)), o[15], 16)
    return np.concatenate([[top], o[1:8], left[1:], right[1:-1], o[15:]])


def _base(rng: np.random.Generator, outline: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pts, (h, w), _ = _template()
    alpha = soft_polygon((h, w), pts[:_N_OUTLINE] if outline is None else outline)
    u, v = _uv(alpha)
    grain = smooth_noise(rng, (h, w), 0.8)
    return pts, alpha, u, v, grain


def render_surgical(rng: np.random.Generator, color: Any = None, pleats: int | None = None) -> tuple[np.ndarray, dict]:
    """Pleated surgical mask: 3 folds, bound edges, nose wire, ear loops."""
    label, rgb0 = draw_color(rng, "surgical", color)
    n = int(pleats) if pleats is not None else int(rng.integers(2, 4)) + 1
    if not 1 <= n <= 6:
        raise OccluFaceError(f"pleats must be 1..6, got {pleats!r}")
    pts, alpha, u, v, grain = _base(rng)
    m = _cylinder(u, v) + 0.025 * grain
    lines = np.linspace(0.2, 0.8, n) + rng.uniform(-0.03, 0.03, n)
    for vp in lines:
        d = v - vp
        m = m - 0.22 * np.exp(-((d / 0.012) ** 2))  # crease shadow
        m = m + 0.10 * np.clip(1 + d / 0.12, 0, 1) * (d < 0)  # fold face catching the light
    band = (v < 0.07) | (v > 0.93) | (np.abs(u) > 0.94)
    m = np.where(band, m * 0.93, m)
    wire = (v < 0.05) & (np.abs(u) < 0.22)
    m = np.where(wire, m * 1.06, m)
    rgb = np.clip(rgb0[None, None, :] * m[..., None], 0, 1).astype(np.float32)
    loop = np.array([0.93, 0.93, 0.92], np.float32) if label != "black" else np.array([0.15, 0.15, 0.16], np.float32)
    _ear_loops(rgb, alpha, pts, loop, 3)
    return np.dstack([rgb, alpha]), {"color": label, "pleats": n}


def render_kn95(rng: np.random.Generator, color: Any = None) -> tuple[np.ndarray, dict]:
    """KN95/N95 cup: two facets meeting at a vertical centre seam, welded rim, ear loops."""
    label, rgb0 = draw_color(rng, "kn95", color)
    pts, alpha, u, v, grain = _base(rng, _kn95_outline(_template()[0]))
    side = float(rng.uniform(0.06, 0.14)) * (1 if rng.random() < 0.5 else -1)
    m = 1.0 - 0.22 * u**2 - 0.2 * (v - 0.45) ** 2 + side * np.sign(u) * np.minimum(np.abs(u) * 4, 1)
    m = m - 0.25 * np.exp(-((u / 0.012) ** 2)) + 0.08 * np.exp(-(((u - 0.03) / 0.02) ** 2))
    m = m + 0.02 * grain
    a8 = (alpha * 255).astype(np.uint8)
    inset = cv2.erode(a8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (19, 19)))
    rim = (a8 > 127) & (inset < 127)
    dots = ((np.add.outer(np.arange(a8.shape[0]), np.arange(a8.shape[1])) // 5) % 2 == 0)
    inner_rim = rim & (cv2.erode(a8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))) > 127)
    m = np.where(inner_rim & dots, m * 0.86, m)
    rgb = np.clip(rgb0[None, None, :] * m[..., None], 0, 1).astype(np.float32)
    _ear_loops(rgb, alpha, pts, np.array([0.9, 0.9, 0.88], np.float32) if label != "black" else rgb0 * 0.6, 3)
    return np.dstack([rgb, alpha]), {"color": label, "facet_light": round(side, 3)}


def _scarf_outline(pts: np.ndarray) -> np.ndarray:
    """A scarf pulled over nose and mouth: the mask outline grown out and down (past the jaw and the chin, still
    inside the warp's outer keypoint ring), its top edge straight across the nose bridge."""
    o = pts[:_N_OUTLINE].astype(np.float64)
    c = o.mean(0)
    grown = c + 1.18 * (o - c)
    grown[:, 1] = np.where(o[:, 1] > c[1], grown[:, 1] + 0.04 * (o[:, 1].max() - o[:, 1].min()), grown[:, 1])
    top = o[:, 1].min()
    grown[:, 1] = np.maximum(grown[:, 1], top)  # no higher than the mask's own top: the eyes stay clear
    return grown


def render_scarf(rng: np.random.Generator, color: Any = None, pattern: str | None = None) -> tuple[np.ndarray, dict]:
    """A scarf or bandana over nose and mouth: a cloth with a pattern, larger than a mask, no loops, soft folds."""
    rgba, info = render_cloth(rng, color, pattern, outline=_scarf_outline(_template()[0]), loops=False)
    h, w = rgba.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None]
    folds = 1.0 - 0.12 * (np.sin(ys / max(h, 1) * np.pi * 7 + float(rng.uniform(0, np.pi))) > 0.6)
    rgba[..., :3] = np.clip(rgba[..., :3] * folds[..., None], 0, 1)
    return rgba, {k: v for k, v in info.items() if k != "seam"}


def render_cloth(rng: np.random.Generator, color: Any = None, pattern: str | None = None,
                 outline: np.ndarray | None = None, loops: bool = True) -> tuple[np.ndarray, dict]:
    """Cloth mask: colour, fabric pattern and weave, optional centre seam, stitched hem."""
    label, rgb0 = draw_color(rng, "cloth", color)
    pattern = pattern if pattern is not None else pick(rng, list(CLOTH_PATTERNS), [3, 2, 2, 2, 1])
    if pattern not in CLOTH_PATTERNS:
        raise OccluFaceError(f"pattern {pattern!r} is not one of {', '.join(CLOTH_PATTERNS)}")
    pts, alpha, u, v, grain = _base(rng, outline)
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    second = np.clip(1.15 - rgb0 if rgb0.mean() < 0.5 else rgb0 * 0.35, 0, 1)
    second = second * 0.6 + rng.uniform(0, 1, 3).astype(np.float32) * 0.4
    mix = np.zeros((h, w), np.float32)
    if pattern == "stripes":
        period, angle = rng.uniform(14, 30), rng.choice([0.0, np.pi / 4, -np.pi / 4, np.pi / 2])
        t = xs * np.cos(angle) + ys * np.sin(angle)
        mix = (np.sin(2 * np.pi * t / period) > 0.3).astype(np.float32)
    elif pattern == "checks":
        period = rng.uniform(18, 34)
        mix = 0.5 * (np.sin(2 * np.pi * xs / period) > 0.2) + 0.5 * (np.sin(2 * np.pi * ys / period) > 0.2)
    elif pattern == "dots":
        period = rng.uniform(16, 28)
        gx = (xs + (ys // period % 2) * period / 2) % period - period / 2
        gy = ys % period - period / 2
        mix = (gx**2 + gy**2 < (period * 0.22) ** 2).astype(np.float32)
    elif pattern == "camo":
        n = smooth_noise(rng, (h, w), 9)
        n2 = smooth_noise(rng, (h, w), 6)
        mix = np.clip((n > 0.3) * 1.0 + (n2 > 0.6) * 0.5, 0, 1)
    mix = blur(mix.astype(np.float32), 0.7)
    rgb = rgb0[None, None, :] * (1 - mix[..., None]) + second[None, None, :] * mix[..., None]
    weave = 0.03 * np.sin(xs * 2.2) * np.sin(ys * 2.2) + 0.035 * grain
    m = _cylinder(u, v) + weave
    seam = bool(rng.random() < 0.5)
    if seam:
        m = m - 0.18 * np.exp(-((u / 0.01) ** 2))
    a8 = (alpha * 255).astype(np.uint8)
    hem = (a8 > 127) & (cv2.erode(a8, np.ones((13, 13), np.uint8)) < 127) & (cv2.erode(a8, np.ones((9, 9), np.uint8)) > 127)
    stitches = ((xs + ys) // 6 % 2 == 0)
    m = np.where(hem & stitches, m * 0.82, m)
    rgb = np.clip(rgb * m[..., None], 0, 1).astype(np.float32)
    if loops:
        _ear_loops(rgb, alpha, pts, np.clip(rgb0 * 0.8, 0, 1), 5)
    return np.dstack([rgb, alpha]), {"color": label, "pattern": pattern, "seam": seam}


# ----------------------------------------------------------------------------- RGBA pictures

def default_texture_dir() -> Path | None:
    """The bundled ``data/mask_textures`` of a source checkout, when present (never required)."""
    d = REPO_DATA / "mask_textures"
    return d if d.is_dir() else None


def list_textures(directory: str | Path | None = None) -> list[Path]:
    d = Path(directory) if directory is not None else default_texture_dir()
    if d is None:
        return []
    if not d.is_dir():
        raise OccluFaceError(f"{d}: mask texture folder does not exist")
    return sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".webp", ".tif", ".tiff"))


@lru_cache(maxsize=32)
def _load_texture(path: str) -> tuple[np.ndarray, np.ndarray]:
    """RGBA float picture and its template keypoints (outline snapped to the mask body's contour)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if "A" not in im.getbands() and not (im.mode == "P" and "transparency" in im.info):
                raise OccluFaceError(f"{path}: mask texture must have an alpha channel (RGBA PNG), got mode {im.mode}")
            rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
    except OSError as exc:
        raise OccluFaceError(f"{path}: cannot read mask texture ({exc})") from None
    a8 = (rgba[..., 3] > 0.5).astype(np.uint8)
    k = max(3, min(a8.shape) // 10) | 1
    body = cv2.morphologyEx(a8, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(body)
    if n < 2:
        raise OccluFaceError(f"{path}: mask texture has no opaque body to fit to the face")
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    body = labels == big
    ys, xs = np.nonzero(body)
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max(), ys.max()
    tpl, _, _ = _template()
    outline = tpl[:_N_OUTLINE]
    o0, o1 = outline.min(0), outline.max(0)
    norm = (tpl - o0) / (o1 - o0)
    pts = np.array([bx0, by0]) + norm * np.array([bx1 - bx0, by1 - by0])
    centre = np.array([(bx0 + bx1) / 2, (by0 + by1) / 2])
    for i in range(_N_OUTLINE):  # slide each outline point along its ray to the body's edge
        d = pts[i] - centre
        dist = np.linalg.norm(d)
        if dist < 1:
            continue
        steps = np.linspace(0, 2.0, 400)
        ray = centre + steps[:, None] * d
        inside = [
            0 <= int(p[1]) < body.shape[0] and 0 <= int(p[0]) < body.shape[1] and body[int(p[1]), int(p[0])]
            for p in ray
        ]
        last = max((j for j, ok in enumerate(inside) if ok), default=0)
        pts[i] = ray[last]
    c = pts[:_N_OUTLINE].mean(0)
    pts[-_N_OUTLINE:] = pts[:_N_OUTLINE] + _RING * (pts[:_N_OUTLINE] - c)
    return rgba, pts


def render_texture(rng: np.random.Generator, texture: Any = None, textures: Any = None) -> tuple[np.ndarray, np.ndarray, dict]:
    files = [Path(texture)] if texture is not None and Path(texture).is_file() else list_textures(textures)
    if texture is not None and not Path(texture).is_file():
        named = [p for p in files if p.stem == str(texture) or p.name == str(texture)]
        if not named:
            raise OccluFaceError(f"mask texture {texture!r} not found (have: {', '.join(p.name for p in files) or 'none'})")
        files = named
    if not files:
        raise OccluFaceError("no mask textures available: pass textures=DIR (a folder of RGBA mask PNGs)")
    path = pick(rng, files)
    rgba, pts = _load_texture(str(path))
    return rgba, pts, {"texture": path.name}


# ----------------------------------------------------------------------------- putting it on

MASK_PARAMS = {
    "surgical": ("color", "pleats", "shading"),
    "kn95": ("color", "shading"),
    "cloth": ("color", "pattern", "shading"),
    "texture": ("texture", "textures", "shading"),
    "scarf": ("color", "pattern", "shading"),  # a named style (occlusion.styles), not drawn by the "mask" kind
}


def _composite(image: np.ndarray, rgba: np.ndarray, src_pts: np.ndarray, lm: np.ndarray, shading: float, tris) -> np.ndarray:
    """Warp the template onto one face, shade it with the face's light and blend it in (float image)."""
    H, W = image.shape[:2]
    dst = keypoints(lm)
    _, _, em, _ = face_frame(lm)
    premult = rgba.copy()
    premult[..., :3] *= premult[..., 3:4]  # premultiplied: bilinear sampling at the edge stays clean
    patch, (x0, y0) = warp_rgba(premult, src_pts, dst, (H, W), tris)
    if patch.size == 0:
        return image
    ph, pw = patch.shape[:2]
    alpha = np.zeros((H, W), np.float32)
    colour = np.zeros((H, W, 3), np.float32)
    alpha[y0 : y0 + ph, x0 : x0 + pw] = patch[..., 3]
    colour[y0 : y0 + ph, x0 : x0 + pw] = patch[..., :3]
    colour = np.clip(colour / np.maximum(alpha, 1e-4)[..., None] * (alpha > 1e-4)[..., None], 0, 1)
    alpha = np.clip(alpha * (1.0 - eye_guard((H, W), lm, grow=1.1)), 0, 1)
    if shading > 0:
        light = blur(luminance(image), 0.25 * em)
        skin = light[alpha > 0.5]
        ref = float(np.median(skin)) if skin.size else float(light.mean())
        ratio = np.clip(light / max(ref, 1e-3), 0.15, 1.6) ** (0.8 * shading)
        colour = np.clip(colour * ratio[..., None], 0, 1)
    contact = np.clip(blur(alpha, 0.04 * em) - alpha, 0, 1)  # soft shadow where the mask meets the skin
    out = image * (1 - 0.5 * contact[..., None])
    return out * (1 - alpha[..., None]) + colour * alpha[..., None]


def apply_mask(image: np.ndarray, faces: list[np.ndarray], mask_type: str, rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    """Put one mask (same look on every face) on each face of a float RGB image."""
    check_params(mask_type, params, MASK_PARAMS[mask_type])
    shading = unit_range("shading", params.get("shading", 1.0))
    _, _, tris = _template()
    if mask_type == "texture":
        rgba, src_pts, info = render_texture(rng, params.get("texture"), params.get("textures"))
        tris = triangulate(src_pts)
    else:
        src_pts = _template()[0]
        if mask_type == "surgical":
            rgba, info = render_surgical(rng, params.get("color"), params.get("pleats"))
        elif mask_type == "kn95":
            rgba, info = render_kn95(rng, params.get("color"))
        elif mask_type == "scarf":
            rgba, info = render_scarf(rng, params.get("color"), params.get("pattern"))
        else:
            rgba, info = render_cloth(rng, params.get("color"), params.get("pattern"))
    for lm in faces:
        image = _composite(image, rgba, src_pts, lm, shading, tris)
    return image, {**info, "shading": shading}
