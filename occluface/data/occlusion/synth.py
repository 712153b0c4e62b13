"""``occluface synth``: occlude a share of a folder-per-identity dataset, same layout out, with a
``synth.csv`` that says what was done to every file (so a result can always be traced back)."""

from __future__ import annotations

import csv
import json
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occluface.errors import DatasetError, ImageError, OccluFaceError

CSV_NAME = "synth.csv"
CSV_FIELDS = ("file", "status", "kind", "params", "reason")


def file_seed(seed: int, rel: str) -> int:
    """Per-file seed from the run seed and the relative path: independent of order and workers."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(rel.encode("utf-8"))]).generate_state(1)[0])


def _save(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    grey = image.ndim == 2 or bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
    pil = Image.fromarray(image[..., 0] if grey and image.ndim == 3 else image)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        pil.save(path, quality=95)
    else:
        pil.save(path)


def _one(task: tuple[str, str, str, str | None, int, dict, bool]) -> dict[str, str]:
    """Process one file (runs in a worker process when ``workers`` > 1)."""
    from occluface.data.images import load_rgb
    from occluface.data.occlusion.core import apply_with_info
    from occluface.data.occlusion.faces import NoFaceError

    src, dst, rel, kind, seed, params, drop_skipped = task
    row = {"file": rel, "status": "", "kind": "", "params": "", "reason": ""}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    if kind is None:
        shutil.copyfile(src, dst)
        row["status"] = "copied"
        return row
    try:
        image = load_rgb(src)
        out, info = apply_with_info(image, kind, seed=seed, **params)
    except NoFaceError as exc:
        row.update(status="skipped", kind=kind, reason=f"{exc}" + ("" if drop_skipped else "; copied unchanged"))
        if not drop_skipped:
            shutil.copyfile(src, dst)
        return row
    except ImageError as exc:
        row.update(status="error", kind=kind, reason=exc.problem)
        return row
    except OccluFaceError:
        raise  # a bad parameter: the same for every file, so stop at once
    _save(out, Path(dst))
    resolved = info.pop("kind")
    row.update(status="occluded", kind=resolved, params=json.dumps({"seed": seed, **info}, sort_keys=True))
    return row


def list_images(src: Path) -> list[Path]:
    from occluface.data.images import is_image_file

    return sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))


def synthesize(
    src: str | Path,
    dst: str | Path,
    kind: str,
    *,
    fraction: float = 1.0,
    seed: int = 0,
    workers: int = 1,
    drop_skipped: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Occlude ``fraction`` of the images under ``src`` with ``kind``, copy the rest, write ``synth.csv``.

    Returns counts per status plus the CSV path. Which files are occluded depends only on ``seed``.
    """
    from occluface.data.occlusion.core import KINDS, PARAMS

    src, dst = Path(src), Path(dst)
    if kind not in KINDS:
        raise OccluFaceError(f"unknown occlusion kind {kind!r}; choose one of: {', '.join(KINDS)}")
    known = {n for names in PARAMS.values() for n in names} if kind == "mixed" else set(PARAMS[kind])
    unknown = sorted(set(params) - known)
    if unknown:
        raise OccluFaceError(f"unknown parameter(s) {', '.join(unknown)} for occlusion kind {kind!r}")
    if params.get("textures") is not None or kind == "texture":  # fail before any file is written
        from occluface.data.occlusion.masks import list_textures

        if not list_textures(params.get("textures")) and kind == "texture" and params.get("texture") is None:
            raise OccluFaceError("kind texture needs RGBA mask pictures: pass --textures DIR")
    if not 0.0 <= fraction <= 1.0:
        raise OccluFaceError(f"--fraction must lie in [0, 1], got {fraction}")
    if not src.is_dir():
        raise DatasetError(f"{src}: source folder does not exist or is not a folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise DatasetError(f"{dst}: output folder must not be the source folder or inside it")
    files = list_images(src)
    if not files:
        raise DatasetError(f"{src}: no images found (looked for .jpg, .png, ... in all sub-folders)")
    n_occ = int(round(fraction * len(files)))
    chosen = set(np.random.default_rng(seed).permutation(len(files))[:n_occ].tolist())
    tasks = []
    for i, f in enumerate(files):
        rel = f.relative_to(src).as_posix()
        tasks.append((str(f), str(dst / rel), rel, kind if i in chosen else None, file_seed(seed, rel), params, drop_skipped))
    dst.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for row in pool.map(_one, tasks, chunksize=8):
                rows.append(row)
                if progress:
                    progress(len(rows), len(tasks))
    else:
        for task in tasks:
            rows.append(_one(task))
            if progress:
                progress(len(rows), len(tasks))
    rows.sort(key=lambda r: r["file"])
    csv_path = dst / CSV_NAME
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("occluded", "copied", "skipped", "error")}
    return {**counts, "total": len(rows), "csv": str(csv_path), "problems": [r for r in rows if r["status"] in ("skipped", "error")]}
