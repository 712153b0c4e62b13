"""Thresholds of the mask-routed matcher (`occluface.recognition.routed`), one per path, from training identities.

Why its own calibration: the bare path scores the mean of two networks' cosines and the masked path one
network's cosine to a masked template, so neither the dlib nor the ``occluface_resnet`` threshold fits. Both
are picked at the same target FAR on `lfw_dev` people that ``occluface_resnet`` did not keep for
evaluation (its held-out identities never choose anything): each person's first photo is enrolled (bare +
the synthetic enrolment masks), the others are probes, bare for the bare path and wearing each of the
benchmark's mask kinds for the masked path. Every probe x person pair counts (genuine: same person).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import DatasetError

PROBE_MASKS = ("plain", "surgical", "kn95")
from occluface.recognition.routed import BARE_ID, MASKED_ID  # noqa: E402  (defined with the matcher)


def calibration_people(ids, people: int = 300, seed: int = 0) -> list[str]:
    """The seeded ``people`` of ``ids`` (lfw_dev people with 2+ photos) the routed thresholds are picked on:
    never one of ``occluface_resnet``'s held-out identities."""
    from occluface.models.dlib_finetuned import weights_meta

    held = {n for names in weights_meta()["heldout"].values() for n in names}
    pool = sorted(n for n in ids if n not in held)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=min(people, len(pool)), replace=False).tolist())


def calibrate_routed(data: str | Path, *, people: int = 300, seed: int = 0, target_far: float = 1e-3,
                     progress: bool = True) -> tuple[Any, Any]:
    """(bare-path, masked-path) :class:`~occluface.bench.calibration.Thresholds` from ``data``/lfw_dev."""
    from rich.progress import Progress

    from occluface.bench.accuracy import _lfw_items, _make_chips, _Model
    from occluface.data.identities import list_identities
    from occluface.bench.calibration import thresholds_from_scores
    from occluface.faces.chips import dlib_chip
    from occluface.recognition.routed import ENROL_MASKS, masked_template, path_scores

    folder = Path(data) / "lfw_dev"
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not found (pass --data pointing at shared/data)")
    ids = {n: f for n, f in list_identities(folder).items() if len(f) >= 2}
    names = calibration_people(ids, people, seed)
    if len(names) < 10:
        raise DatasetError(f"{folder}: only {len(names)} people with 2+ photos outside the held-out ones")
    items = _lfw_items(folder, names)
    conditions = ["clean", *PROBE_MASKS]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"calibrating the routed matcher on {len(names)} people", total=len(items))
        g_lab, p_lab, chips = _make_chips(items, {"dlib": lambda img, box: dlib_chip(img, box)}, conditions,
                                          list(PROBE_MASKS), seed + 101, "lfw_dev", bar, task, ENROL_MASKS)
    dlib, tuned = _Model("dlib_resnet", False, "cpu"), _Model("occluface_resnet", False, "cpu")
    emb = {(m.label, c): m.embedder.embed_chips(v) for m in (dlib, tuned) for c, v in chips["dlib"].items()}
    same = np.asarray(p_lab)[:, None] == np.asarray(g_lab)[None, :]
    gallery = (emb[("dlib_resnet", "gallery")], emb[("occluface_resnet", "gallery")],
               masked_template([emb[("occluface_resnet", "gallery")]]
                               + [emb[("occluface_resnet", f"gallery_{e}")] for e in ENROL_MASKS]))

    def scores(condition: str, masked_path: bool) -> np.ndarray:  # every probe on one path, unshifted
        calls = np.full(len(p_lab), masked_path)
        return path_scores(calls, emb[("dlib_resnet", condition)], emb[("occluface_resnet", condition)], *gallery)

    bare = scores("clean", False)
    masked = np.stack([scores(k, True) for k in PROBE_MASKS])
    where = f"{folder}: {len(names)} people outside occluface_resnet's held-out identities (seed {seed})"
    common = {"target_far": target_far, "n_images": len(g_lab) + len(p_lab), "n_identities": len(names)}
    th_bare = thresholds_from_scores(bare[same], bare[~same], model_id=BARE_ID, data=where + ", bare probes", **common)
    th_masked = thresholds_from_scores(masked[:, same], masked[:, ~same], model_id=MASKED_ID,
                                       data=where + f", probes wearing {', '.join(PROBE_MASKS)} masks", **common)
    return th_bare, th_masked
