"""Two checks of a mask classifier outside its data splits, used to choose between weight files.

* **Grad-CAM on the mask**: on every bundled ``data/lfw`` photo wearing a synthetic surgical, KN95 or cloth
  mask (in turn), the share of the "masked" class's Grad-CAM heat that falls inside the mask region (the
  explanations are only useful above one half; the mask covers about 30 % of the crop).
* **Harsh light** (Yale B): on the routing-check people of :func:`occluface.maskcheck.data.yaleb_training_people`
  (never trained on by any classifier, never one of the held-out evaluation identities), how many bare faces,
  faces wearing each benchmark mask, dusty and low-light faces are called masked. A bare face called masked
  sends the routed matcher down its masked path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occluface.settings import REPO_DATA
from occluface.errors import DatasetError

CAM_MASKS = ("surgical", "kn95", "cloth")
LIGHT_CONDITIONS = ("clean", "plain", "surgical", "kn95", "dust", "lowlight")


def gradcam_on_mask(model: Any, photos_dir: str | Path = REPO_DATA / "lfw", detector: str = "auto") -> dict[str, Any]:
    """Mean share of the "masked" Grad-CAM heat inside the synthetic mask, over every photo under ``photos_dir``."""
    import cv2

    from occluface.data.images import load_rgb
    from occluface.data.occlusion import apply, mask_region
    from occluface.data.occlusion.faces import _fit68, box_from_five
    from occluface.faces.align import align_face, similarity_matrix
    from occluface.faces.detect import create_detector
    from occluface.maskcheck.cam import gradcam, heat_fraction
    from occluface.maskcheck.data import main_face

    photos = sorted(Path(photos_dir).glob("*/*.jpg"))
    if not photos:
        raise DatasetError(f"{photos_dir}: no person folders with .jpg photos")
    det, size = create_detector(detector), model.input_size
    shares = []
    for i, path in enumerate(photos):
        img = load_rgb(path)
        face = main_face(det, img)
        if face is None:
            continue
        lm = _fit68(img, box_from_five(face.landmarks))
        crop = align_face(apply(img, CAM_MASKS[i % len(CAM_MASKS)], seed=i, landmarks=lm), face.landmarks, size)
        region = cv2.warpAffine(mask_region(img.shape, lm).astype(np.uint8), similarity_matrix(face.landmarks, size),
                                (size, size), flags=cv2.INTER_NEAREST) > 0
        shares.append(heat_fraction(gradcam(model, crop, target=model.class_names.index("masked")), region))
    return {"faces": len(shares), "share_on_mask": float(np.mean(shares)) if shares else None}


def harsh_light(model: Any, data: str | Path, probes_per_identity: int = 20, seed: int = 0) -> dict[str, Any]:
    """Share of the Yale B routing-check faces called masked, per condition (clean + occlusions)."""
    from occluface.data.images import load_rgb
    from occluface.bench.accuracy import _yaleb_items
    from occluface.data.occlusion.core import occlude
    from occluface.faces.align import align_face
    from occluface.faces.landmarks import five_points, landmarks68
    from occluface.maskcheck.data import yaleb_training_people
    from occluface.maskcheck.model import predict_proba
    from occluface.data.boxes import face_box

    root = Path(data)
    _, check = yaleb_training_people(root)
    if not check:
        raise DatasetError(f"{root / 'yaleb'}: no Yale B people to check")
    items = _yaleb_items(root / "yaleb", check, probes_per_identity, seed)
    crops: dict[str, list[np.ndarray]] = {c: [] for c in LIGHT_CONDITIONS}
    for i, (_, path, _) in enumerate(items):
        img = load_rgb(path)
        box = face_box(img, "yaleb")
        lm = landmarks68(img, box)
        occ_seed = int(np.random.SeedSequence([seed, 8, i]).generate_state(1)[0])
        for c in LIGHT_CONDITIONS:
            im = img if c == "clean" else occlude(img, c, seed=occ_seed, landmarks=lm)
            crops[c].append(align_face(im, five_points(landmarks68(im, box)), model.input_size))
    called = {c: float((predict_proba(model, np.stack(v)).argmax(1) >= 1).mean()) for c, v in crops.items()}
    return {"people": check, "faces_per_condition": len(items), "called_masked": called}


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown table of both checks for each weight file."""
    head = ["weights", "Grad-CAM on mask"] + [f"Yale B {c} called masked" for c in LIGHT_CONDITIONS]
    lines = ["# Mask-classifier checks outside the data splits", "", __doc__.split("\n\n", 1)[1].strip(), "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cam = r["gradcam"]["share_on_mask"]
        light = r.get("harsh_light", {}).get("called_masked", {})
        cells = [f"`{r['weights']}`", "n/a" if cam is None else f"{100 * cam:.1f} % ({r['gradcam']['faces']} faces)"]
        cells += [f"{100 * light[c]:.1f} %" if c in light else "n/a" for c in LIGHT_CONDITIONS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
