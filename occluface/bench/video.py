"""A check-in video the project makes itself from its bundled faces (no download): people walking past a camera.

The bundled LFW people (``data/lfw``, sorted by name): the first ``enrolled`` are enrolled from all their photos
but the last, and walk past with that last photo; the others are strangers (never enrolled). Every other
enrolled person, and one stranger, wears a synthetic surgical mask. Each person crosses the frame once, left to
right or right to left, at a height of their own, under light that slowly dims and brightens; the schedule and
the visible interval of every face are returned as the ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import OccluFaceError
from occluface.settings import REPO_DATA


def _people(data_dir: Path) -> dict[str, list[Path]]:
    from occluface.data.folder import scan_folder

    by_person: dict[str, list[Path]] = {}
    for s in scan_folder(data_dir / "lfw"):
        by_person.setdefault(s.label, []).append(s.path)
    return {k: sorted(v) for k, v in sorted(by_person.items())}


def _sprite(path: Path, masked: bool, seed: int, height: int) -> np.ndarray:
    """Head and shoulders of an LFW photo (250x250, face centred), masked if asked, scaled to ``height``."""
    import cv2

    from occluface.data.occlusion import apply as occlude
    from occluface.recognition.service import read_image

    image = read_image(path)
    if masked:
        image = occlude(image, "surgical", seed=seed)
    crop = image[20:235, 45:205]
    scale = height / crop.shape[0]
    return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)


def make_checkin_video(path: str | Path, *, seconds: float = 60.0, size: tuple[int, int] = (1280, 720),
                       fps: float = 10.0, enrolled: int = 8, strangers: int = 2, seed: int = 0,
                       data_dir: Path | None = None, cast: list[str] | None = None) -> dict[str, Any]:
    """Write the video to ``path`` (MP4) and return its ground truth: who is enrolled (and from which photos),
    and each appearance's person, mask and visible interval in seconds. ``cast``: the people in order (the first
    ``enrolled`` of them enrolled), instead of the bundled people sorted by name."""
    import cv2

    people = _people(Path(data_dir or REPO_DATA))
    names = list(people)
    if cast is not None:
        unknown = [n for n in cast if n not in people]
        if unknown:
            raise OccluFaceError(f"not among the bundled people: {', '.join(unknown)}")
        names = list(cast)
    if len(names) < enrolled + strangers:
        raise OccluFaceError(f"need {enrolled + strangers} bundled people, found {len(names)}")
    if any(len(people[n]) < 2 for n in names[:enrolled]):
        raise OccluFaceError("every enrolled person needs at least two photos (enrolment and walk-past)")
    w, h = size
    rng = np.random.default_rng(seed)
    cast = names[: enrolled + strangers]
    slot = seconds / len(cast)
    appearances = []
    sprites = []
    for i, name in enumerate(cast):
        is_enrolled = i < enrolled
        masked = (i % 2 == 1) if is_enrolled else (i == enrolled)
        sprite = _sprite(people[name][-1], masked, seed + i, int(h * rng.uniform(0.34, 0.42)))
        start = i * slot + 0.3
        crossing = slot * 0.9
        leftward = bool(i % 2)
        y = int(rng.uniform(0.08, 0.92 - sprite.shape[0] / h) * h)
        appearances.append({"name": name, "enrolled": is_enrolled, "masked": masked, "start": start,
                            "end": start + crossing, "leftward": leftward, "y": y})
        sprites.append(sprite)
    # a static scene: a wall gradient with a door and a notice board
    yy, xx = np.mgrid[0:h, 0:w]
    scene = np.stack([90 + 40 * xx / w, 95 + 30 * yy / h, 100 + 20 * (1 - xx / w)], axis=2).astype(np.float32)
    scene[int(h * 0.15):int(h * 0.95), int(w * 0.70):int(w * 0.82)] = (70, 60, 50)
    scene[int(h * 0.25):int(h * 0.45), int(w * 0.10):int(w * 0.22)] = (180, 175, 160)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise OccluFaceError(f"{out}: OpenCV cannot write an MP4 video here")
    frames = int(round(seconds * fps))
    for k in range(frames):
        t = k / fps
        frame = scene.copy()
        for a, sprite in zip(appearances, sprites):
            if not a["start"] <= t < a["end"]:
                continue
            u = (t - a["start"]) / (a["end"] - a["start"])
            sh, sw = sprite.shape[:2]
            x = int((1 - u if a["leftward"] else u) * (w + sw)) - sw
            x0, x1 = max(0, x), min(w, x + sw)
            if x1 > x0:
                frame[a["y"]:a["y"] + sh, x0:x1] = sprite[:, x0 - x:x1 - x]
        light = 0.75 + 0.25 * np.sin(2 * np.pi * t / 20.0)  # the light slowly dims to half and comes back
        frame = np.clip(frame * light, 0, 255).astype(np.uint8)
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return {"path": str(out), "seconds": seconds, "fps": fps, "size": [w, h],
            "enrol": {n: [str(p) for p in people[n][:-1]] for n in cast[:enrolled]},
            "appearances": appearances}


__all__ = ["make_checkin_video"]
