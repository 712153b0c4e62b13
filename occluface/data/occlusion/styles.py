"""The mask-appearance family: named mask styles, split once into styles for tuning and held-out styles.

A matcher must not learn (or be tuned to) what a mask looks like: a method that only fits our own synthetic
masks would then look good on them and fail on the next colour or shape a gate sees. So every style has a
fixed look (type, colour, pattern, pleats; only the fine grain is drawn from the seed), and the family is
split, like the people, into:

* :data:`TUNING_STYLES`: what calibration, threshold choice and any recipe choice may look at;
* :data:`HELDOUT_STYLES`: used only by the held-out benchmark, never while anything is chosen.

The split was written down before any score on it was seen; each family of looks (flat polygon, pleated
surgical, respirator, cloth, picture, scarf, hand) has members on the tuning side, and the held-out side has
the colours at both ends (white, black), a printed pattern, a respirator, a mask picture, a scarf and a hand.
The same style with the same seed on two faces is the *same mask* (the same-mask impostor check relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from occluface.errors import OccluFaceError


@dataclass(frozen=True)
class MaskStyle:
    name: str
    kind: str  # "plain" (flat polygon), an occlusion kind of occluface.data.occlusion ("surgical", ...), or "hand"
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _s(name: str, kind: str, description: str, **params: Any) -> MaskStyle:
    return MaskStyle(name, kind, dict(params), description)


STYLES: dict[str, MaskStyle] = {s.name: s for s in (
    # ---- tuning styles
    _s("plain-grey", "plain", "flat mid-grey polygon over nose and mouth", color=(128, 128, 128)),
    _s("plain-white", "plain", "flat white polygon", color=(236, 236, 236)),
    _s("surgical-light-blue", "surgical", "light-blue pleated surgical mask", color="light-blue", pleats=3),
    _s("surgical-mint", "surgical", "mint pleated surgical mask, 2 pleats", color="mint", pleats=2),
    _s("kn95-white", "kn95", "white KN95 respirator", color="white"),
    _s("cloth-navy", "cloth", "navy cloth mask, plain weave", color="navy", pattern="plain"),
    _s("cloth-red-checks", "cloth", "red checked cloth mask", color="red", pattern="checks"),
    _s("texture-blue", "texture", "the blue mask picture of mask_textures", texture="blue-mask"),
    _s("scarf-olive-camo", "scarf", "olive camouflage scarf over nose and mouth", color="olive", pattern="camo"),
    # ---- held-out styles (evaluation only)
    _s("plain-black", "plain", "flat black polygon", color=(24, 24, 26)),
    _s("plain-light-blue", "plain", "flat light-blue polygon", color=(150, 192, 222)),
    _s("surgical-white", "surgical", "white pleated surgical mask, 4 pleats", color="white", pleats=4),
    _s("kn95-black", "kn95", "black KN95 respirator", color="black"),
    _s("cloth-black", "cloth", "black cloth mask (dark cloth)", color="black", pattern="plain"),
    _s("cloth-beige-dots", "cloth", "beige polka-dot printed cloth mask", color="beige", pattern="dots"),
    _s("texture-red", "texture", "the red mask picture of mask_textures", texture="red-mask"),
    _s("scarf-purple-stripes", "scarf", "purple striped scarf", color="purple", pattern="stripes"),
    _s("hand-mouth", "hand", "a hand held over the mouth"),
)}

TUNING_STYLES: tuple[str, ...] = ("plain-grey", "plain-white", "surgical-light-blue", "surgical-mint", "kn95-white",
                                  "cloth-navy", "cloth-red-checks", "texture-blue", "scarf-olive-camo")
HELDOUT_STYLES: tuple[str, ...] = ("plain-black", "plain-light-blue", "surgical-white", "kn95-black", "cloth-black",
                                   "cloth-beige-dots", "texture-red", "scarf-purple-stripes", "hand-mouth")

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
