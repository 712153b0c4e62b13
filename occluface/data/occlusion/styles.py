"""The mask-appearance family: named mask styles, split once into styles for tuning and held-out styles.

A matcher must not learn (or be tuned to) what a mask looks like: a method that only fits our own synthetic
masks would then look good on them and fail on the next colour or shape a gate sees. So every style has a
fixed look (type, colour, pattern, pleats; only the fine grain is drawn from the seed), and the family is
split, like the people, into:

The catalogue is ``styles.json`` beside this file. Its two lists:

* :data:`TUNING_STYLES`: what calibration, threshold choice and any recipe choice may look at;
* :data:`HELDOUT_STYLES`: used only by the held-out benchmark, never while anything is chosen.

The split was written down before any score on it was seen; each family of looks (flat polygon, pleated
surgical, respirator, cloth, picture, scarf, hand) has members on the tuning side, and the held-out side has
the colours at both ends (white, black), a printed pattern, a respirator, a mask picture, a scarf and a hand.
The same style with the same seed on two faces is the *same mask* (the same-mask impostor check relies on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import OccluFaceError


@dataclass(frozen=True)
class MaskStyle:
    name: str
    kind: str  # "plain" (flat polygon), an occlusion kind of occluface.data.occlusion ("surgical", ...), or "hand"
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


#: The catalogue: every style's look and its side of the split, as data (shipped with the package).
STYLES_FILE = Path(__file__).with_name("styles.json")


def _load() -> tuple[dict[str, MaskStyle], tuple[str, ...], tuple[str, ...]]:
    table = json.loads(STYLES_FILE.read_text())
    styles: dict[str, MaskStyle] = {}
    splits = {}
    for split in ("tuning", "heldout"):
        for e in table[split]:
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in e.get("params", {}).items()}
            styles[e["name"]] = MaskStyle(e["name"], e["kind"], params, e.get("description", ""))
        splits[split] = tuple(e["name"] for e in table[split])
    return styles, splits["tuning"], splits["heldout"]


STYLES, TUNING_STYLES, HELDOUT_STYLES = _load()

assert not set(TUNING_STYLES) & set(HELDOUT_STYLES) and set(TUNING_STYLES) | set(HELDOUT_STYLES) == set(STYLES)


def style(name: str) -> MaskStyle:
    if name not in STYLES:
        raise OccluFaceError(f"unknown mask style {name!r}; known: {', '.join(STYLES)}")
    return STYLES[name]


def check_styles(names, split: str | None = None) -> list[str]:
    """Validate style names (``split`` "tuning"/"heldout" also checks they belong to it)."""
    allowed = {"tuning": TUNING_STYLES, "heldout": HELDOUT_STYLES, None: tuple(STYLES)}[split]
    out = []
    for n in names:
        style(n)
        if n not in allowed:
            raise OccluFaceError(f"mask style {n!r} is not a {split} style (those are: {', '.join(allowed)})")
        out.append(n)
    return out


def wear(image: np.ndarray, name: str, landmarks68: np.ndarray, seed: int = 0) -> np.ndarray:
    """``image`` (HxWx3 uint8) with the face of ``landmarks68`` wearing style ``name``; same seed, same mask."""
    st = style(name)
    lm = np.asarray(landmarks68, np.float64)
    if lm.shape != (68, 2):
        raise OccluFaceError(f"mask style {name}: needs 68x2 landmarks, got shape {lm.shape}")
    if st.kind == "plain":
        from occluface.data.occlusion.plain import apply_plain_mask

        return apply_plain_mask(image, lm, st.params["color"])
    from occluface.data.occlusion.core import apply

    if st.kind == "hand":
        return apply(image, "partial", seed=seed, landmarks=lm, shape="hand", position="mouth")
    return apply(image, st.kind, seed=seed, landmarks=lm, **st.params)
