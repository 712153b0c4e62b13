"""Random partial occlusion for robustness training: a helmet brim over the forehead and brows, a
hand over part of the face, or a random rectangular patch (the only one that needs no face).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from occluface.data.occlusion.common import (
    blur,
    check_params,
    draw_color,
    face_frame,
    luminance,
    palette,
    parse_color,
    pick,
    smooth_noise,
    soft_polygon,
    unit_range,
)
from occluface.errors import OccluFaceError

PARTIAL_SHAPES = ("brim", "hand", "patch")
PARTIAL_PARAMS = ("shape", "color", "drop", "area", "aspect", "fill", "position")
HELMET_COLORS = palette("helmet")
HAND_POSITIONS = ("mouth", "chin", "left-cheek", "right-cheek", "eye")


def _brim(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    label, colour = draw_color(rng, "helmet", params.get("color"))
    drop = unit_range("drop", params["drop"]) if "drop" in params else round(float(rng.uniform(0.2, 0.85)), 3)
    h, w = image.shape[:2]
    _, _, em, down = face_frame(lm)
    brow_top = lm[17:27] - down * 0.12 * em
    gap_l = float(np.dot(lm[37:39].mean(0) - brow_top[:5].mean(0), down))
    gap_r = float(np.dot(lm[43:45].mean(0) - brow_top[5:].mean(0), down))
    gaps = np.array([gap_l] * 5 + [gap_r] * 5)[:, None]
    edge = brow_top + drop * (gaps + 0.05 * em) * down  # 0: just above the brows, 1: onto the eyelids
    across = np.array([down[1], -down[0]])  # image-left to image-right along the face
    half = 0.5 * float(np.linalg.norm(lm[16] - lm[0]))
    left = edge[0] - across * 0.35 * half + down * 0.22 * em
    right = edge[-1] + across * 0.35 * half + down * 0.22 * em
    curve = np.concatenate([[left], edge, [right]])
    # a brim is a smooth arc: fit a parabola to the brow-following points in the face's own frame
    s_coord, d_coord = curve @ across, curve @ down
    coef = np.polyfit(s_coord, d_coord, 2)
    s_new = np.linspace(s_coord.min(), s_coord.max(), 60)
    smooth = np.outer(s_new, across) + np.outer(np.polyval(coef, s_new), down)
    # the shell: a dome over the brim, as wide as the brim and about 1.6 eye-mouth units high
    mid = (smooth[0] + smooth[-1]) / 2
    radius = float(np.linalg.norm(smooth[-1] - smooth[0])) / 2
    theta = np.linspace(0, np.pi, 40)
    dome = mid + np.outer(np.cos(theta), across) * radius * 0.97 - np.outer(np.sin(theta), down) * 1.4 * em
    poly = np.concatenate([smooth, dome])
    alpha = blur(soft_polygon((h, w), poly), 0.01 * em)
    # shell shading: darker away from the brim edge, bright lip along the edge, a specular streak
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = ((xs - smooth[:, 0].mean()) * down[0] + (ys - smooth[:, 1].mean()) * down[1]) / em
    shade = 0.75 + 0.25 * np.clip(1 + dist / 0.8, 0, 1)
    lip = np.exp(-((dist + 0.04) / 0.05) ** 2) * 0.25
    streak = 0.3 * np.exp(-((xs - (lm[27, 0] + rng.uniform(-0.4, 0.4) * em)) / (0.25 * em)) ** 2) * np.clip(-dist / 0.5, 0, 1)
    helmet = np.clip(colour * (shade + lip + streak)[..., None], 0, 1)
    helmet = helmet * (0.9 + 0.1 * blur(luminance(image), 0.3 * em)[..., None] / max(float(luminance(image).mean()), 1e-3))
    helmet = np.clip(helmet, 0, 1)
    shadow = np.clip(blur(alpha, 0.25 * em) - alpha, 0, 1)  # the brim shades the face just below it
    below = image * (1 - 0.7 * shadow[..., None])
    out = below * (1 - alpha[..., None]) + helmet * alpha[..., None]
    return out, {"shape": "brim", "color": label, "drop": drop}


def _hand(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    position = params.get("position", pick(rng, list(HAND_POSITIONS), [3, 2, 2, 2, 1]))
    if position not in HAND_POSITIONS:
        raise OccluFaceError(f"position {position!r} is not one of {', '.join(HAND_POSITIONS)}")
    h, w = image.shape[:2]
    _, _, em, down = face_frame(lm)
    anchors = {
        "mouth": (lm[51] + lm[57]) / 2,
        "chin": lm[8] - down * 0.2 * em,
        "left-cheek": (lm[2] + lm[31]) / 2,
        "right-cheek": (lm[14] + lm[35]) / 2,
        "eye": lm[36:42].mean(0) if rng.random() < 0.5 else lm[42:48].mean(0),
    }
    centre = anchors[position] + rng.normal(0, 0.08, 2) * em
    if "color" in params:
        label, skin = parse_color("color", params["color"], {})
    else:  # the person's own skin tone, sampled from the cheeks
        pts = np.concatenate([(lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2, lm[29]]).reshape(-1, 2).astype(int)
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        skin = np.median(blur(image, 0.05 * em)[pts[:, 1], pts[:, 0]], axis=0) * rng.uniform(0.9, 1.1)
        label = "skin"
    scale = em * float(rng.uniform(0.8, 1.1))
    angle = float(rng.uniform(-np.pi, np.pi))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def place(p):
        return centre + (np.asarray(p, float) * scale) @ rot.T

    palm = np.zeros((h, w), np.uint8)
    c = place((0, 0.35))
    axes = (int(0.48 * scale * 16), int(0.55 * scale * 16))
    cv2.ellipse(palm, tuple(int(v * 16) for v in c), axes, np.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, 4)
    layers = [palm.astype(np.float32) / 255]
    fingers = [(-0.33, 0.95, 0.2), (-0.11, 1.1, 0.22), (0.11, 1.05, 0.22), (0.32, 0.85, 0.19)]
    for fx, length, width in fingers:
        f = np.zeros((h, w), np.uint8)
        a, b = place((fx, 0.0)), place((fx * 1.1, -length))
        cv2.line(f, tuple(int(v * 16) for v in a), tuple(int(v * 16) for v in b), 255, max(1, int(width * scale)), cv2.LINE_AA, 4)
        layers.append(f.astype(np.float32) / 255)
    thumb = np.zeros((h, w), np.uint8)
    side = 1 if rng.random() < 0.5 else -1
    a, b = place((side * 0.35, 0.55)), place((side * 0.85, -0.05))
    cv2.line(thumb, tuple(int(v * 16) for v in a), tuple(int(v * 16) for v in b), 255, max(1, int(0.2 * scale)), cv2.LINE_AA, 4)
    layers.append(thumb.astype(np.float32) / 255)
    out = image.copy()
    light = blur(luminance(image), 0.3 * em)  # the hand is lit like the face it is in front of
    ref = float(np.median(light[np.clip(lm[:, 1].astype(int), 0, h - 1), np.clip(lm[:, 0].astype(int), 0, w - 1)]))
    lit = np.clip(light / max(ref, 1e-3), 0.3, 1.4) ** 0.6
    grain = 1 + 0.03 * rng.standard_normal((h, w)).astype(np.float32)
    for layer in layers:  # each part shaded round its own edge so fingers read as separate
        core = blur(layer, 0.06 * scale)
        tone = skin * ((0.7 + 0.35 * np.clip(core, 0, 1)) * lit * grain)[..., None]
        out = out * (1 - layer[..., None]) + np.clip(tone, 0, 1) * layer[..., None]
    return out, {"shape": "hand", "position": position, "color": label}


def _patch(image: np.ndarray, rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    area = unit_range("area", params["area"], 0.01, 0.9) if "area" in params else round(float(rng.uniform(0.08, 0.25)), 3)
    aspect = unit_range("aspect", params["aspect"], 0.1, 10) if "aspect" in params else round(float(np.exp(rng.uniform(-0.7, 0.7))), 3)
    fill = params.get("fill", pick(rng, ["solid", "noise"]))
    if fill not in ("solid", "noise"):
        raise OccluFaceError(f"fill {fill!r} is not 'solid' or 'noise'")
    h, w = image.shape[:2]
    ph = int(round(min(h, np.sqrt(area * h * w / aspect))))
    pw = int(round(min(w, ph * aspect)))
    ph, pw = max(ph, 1), max(pw, 1)
    y0 = int(rng.integers(0, h - ph + 1))
    x0 = int(rng.integers(0, w - pw + 1))
    out = image.copy()
    if "color" in params:
        label, colour = parse_color("color", params["color"], {})
    else:
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        label = "#%02x%02x%02x" % tuple(int(c * 255) for c in colour)
    if fill == "solid":
        out[y0 : y0 + ph, x0 : x0 + pw] = colour
    else:
        noise = smooth_noise(rng, (ph, pw), 1.5)[..., None] * 0.2 + rng.uniform(-0.1, 0.1, (ph, pw, 3))
        out[y0 : y0 + ph, x0 : x0 + pw] = np.clip(colour + noise, 0, 1)
    return out, {"shape": "patch", "area": area, "aspect": aspect, "fill": fill, "color": label, "box": [x0, y0, x0 + pw, y0 + ph]}


def apply_partial(
    image: np.ndarray, faces_fn: Callable[[], list[np.ndarray]], rng: np.random.Generator, params: dict
) -> tuple[np.ndarray, dict]:
    """Float RGB in and out; ``faces_fn`` is only called for the face-anchored shapes."""
    check_params("partial", params, PARTIAL_PARAMS)
    shape = params.get("shape", pick(rng, list(PARTIAL_SHAPES), [4, 3.5, 2.5]))
    if shape not in PARTIAL_SHAPES:
        raise OccluFaceError(f"partial shape {shape!r} is not one of {', '.join(PARTIAL_SHAPES)}")
    rest = {k: v for k, v in params.items() if k != "shape"}
    if shape == "patch":
        return _patch(image, rng, rest)
    faces = faces_fn()
    info: dict = {}
    for lm in faces:
        image, info = (_brim if shape == "brim" else _hand)(image, lm, rng, rest)
    return image, info
