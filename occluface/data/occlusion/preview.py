"""The picture in the docs: a grid with one row per face and one column per occlusion kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occluface.settings import REPO_DATA
from occluface.errors import DatasetError, OccluFaceError

#: (column label, kind, fixed parameters) in grid order.
COLUMNS: tuple[tuple[str, str, dict], ...] = (
    ("original", "", {}),
    ("surgical", "surgical", {}),
    ("kn95", "kn95", {}),
    ("cloth", "cloth", {}),
    ("texture", "texture", {}),
    ("dust", "dust", {}),
    ("lowlight", "lowlight", {}),
    ("brim", "partial", {"shape": "brim"}),
    ("hand", "partial", {"shape": "hand"}),
    ("patch", "partial", {"shape": "patch"}),
    ("mixed", "mixed", {}),
)


def bundled_data_dir() -> Path | None:
    d = REPO_DATA
    return d if d.is_dir() else None


def default_faces(src: Path | None = None, limit: int = 4) -> list[Path]:
    """A few faces: the first image of the first identities of ``src``, else a mix of the bundled data
    (a Yale B crop, two LFW photos and Obama's portrait)."""
    from occluface.data.occlusion.synth import list_images

    if src is not None:
        if not Path(src).is_dir():
            raise DatasetError(f"{src}: source folder does not exist")
        # up to 3 candidates per identity: the first one may hold no usable face
        per_identity: dict[Path, list[Path]] = {}
        for f in list_images(Path(src)):
            per_identity.setdefault(f.parent, [])
            if len(per_identity[f.parent]) < 3:
                per_identity[f.parent].append(f)
        return [f for group in per_identity.values() for f in group]
    data = bundled_data_dir()
    if data is None:
        raise DatasetError("no bundled sample faces in this installation: pass a SRC folder of faces")
    picked = []
    yale = sorted((data / "yaleb").glob("*/*A+000E+00.png"))
    picked += yale[:1]
    lfw = sorted((data / "lfw").glob("*/*_0001.jpg"))
    picked += [p for p in lfw if p.parent.name in ("Adam_Sandler", "Abdoulaye_Wade")][:2] or lfw[:2]
    picked += [p for p in (data / "samples").glob("fr_obama.jpg")]
    return picked[:limit]


def _crop_square(image: np.ndarray, lm: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """A square around the face (about twice the landmark spread), resized to ``cell`` pixels."""
    import cv2

    h, w = image.shape[:2]
    lo, hi = lm.min(0), lm.max(0)
    side = int(min(min(h, w), 2.0 * float((hi - lo).max())))
    cx, cy = (lo + hi) / 2
    x0 = int(np.clip(cx - side / 2, 0, w - side))
    y0 = int(np.clip(cy - side / 2 - 0.1 * side, 0, h - side))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    scale = cell / side
    out = cv2.resize(crop, (cell, cell), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return out, (lm - [x0, y0]) * scale


def render_preview(
    out_path: str | Path,
    *,
    seed: int = 0,
    src: str | Path | None = None,
    textures: str | Path | None = None,
    cell: int = 160,
    max_rows: int = 4,
) -> Path:
    """Write the grid PNG (rows = faces, columns = kinds) and return its path."""
    from PIL import Image, ImageDraw, ImageFont

    from occluface.data.images import load_rgb
    from occluface.data.occlusion.core import apply
    from occluface.data.occlusion.faces import find_landmarks
    from occluface.data.occlusion.masks import list_textures

    have_textures = bool(list_textures(textures))
    columns = [c for c in COLUMNS if c[1] != "texture" or have_textures]
    rows, done = [], set()
    for path in default_faces(Path(src) if src is not None else None):
        if path.parent in done or len(rows) >= max_rows:
            continue
        try:
            image = load_rgb(path)
            lm = find_landmarks(image)[0]
        except OccluFaceError:
            continue  # unreadable or faceless: try the identity's next image
        done.add(path.parent)
        r = len(rows)
        face, lm = _crop_square(image, lm, cell)
        cells = []
        for c, (_, kind, params) in enumerate(columns):
            extra = dict(params)
            if kind in ("texture", "mask", "mixed") and textures is not None:
                extra["textures"] = textures
            cells.append(face if not kind else apply(face, kind, seed=seed * 1000 + r * 31 + c, landmarks=lm, **extra))
        rows.append(np.concatenate(cells, axis=1))
    if not rows:
        raise DatasetError("no face found in any preview image")
    header = 22
    grid = Image.new("RGB", (cell * len(columns), header + cell * len(rows)), (255, 255, 255))
    grid.paste(Image.fromarray(np.concatenate(rows, axis=0)), (0, header))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=14)
    for c, (label, _, _) in enumerate(columns):
        tw = draw.textlength(label, font=font)
        draw.text((c * cell + (cell - tw) / 2, 3), label, fill=(0, 0, 0), font=font)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_path)
    return out_path
