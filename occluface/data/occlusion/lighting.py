"""Low light and helmet-lamp conditions in a mine: under-exposure, sensor noise, light falling off
to one side, a warm lamp and its glare spot. Needs no face, so it always works.

Processing order follows the camera: scene light (gradient, lamp glare) -> exposure (gamma, gain)
-> sensor noise (shot noise proportional to signal plus read noise) -> clipping.
"""

from __future__ import annotations

import numpy as np

from occluface.data.occlusion.common import check_params, unit_range

LOWLIGHT_PARAMS = ("gamma", "gain", "noise", "gradient", "angle", "glare", "glare_x", "glare_y", "glare_radius", "warmth")


def _param(params: dict, rng: np.random.Generator, name: str, lo: float, hi: float, draw: tuple[float, float]) -> float:
    if name in params:
        return unit_range(name, params[name], lo, hi)
    return round(float(rng.uniform(*draw)), 3)


def apply_lowlight(image: np.ndarray, rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    """Float RGB in 0..1 in and out. Parameters (drawn from ``rng`` when not given):

    gamma (1..4: >1 crushes shadows), gain (0.05..1: exposure), noise (0..0.2: read-noise std),
    gradient (0..1: how dark the far side gets), angle (degrees, direction the light comes from),
    glare (0..1: lamp spot strength), glare_x / glare_y (0..1: spot centre), glare_radius (0..1 of
    the shorter side), warmth (0..1: orange tint of the lamp).
    """
    check_params("lowlight", params, LOWLIGHT_PARAMS)
    p = {
        "gamma": _param(params, rng, "gamma", 1.0, 4.0, (1.4, 2.4)),
        "gain": _param(params, rng, "gain", 0.05, 1.0, (0.4, 0.8)),
        "noise": _param(params, rng, "noise", 0.0, 0.2, (0.005, 0.03)),
        "gradient": _param(params, rng, "gradient", 0.0, 1.0, (0.3, 0.85)),
        "angle": _param(params, rng, "angle", -360.0, 360.0, (0.0, 360.0)),
        "glare": _param(params, rng, "glare", 0.0, 1.0, (0.0, 0.6)),
        "glare_x": _param(params, rng, "glare_x", 0.0, 1.0, (0.1, 0.9)),
        "glare_y": _param(params, rng, "glare_y", 0.0, 1.0, (0.05, 0.6)),
        "glare_radius": _param(params, rng, "glare_radius", 0.01, 1.0, (0.06, 0.2)),
        "warmth": _param(params, rng, "warmth", 0.0, 1.0, (0.0, 0.6)),
    }
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys, xs = ys / max(h - 1, 1) - 0.5, xs / max(w - 1, 1) - 0.5
    a = np.radians(p["angle"])
    t = np.clip(0.5 - (xs * np.cos(a) + ys * np.sin(a)), 0, 1)  # 0 on the lit side, 1 on the far side
    light = 1.0 - p["gradient"] * (t * t * (3 - 2 * t))
    lamp = np.array([1.0, 1.0 - 0.18 * p["warmth"], 1.0 - 0.42 * p["warmth"]], np.float32)
    x = image.astype(np.float32) * light[..., None] * lamp
    x = np.power(np.clip(x, 0, 1), p["gamma"]) * p["gain"]
    if p["glare"] > 0:
        aspect = w / h
        d2 = ((xs + 0.5 - p["glare_x"]) * aspect) ** 2 + (ys + 0.5 - p["glare_y"]) ** 2
        r = p["glare_radius"] * min(1.0, aspect)
        spot = np.exp(-d2 / (2 * r**2)) + 0.25 * np.exp(-d2 / (2 * (3 * r) ** 2))  # core + bloom
        x = x + (p["glare"] * 1.4 * spot)[..., None] * lamp
    if p["noise"] > 0:
        shot = np.sqrt(np.clip(x, 0, None) * p["noise"] * 0.2)
        x = x + rng.standard_normal(x.shape).astype(np.float32) * (shot + p["noise"])
        x = x + rng.standard_normal((h, w, 1)).astype(np.float32) * p["noise"] * 0.5  # luma-correlated part
    return np.clip(x, 0, 1), p
