"""``occluface synth --kind learned``: put masks on every detected face with a trained warp generator.

Each face found by the project's detector is cropped to 144x144 exactly as in training, the generator
refines the warp of a mask picture from the identity, and the warped mask (RGBA) is mapped back into the
photo by the inverse of the crop transform and alpha-composited there. SRC may be one image (DST = the
output image) or a folder (same layout out, plus ``synth.csv`` like the other kinds).
"""

from __future__ import annotations

import csv
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occluface.data.images import IMAGE_EXTENSIONS
from occluface.errors import CheckpointError, DatasetError, ImageError, OccluFaceError

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "models" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "masksynth_pywgandiv.pt"
PARAMS = ("weights", "texture", "textures", "steps", "detector")


@lru_cache(maxsize=4)
def _generator(path: str):
    from occluface.data.masksynth.generator import load_generator

    return load_generator(path)


def generator(weights: str | Path | None = None):
    """The trained generator (default: the shipped Py-WGAN-div weights), loaded once per process."""
    path = Path(weights) if weights else DEFAULT_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: no mask-synthesis generator there; train one with `occluface train-masksynth "
                              "--ship PATH` or pass -p weights=PATH")
    return _generator(str(path))


def pictures(texture: str | None = None, textures: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Mask pictures to choose from: the named texture, the texture folder, or (no folder) drawn masks."""
    from occluface.data.masksynth.data import drawn_pictures, texture_picture
    from occluface.data.occlusion.masks import list_textures

    files = list_textures(textures)
    if texture is not None:
        named = [p for p in files if p.name == texture or p.stem == texture]
        if Path(texture).is_file():
            named = [Path(texture)]
        if not named:
            raise OccluFaceError(f"mask texture {texture!r} not found (have: {', '.join(p.name for p in files) or 'none'})")
        files = named
    if files:
        return np.stack([texture_picture(p) for p in files]), [p.name for p in files]
    return np.stack(drawn_pictures(6, 0)), [f"drawn-{i}" for i in range(6)]


def mask_faces(image: np.ndarray, gen, picture: np.ndarray, faces: list[Any], steps: int | None = None) -> np.ndarray:
    """Composite ``picture`` (144x144x4 float) warped by ``gen`` onto every face (objects with 5 ``landmarks``)."""
    import cv2
    import torch

    from occluface.data.masksynth.data import FACE, crop, crop_matrix, to_tensor_images
    from occluface.data.masksynth.stn import warp

    out = image.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    steps = int(steps or gen.meta.get("steps") or 2)
    for face in faces:
        m = crop_matrix(np.asarray(face.landmarks, np.float32))
        face_crop = crop(image, m)
        with torch.no_grad():
            p, _ = gen.refine(to_tensor_images(face_crop[None]), to_tensor_images(picture[None]), None, steps)
            rgba = warp(to_tensor_images(picture[None]), p, (FACE, FACE))[0].permute(1, 2, 0).numpy()
        premult = np.dstack([rgba[..., :3] * rgba[..., 3:4], rgba[..., 3]])
        inv = cv2.invertAffineTransform(m)
        back = cv2.warpAffine(premult, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = np.clip(back[..., 3:4], 0, 1)
        out = out * (1 - a) + back[..., :3]  # premultiplied "over"
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def synthesize_learned(src: str | Path, dst: str | Path, kind: str = "learned", *, fraction: float = 1.0, seed: int = 0,
                       workers: int = 1, drop_skipped: bool = False, progress: Callable[[int, int], None] | None = None,
                       **params: Any) -> dict[str, Any]:
    """Learned masks for one image or a folder; returns counts per status, the CSV path and the problems.

    Same call shape as :func:`occluface.data.occlusion.synth.synthesize` (``kind`` must be "learned";
    ``workers`` is accepted and ignored: one generator in one process)."""
    if kind != "learned":
        raise OccluFaceError(f"synthesize_learned does kind 'learned' only, got {kind!r}")
    from occluface.data.images import load_rgb
    from occluface.data.occlusion.synth import CSV_FIELDS, CSV_NAME, _save, file_seed, list_images
    from occluface.faces.detect import create_detector

    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise OccluFaceError(f"unknown parameter(s) {', '.join(unknown)} for kind 'learned'; known: {', '.join(PARAMS)}")
    if not 0.0 <= fraction <= 1.0:
        raise OccluFaceError(f"--fraction must lie in [0, 1], got {fraction}")
    src, dst = Path(src), Path(dst)
    single = src.is_file()
    if single:
        load_rgb(src)  # a clear ImageError for a file that is not an image, before loading any model
        if dst.is_dir() or dst.suffix.lower() not in IMAGE_EXTENSIONS:  # DST names a folder: keep the file name
            dst = dst / src.name
    elif not src.is_dir():
        raise DatasetError(f"{src}: no such image file or folder")
    elif dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise DatasetError(f"{dst}: output folder must not be the source folder or inside it")
    gen = generator(params.get("weights"))
    pics, names = pictures(params.get("texture"), params.get("textures"))
    det = create_detector(str(params.get("detector", "auto")))
    steps = params.get("steps")
    files = [src] if single else list_images(src)
    if not files:
        raise DatasetError(f"{src}: no images found (looked for .jpg, .png, ... in all sub-folders)")
    chosen = set(range(len(files))) if single else \
        set(np.random.default_rng(seed).permutation(len(files))[: int(round(fraction * len(files)))].tolist())
    rows = []
    for i, f in enumerate(files):
        rel = f.name if single else f.relative_to(src).as_posix()
        target = dst if single else dst / rel
        row = {"file": rel, "status": "", "kind": "learned", "params": "", "reason": ""}
        if i not in chosen:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            rows.append(row | {"status": "copied", "kind": ""})
        else:
            try:
                image = load_rgb(f)
            except ImageError as exc:
                if single:
                    raise
                rows.append(row | {"status": "error", "reason": exc.problem})
                continue
            faces = det.detect(image)
            if not faces:
                row.update(status="skipped", reason="no face found" + ("" if drop_skipped else "; copied unchanged"))
                if not drop_skipped:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, target)
                rows.append(row)
            else:
                k = int(np.random.default_rng(file_seed(seed, rel)).integers(len(pics)))
                _save(mask_faces(image, gen, pics[k], faces, steps), target)
                rows.append(row | {"status": "occluded", "params": json.dumps({"seed": seed, "texture": names[k], "faces": len(faces)})})
        if progress:
            progress(len(rows), len(files))
    csv_path = None
    if not single:
        csv_path = dst / CSV_NAME
        dst.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: r["file"]))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("occluded", "copied", "skipped", "error")}
    return {**counts, "total": len(rows), "csv": str(csv_path or dst),
            "problems": [r for r in rows if r["status"] in ("skipped", "error")]}
