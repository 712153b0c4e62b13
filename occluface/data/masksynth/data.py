"""Training and evaluation data for learned mask synthesis: 144x144 face crops and 144x144 mask pictures.

Faces are cropped the same way whether masked or not, so the critic cannot tell real from composite by
framing: the project's detector finds the main face, a dlib-HOG-style square box is rebuilt from its 5
points (:func:`occluface.data.occlusion.faces.box_from_five`) and a square ``MARGIN`` times that size is
resampled to 144x144. Training crops get a seeded random shift, scale and rotation (the paper augments its
set the same way); test crops are not jittered. Faces stay as turned or tilted as they were.

* real masked faces: ``mask_cls/with_mask`` and ``rwmfd_masked`` (byte-identical copies dropped via
  ``rwmfd_masked_duplicates.tsv``); the bundled sample's ``real_masked`` stands in for the latter;
* unmasked faces: ``mask_cls/without_mask`` and ``lfw_dev`` (bundled sample: ``lfw``), each with 68
  landmarks in crop coordinates (the placement metric and the landmark-overlay baseline need them);
* mask pictures: the RGBA files of ``mask_textures`` plus surgical / KN95 / cloth masks drawn by the
  occlusion pipeline, each mask body stretched onto :data:`CANON_BOX` of a transparent 144x144 canvas
  (the paper's mask pictures are 144x144 with the mask in the middle): the identity warp puts a mask
  roughly over an average face's nose, mouth and chin, and the generator refines from there.

Each source is cropped into its own part file (atomic write), so an interrupted build redoes one source.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from occluface.io import load_npz, save_npz
from occluface.errors import DatasetError, ImageError, OccluFaceError

FACE = 144
MARGIN = 1.45
#: Where the mask body sits on the 144x144 mask canvas (x0, y0, x1, y1), as fractions of the side:
#: the mean bounding box of the landmark mask outline over frontal test crops (measured, see the report).
CANON_BOX = (0.16, 0.41, 0.83, 0.90)
CACHE_VERSION = 1
SOURCES = ("masked:mask_cls", "masked:rwmfd", "unmasked:mask_cls", "unmasked:lfw")
TEST_FRACTION = 0.15


# ----------------------------------------------------------------------------- geometry


def crop_matrix(lm5: np.ndarray, size: int = FACE, margin: float = MARGIN, shift=(0.0, 0.0), scale: float = 1.0,
                angle: float = 0.0) -> np.ndarray:
    """2x3 affine taking image pixels to crop pixels: the HOG-style box of the 5 points, ``margin`` times
    larger, onto a size x size square (``shift`` in crop fractions, ``scale``, ``angle`` in degrees: jitter)."""
    import cv2

    from occluface.data.occlusion.faces import box_from_five

    b = box_from_five(np.asarray(lm5, np.float32))
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    side = float(b[2] - b[0]) * margin / scale
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), size / side)
    m[:, 2] += np.array([size / 2 - cx, size / 2 - cy]) + np.array(shift) * size
    return m


def apply_matrix(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def crop(image: np.ndarray, m: np.ndarray, size: int = FACE) -> np.ndarray:
    import cv2

    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] < 0.7 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def yaw_proxy(lm68: np.ndarray) -> float:
    """Signed head-turn proxy: nose tip offset from the jaw-line centre, in jaw widths (0 = frontal)."""
    lm = np.asarray(lm68, np.float64)
    width = float(lm[16, 0] - lm[0, 0]) or 1.0
    return float((lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2) / width)


def _split(key: str, seed: int) -> str:
    u = int.from_bytes(hashlib.blake2b(f"{seed}|{key}".encode(), digest_size=8).digest(), "big") / 2.0**64
    return "test" if u < TEST_FRACTION else "train"


# ----------------------------------------------------------------------------- listing


def _first_dir(root: Path, *names: str) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def list_sources(root: str | Path, *, lfw: int = 600, seed: int = 0) -> dict[str, list[tuple[Path, str]]]:
    """(path, group) per source; works on shared/data and on the bundled sample (``real_masked``, ``lfw``)."""
    from occluface.data.images import is_image_file

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder not found (pass --data pointing at shared/data or the bundled data/)")
    out: dict[str, list[tuple[Path, str]]] = {s: [] for s in SOURCES}
    for cls, src in (("with_mask", "masked:mask_cls"), ("without_mask", "unmasked:mask_cls")):
        d = root / "mask_cls" / cls
        if d.is_dir():
            out[src] = [(p, f"{cls}:{p.stem.split('_', 1)[-1]}") for p in sorted(d.iterdir()) if is_image_file(p)]
    rw = _first_dir(root, "rwmfd_masked", "real_masked")
    if rw is not None:
        drop: set[str] = set()
        dup = root / "rwmfd_masked_duplicates.tsv"
        if dup.is_file():
            seen: set[str] = set()
            with dup.open(encoding="utf-8") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    if row["group"] in seen:
                        drop.add(row["file"])
                    seen.add(row["group"])
        out["masked:rwmfd"] = [(p, f"rwmfd:{p.relative_to(root).as_posix()}") for p in sorted(rw.rglob("*"))
                               if p.is_file() and is_image_file(p) and p.relative_to(root).as_posix() not in drop]
    lf = _first_dir(root, "lfw_dev", "lfw")
    if lf is not None:
        people = sorted(d for d in lf.iterdir() if d.is_dir())
        files = [(p, f"lfw:{d.name}") for d in people for p in sorted(d.glob("*.jpg"))]
        if lfw and len(files) > lfw:
            keep = sorted(np.random.default_rng(seed + 11).permutation(len(files))[:lfw])
            files = [files[i] for i in keep]
        out["unmasked:lfw"] = files
    if not out["masked:mask_cls"] and not out["masked:rwmfd"]:
        raise DatasetError(f"{root}: no real masked faces (expected mask_cls/with_mask or rwmfd_masked)")
    if not out["unmasked:mask_cls"] and not out["unmasked:lfw"]:
        raise DatasetError(f"{root}: no unmasked faces (expected mask_cls/without_mask or lfw_dev)")
    return out


# ----------------------------------------------------------------------------- cropping


def _part_path(cache: Path, source: str) -> Path:
    return cache.with_name(f"{cache.stem}.part-{source.replace(':', '-')}.npz")


def _save_npz(path: Path, data: dict[str, np.ndarray]) -> None:
    save_npz(path, **data)


def crop_source(root: Path, source: str, files: list[tuple[Path, str]], *, seed: int = 0, jitter: bool = True,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Detect, crop (and for unmasked faces fit 68 landmarks to) every file of one source."""
    from rich.progress import Progress

    from occluface.data.images import load_rgb
    from occluface.data.occlusion.faces import _fit68, box_from_five
    from occluface.faces.detect import create_detector, pick_main_face
    from occluface.faces.landmarks import five_points

    det = create_detector("auto")
    masked = source.startswith("masked")
    acc: dict[str, list] = {k: [] for k in ("images", "lm5", "lm68", "path", "group", "split", "yaw")}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"cropping {source}", total=len(files))
        for i, (path, group) in enumerate(files):
            bar.advance(task)
            try:
                img = load_rgb(path)
            except (ImageError, OccluFaceError):
                continue
            faces = det.detect(img) if float(img.std()) >= 2 else []
            face = pick_main_face(faces, img.shape)
            if face is None or min(face.width, face.height) < 24:
                continue
            lm5 = face.landmarks
            lm68 = None
            if not masked:
                try:
                    lm68 = _fit68(img, box_from_five(lm5))
                except OccluFaceError:
                    continue
                lm5 = five_points(lm68)
            split = _split(group, seed)
            rng = np.random.default_rng([seed, i, len(source)])
            if split == "train" and jitter:
                m = crop_matrix(lm5, shift=rng.uniform(-0.06, 0.06, 2), scale=float(rng.uniform(0.9, 1.1)),
                                angle=float(rng.uniform(-10, 10)))
            else:
                m = crop_matrix(lm5)
            acc["images"].append(crop(img, m))
            acc["lm5"].append(apply_matrix(m, lm5))
            acc["lm68"].append(apply_matrix(m, lm68) if lm68 is not None else np.full((68, 2), np.nan, np.float32))
            acc["path"].append(path.relative_to(root).as_posix())
            acc["group"].append(group)
            acc["split"].append(split)
            acc["yaw"].append(yaw_proxy(lm68) if lm68 is not None else np.nan)
    n = len(acc["images"])
    return {
        "images": np.stack(acc["images"]) if n else np.zeros((0, FACE, FACE, 3), np.uint8),
        "lm5": np.array(acc["lm5"], np.float32).reshape(n, 5, 2),
        "lm68": np.array(acc["lm68"], np.float32).reshape(n, 68, 2),
        "path": np.array(acc["path"], dtype="<U256"),
        "group": np.array(acc["group"], dtype="<U256"),
        "split": np.array(acc["split"], dtype="<U5"),
        "yaw": np.array(acc["yaw"], np.float32),
        "source": np.array([source] * n, dtype="<U32"),
    }


def build_cache(root: str | Path, cache: str | Path, *, seed: int = 0, lfw: int = 600, max_per_source: int | None = None,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Build (or load) the crop cache: ``masked_*`` and ``unmasked_*`` arrays (images, lm5, lm68, path,
    group, split, yaw, source). ``max_per_source`` keeps a seeded subset of each source (small runs)."""
    root, cache = Path(root), Path(cache)
    if cache.is_file():
        data = load_npz(cache, "crop cache")
        if int(data.get("version", -1)) == CACHE_VERSION and int(data.get("seed", -1)) == seed:
            return data
        raise DatasetError(f"{cache}: built by another version or seed; delete it or pass another --cache")
    listing = list_sources(root, lfw=lfw, seed=seed)
    parts = {}
    for source in SOURCES:
        files = listing[source]
        if max_per_source and len(files) > max_per_source:
            keep = sorted(np.random.default_rng(seed + 7).permutation(len(files))[:max_per_source])
            files = [files[i] for i in keep]
        part = _part_path(cache, source)
        if part.is_file():
            with np.load(part, allow_pickle=False) as z:
                parts[source] = {k: z[k] for k in z.files}
            continue
        parts[source] = crop_source(root, source, files, seed=seed, progress=progress)
        _save_npz(part, parts[source])
    data: dict[str, np.ndarray] = {"version": np.array(CACHE_VERSION), "seed": np.array(seed)}
    for kind in ("masked", "unmasked"):
        ps = [parts[s] for s in SOURCES if s.startswith(kind)]
        for key in ps[0]:
            data[f"{kind}_{key}"] = np.concatenate([p[key] for p in ps])
        if len(data[f"{kind}_images"]) == 0:
            raise DatasetError(f"{root}: no {kind} face could be detected and cropped")
    _save_npz(cache, data)
    for source in SOURCES:
        _part_path(cache, source).unlink(missing_ok=True)
    return data


# ----------------------------------------------------------------------------- mask pictures


def place_mask(rgba: np.ndarray, body: tuple[float, float, float, float], size: int = FACE,
               box: tuple[float, float, float, float] = CANON_BOX) -> np.ndarray:
    """Stretch an RGBA picture so its mask body (x0, y0, x1, y1 in its pixels) fills ``box`` of a
    transparent size x size canvas; returns float32 size x size x 4 (straight alpha)."""
    import cv2

    x0, y0, x1, y1 = body
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise OccluFaceError("mask picture has no body to place")
    bx0, by0, bx1, by1 = (v * size for v in box)
    sx, sy = (bx1 - bx0) / (x1 - x0), (by1 - by0) / (y1 - y0)
    m = np.array([[sx, 0, bx0 - sx * x0], [0, sy, by0 - sy * y0]], np.float64)
    rgba = np.asarray(rgba, np.float32)
    premult = np.dstack([rgba[..., :3] * rgba[..., 3:4], rgba[..., 3]])
    out = cv2.warpAffine(premult, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = np.clip(out[..., 3], 0, 1)
    rgb = np.where(a[..., None] > 1e-4, out[..., :3] / np.maximum(a, 1e-4)[..., None], 0)
    return np.dstack([np.clip(rgb, 0, 1), a]).astype(np.float32)


def texture_picture(path: str | Path, size: int = FACE) -> np.ndarray:
    """One RGBA mask PNG as a 144x144 mask picture (its body found as the landmark pipeline finds it)."""
    from occluface.data.occlusion.masks import _load_texture

    rgba, pts = _load_texture(str(path))
    o = pts[:22]
    return place_mask(rgba, (o[:, 0].min(), o[:, 1].min(), o[:, 0].max(), o[:, 1].max()), size)


def drawn_pictures(n: int, seed: int = 0, size: int = FACE) -> list[np.ndarray]:
    """``n`` surgical / KN95 / cloth masks drawn by the occlusion pipeline, as 144x144 mask pictures."""
    from occluface.data.occlusion.masks import _template, render_cloth, render_kn95, render_surgical

    pts = _template()[0][:22]
    body = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    out = []
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = ("surgical", "kn95", "cloth")[i % 3]
        rgba = (render_surgical if kind == "surgical" else render_kn95 if kind == "kn95" else render_cloth)(rng)[0]
        out.append(place_mask(rgba, body, size))
    return out


def mask_pictures(textures: str | Path | None = None, drawn: int = 12, seed: int = 0, size: int = FACE) -> tuple[np.ndarray, list[str]]:
    """(K x 144 x 144 x 4 float32 pictures, names): every texture PNG found plus ``drawn`` drawn masks."""
    from occluface.data.occlusion.masks import list_textures

    files = list_textures(textures)
    pics = [texture_picture(p, size) for p in files]
    names = [p.name for p in files]
    extra = drawn_pictures(drawn, seed, size) if drawn > 0 else []
    pics += extra
    names += [f"drawn-{('surgical', 'kn95', 'cloth')[i % 3]}-{i}" for i in range(len(extra))]
    if not pics:
        raise OccluFaceError("no mask pictures: pass a folder of RGBA mask PNGs or allow drawn masks")
    return np.stack(pics), names


def to_tensor_images(images: np.ndarray) -> Any:
    """N x H x W x C uint8 or float -> N x C x H x W float tensor in 0..1."""
    import torch

    arr = np.asarray(images)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return t.float().div_(255.0) if arr.dtype == np.uint8 else t.float()
