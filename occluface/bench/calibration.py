"""Decision thresholds calibrated from labelled faces, stored with the model they belong to.

A similarity threshold means nothing across models (dlib's 128-d space and a 512-d ArcFace space score
the same pair differently), so each model carries its own, picked on data at a target false-accept rate
(FAR) and reported with the FAR/FRR it actually gave on that data. Lookup order: an explicit file, the
user's calibration (``occluface calibrate``), the calibration shipped in the package, else an
explicitly *uncalibrated* fallback that every report flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from occluface.errors import DatasetError, OccluFaceError

from occluface.recognition.thresholds import (  # noqa: F401  (the product's own; re-exported for the lab)
    SHIPPED_DIR,
    UNCALIBRATED_THRESHOLD,
    Thresholds,
    load_thresholds,
    save_thresholds,
    shipped_thresholds_path,
    user_thresholds_path,
)


def calibrate_thresholds(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    model_id: str,
    target_far: float = 1e-3,
    data: str = "",
) -> Thresholds:
    """Threshold = the lowest similarity whose false-accept rate over all impostor pairs is <= target.

    Uses every pair of the given faces (genuine: same label; impostor: different labels).
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray([str(x) for x in labels])
    if emb.ndim != 2 or emb.shape[0] != labels.size:
        raise OccluFaceError(f"calibration needs one embedding per label, got {emb.shape} and {labels.size} labels")
    if not 0 < target_far < 1:
        raise OccluFaceError(f"target FAR must be between 0 and 1, got {target_far}")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims = emb @ emb.T
    iu = np.triu_indices(labels.size, k=1)
    scores = sims[iu]
    same = labels[iu[0]] == labels[iu[1]]
    return thresholds_from_scores(scores[same], scores[~same], model_id=model_id, target_far=target_far,
                                  n_images=int(labels.size), n_identities=int(np.unique(labels).size), data=data)


def thresholds_from_scores(genuine: np.ndarray, impostor: np.ndarray, *, model_id: str, target_far: float = 1e-3,
                           n_images: int = 0, n_identities: int = 0, data: str = "") -> Thresholds:
    """Threshold = the lowest score whose false-accept rate over the impostor scores is <= target, with the
    FAR/FRR it gives there (for matchers whose scores are not one embedding's all-pairs cosines)."""
    genuine, impostor = np.asarray(genuine, np.float32).ravel(), np.asarray(impostor, np.float32).ravel()
    if not 0 < target_far < 1:
        raise OccluFaceError(f"target FAR must be between 0 and 1, got {target_far}")
    if genuine.size < 2 or impostor.size < 2:
        raise OccluFaceError(
            f"calibration needs genuine and impostor pairs: got {genuine.size} genuine and {impostor.size} "
            "impostor pairs; use a folder with several images of several people"
        )
    if impostor.size * target_far < 1:
        raise OccluFaceError(
            f"{impostor.size} impostor pairs cannot measure FAR={target_far:g}; "
            f"use more images or a target FAR of at least {1 / impostor.size:.1e}"
        )
    t = threshold_at_far(impostor, target_far)
    return Thresholds(
        model_id=model_id,
        verify=t,
        identify=t,
        target_far=float(target_far),
        far=float(np.mean(impostor >= t)),
        frr=float(np.mean(genuine < t)),
        n_genuine=int(genuine.size),
        n_impostor=int(impostor.size),
        n_images=int(n_images),
        n_identities=int(n_identities),
        data=data,
        source="calibrated",
    )


def threshold_at_far(impostor: np.ndarray, target_far: float) -> float:
    """Smallest threshold t with mean(impostor >= t) <= target: just above the k-th largest impostor score."""
    imp_sorted = np.sort(np.asarray(impostor, np.float32).ravel())
    k = int(np.floor(target_far * imp_sorted.size))
    return float(np.nextafter(imp_sorted[imp_sorted.size - k - 1], np.float32(np.inf)))


def calibrate_folder(
    data_dir: str | Path,
    *,
    model: str = "dlib_resnet",
    detector: str = "auto",
    target_far: float = 1e-3,
    max_identities: int | None = None,
    seed: int = 0,
    exclude: Iterable[str] = (),
    progress: bool = True,
) -> tuple[Thresholds, list[tuple[str, str]]]:
    """Detect, embed and calibrate on a folder-per-identity data set; returns the skipped images too.

    ``exclude`` names identities to leave out (e.g. a model's evaluation identities, which must not pick its
    threshold either); they are dropped before the seeded ``max_identities`` draw."""
    import random

    from rich.progress import Progress

    from occluface.data.folder import scan_folder
    from occluface.faces.detect import create_detector, pick_main_face
    from occluface.faces.embed import FaceEmbedder
    from occluface.recognition.service import read_image

    samples = scan_folder(data_dir)
    excluded = set(exclude)
    samples = [s for s in samples if s.label not in excluded]
    if not samples:
        raise DatasetError(f"{data_dir}: no identities left after excluding {len(excluded)}")
    identities = sorted({s.label for s in samples})
    if max_identities and len(identities) > max_identities:
        identities = sorted(random.Random(seed).sample(identities, max_identities))
        keep = set(identities)
        samples = [s for s in samples if s.label in keep]
    det = create_detector(detector)
    embedder = FaceEmbedder(model)
    chips, labels, skipped = [], [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("detecting faces", total=len(samples))
        for s in samples:
            bar.advance(task)
            try:
                image = read_image(s.path)
            except OccluFaceError as exc:
                skipped.append((str(s.path), str(exc)))
                continue
            face = pick_main_face(det.detect(image), image.shape)
            if face is None:
                skipped.append((str(s.path), "no face found"))
                continue
            chips.append(embedder.chip(image, face.box, face.landmarks))
            labels.append(s.label)
    emb = embedder.embed_chips(chips)
    where = str(data_dir) + (f" without {len(excluded)} excluded identities" if excluded else "")
    th = calibrate_thresholds(emb, labels, model_id=model, target_far=target_far, data=where)
    return th, skipped
