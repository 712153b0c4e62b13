"""Coal dust and soot: what a miner's face looks like at the end of a shift.

Dust settles where the face is exposed and touched: cheeks and forehead most, nose sides and chin
less, the eyes least (blinking and rubbing keep them clean). The effect is built from a weight map
of those regions, multi-scale smudges (blurred noise, soft-thresholded), a general greying and
darkening of the skin, and scattered dark particles -- all scaled by one ``intensity`` (0..1).
"""

from __future__ import annotations

import numpy as np

from occluface.data.occlusion.common import (
    blur,
    check_params,
    eye_guard,
    face_frame,
    face_hull,
    luminance,
    smooth_noise,
    unit_range,
)

DUST_PARAMS = ("intensity", "particles")
COAL = np.array([0.09, 0.085, 0.08], np.float32)


def _gauss(shape, centre, sigma) -> np.ndarray:
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


def dust_weight(shape: tuple[int, int], lm: np.ndarray) -> np.ndarray:
    """Where dust settles on one face, 0..1: cheeks and forehead high, eyes low."""
    _, _, em, down = face_frame(lm)
    hull = blur(face_hull(shape, lm, forehead=0.7), 0.06 * em)
    forehead = lm[17:27].mean(0) - down * 0.35 * em
    cheek_l = (lm[2] + lm[31] + lm[40]) / 3 + down * 0.1 * em
    cheek_r = (lm[14] + lm[35] + lm[47]) / 3 + down * 0.1 * em
    w = (
        1.0 * _gauss(shape, forehead, 0.45 * em)
        + 0.95 * _gauss(shape, cheek_l, 0.33 * em)
        + 0.95 * _gauss(shape, cheek_r, 0.33 * em)
        + 0.45 * _gauss(shape, lm[30], 0.25 * em)
        + 0.4 * _gauss(shape, lm[8] - down * 0.15 * em, 0.3 * em)
        + 0.25
    )
    w = np.clip(w, 0, 1) * hull
    return w * (1 - 0.75 * blur(eye_guard(shape, lm, grow=0.9), 0.05 * em))


def apply_dust(image: np.ndarray, faces: list[np.ndarray], rng: np.random.Generator, params: dict) -> tuple[np.ndarray, dict]:
    """Float RGB in, float RGB out; ``intensity`` 0 returns the image unchanged."""
    check_params("dust", params, DUST_PARAMS)
    intensity = unit_range("intensity", params["intensity"]) if "intensity" in params else round(float(rng.uniform(0.35, 0.9)), 3)
    particles = unit_range("particles", params["particles"]) if "particles" in params else round(float(rng.uniform(0.3, 1.0)), 3)
    info = {"intensity": intensity, "particles": particles}
    if intensity <= 0:
        return image, info
    shape = image.shape[:2]
    out = image.copy()
    for lm in faces:
        _, _, em, _ = face_frame(lm)
        weight = dust_weight(shape, lm)
        coarse = smooth_noise(rng, shape, 0.22 * em)
        fine = smooth_noise(rng, shape, 0.05 * em)
        field = 0.65 * coarse + 0.35 * fine - (1.0 - 2.0 * intensity)  # more dust: smudges merge
        smudge = 1.0 / (1.0 + np.exp(-2.5 * field))
        amount = np.clip(weight * intensity * (0.3 + 0.7 * smudge), 0, 0.95)
        grey = luminance(out)[..., None]
        skin = out * (1 - 0.45 * intensity * weight[..., None]) + grey * 0.45 * intensity * weight[..., None]
        out = skin * (1 - amount[..., None]) + COAL * amount[..., None]
        if particles > 0:
            n = int(particles * intensity * 900 * (em / 60.0) ** 2)
            ys, xs = np.nonzero(weight > 0.2)
            if n and len(xs):
                idx = rng.integers(0, len(xs), n * 3)
                keep = rng.random(len(idx)) < weight[ys[idx], xs[idx]]
                idx = idx[keep][:n]
                specks = np.zeros(shape, np.float32)
                specks[ys[idx], xs[idx]] = rng.uniform(0.4, 1.0, len(idx))
                specks = np.clip(blur(specks, max(0.4, em / 120)) * max(1.0, em / 60), 0, 1) * intensity
                out = out * (1 - specks[..., None]) + COAL * 0.6 * specks[..., None]
    return np.clip(out, 0, 1), info
