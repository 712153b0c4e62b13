"""Align a whole folder-per-identity dataset: detect, keep the main face, warp to the ArcFace template.

Built for big folders and interruptions: work is spread over processes, each output is written to
a temporary file and renamed (a crash never leaves half an image), and a re-run skips outputs that
exist. Images without a usable face are listed in ``DST/skipped.csv`` (path, reason), and are not
retried on a re-run unless asked, so resuming a finished run is instant.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from occluface.io import write_bytes
from occluface.errors import DatasetError, OccluFaceError

SKIPPED_CSV = "skipped.csv"


@dataclass
class AlignSummary:
    total: int = 0
    aligned: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative source path, reason)


def plan(src: Path, dst: Path) -> list[tuple[str, str]]:
    """(source relative path, output relative path) for every image under ``src``.

    Outputs keep the folder layout and are PNG (lossless); when two sources share a stem
    (``a.jpg`` and ``a.png``) the extension is kept in the name so neither overwrites the other.
    """
    from occluface.data.images import is_image_file

    files = sorted(
        p.relative_to(src) for p in src.rglob("*")
        if p.is_file() and is_image_file(p) and not _inside(p, dst)
    )
    stems: dict[Path, int] = {}
    for rel in files:
        stems[rel.with_suffix("")] = stems.get(rel.with_suffix(""), 0) + 1
    out = []
    for rel in files:
        target = rel.with_suffix(".png") if stems[rel.with_suffix("")] == 1 else rel.with_name(rel.name + ".png")
        out.append((rel.as_posix(), target.as_posix()))
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def read_skipped(dst: Path) -> dict[str, str]:
    path = dst / SKIPPED_CSV
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["path"]: row["reason"] for row in csv.DictReader(fh) if row.get("path")}


def write_skipped(dst: Path, skipped: list[tuple[str, str]]) -> Path:
    path = dst / SKIPPED_CSV
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(skipped))
    _atomic_write(path, buf.getvalue().encode())
    return path


def _atomic_write(path: Path, payload: bytes) -> None:
    write_bytes(path, payload)


# ----------------------------------------------------------------------------- per-image work

_WORKER: dict = {}


def _init_worker(detector: str, size: int, threads: int | None) -> None:
    from occluface.faces.detect import create_detector
    from occluface.runtime import limit_threads

    if threads:
        limit_threads(threads)

    _WORKER["detector"] = create_detector(detector)
    _WORKER["size"] = size


def align_one(src_file: str, dst_file: str) -> str | None:
    """Align one image into ``dst_file``; returns None on success or the reason it was skipped."""
    import numpy as np
    from PIL import Image

    from occluface.data.images import load_rgb
    from occluface.faces.align import align_face
    from occluface.faces.detect import pick_main_face

    try:
        image = load_rgb(src_file)
    except OccluFaceError as exc:
        return f"unreadable image: {exc}"
    try:
        faces = _WORKER["detector"].detect(image)
        face = pick_main_face(faces, image.shape)
        if face is None:
            return "no face"
        crop = align_face(image, face.landmarks, _WORKER["size"])
    except OccluFaceError as exc:
        return f"alignment failed: {exc}"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(buf, format="PNG")
    _atomic_write(Path(dst_file), buf.getvalue())
    return None


def _task(args: tuple[str, str]) -> str | None:
    return align_one(*args)


def align_folder(
    src: str | Path,
    dst: str | Path,
    detector: str = "auto",
    size: int = 112,
    workers: int = 1,
    retry_skipped: bool = False,
    progress: bool = True,
) -> AlignSummary:
    """Align every image under ``src`` into ``dst`` (same sub-folders); see the module docstring."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from occluface.faces.detect import list_detectors

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DatasetError(f"{src}: source folder not found")
    if src.resolve() == dst.resolve():
        raise DatasetError(f"{dst}: destination must differ from the source folder")
    if not isinstance(size, int) or size < 16:
        raise OccluFaceError(f"--size must be at least 16 pixels, got {size}")
    if workers < 1:
        raise OccluFaceError(f"--workers must be at least 1, got {workers}")
    if detector.strip().lower() not in list_detectors():  # fail before any work; load models only if needed
        raise OccluFaceError(f"unknown face detector {detector!r}; choose one of: {', '.join(list_detectors())}")
    jobs = plan(src, dst)
    if not jobs:
        raise DatasetError(f"{src}: no images found (expected SRC/<identity>/<image files>)")

    summary = AlignSummary(total=len(jobs))
    previous = {} if retry_skipped else read_skipped(dst)
    todo = []
    for rel_src, rel_dst in jobs:
        if (dst / rel_dst).exists():
            summary.existing += 1
        elif rel_src in previous:
            summary.skipped.append((rel_src, previous[rel_src]))
        else:
            todo.append((rel_src, rel_dst))
    dst.mkdir(parents=True, exist_ok=True)

    columns = (TextColumn("[bold]aligning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    args = [(str(src / s), str(dst / d)) for s, d in todo]
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("align", total=len(jobs), completed=len(jobs) - len(todo))
            if workers == 1 or len(todo) < 2:
                _init_worker(detector, size, None)
                results = map(_task, args)
                for (rel_src, _), reason in zip(todo, results):
                    _record(summary, rel_src, reason)
                    bar.advance(task)
            else:
                # spawn: forking a process that already runs torch/OpenMP threads can deadlock.
                with ProcessPoolExecutor(
                    max_workers=workers, mp_context=get_context("spawn"),
                    initializer=_init_worker, initargs=(detector, size, 1),
                ) as pool:
                    for (rel_src, _), reason in zip(todo, pool.map(_task, args, chunksize=4)):
                        _record(summary, rel_src, reason)
                        bar.advance(task)
    finally:
        # Even when interrupted, keep what is known so far about skipped images.
        write_skipped(dst, summary.skipped)
    return summary


def _record(summary: AlignSummary, rel_src: str, reason: str | None) -> None:
    if reason is None:
        summary.aligned += 1
    else:
        summary.skipped.append((rel_src, reason))
