"""Label audit of the mask-classification evaluation faces: the few photos whose folder label is wrong.

The folder a photo sits in is its label, and web-crawled folders are not clean: ``rwmfd_masked`` holds a
bare face and a close-up of a mask with no face, ``mask_cls/with_mask`` a mask pulled under the chin. A
classifier that is right about such a photo is scored as wrong, and one that is wrong is scored as right.

How the audit was made (so that it cannot favour a model): every real crop of the validation, test and
never-seen splits (1,057 faces) was looked at on contact sheets grouped by folder label, with no model
prediction shown, and only clear cases were changed: no mask on a visible face (-> none), a mask that
leaves the nose or the mouth uncovered (-> incorrect, which the 2-class task leaves out as it does the
synthetic incorrect masks), no face at all (-> dropped). Blurred or tiny faces kept their folder label.
Training faces were not audited and keep their folder labels. Reports give the figures on both label sets.

``label_audit.tsv`` (beside this module) lists every change with its reason; it names files, never ships
photos. The crop cache stays as built: the audit is applied when the dataset is loaded.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from occluface.errors import DatasetError

AUDIT_FILE = Path(__file__).with_name("label_audit.tsv")
AUDITED = {"none": 0, "correct": 1, "incorrect": 2, "drop": -1}
EXCLUDED = "excluded"  # split of a dropped face: selected by nothing


def load_audit(path: str | Path = AUDIT_FILE) -> dict[str, tuple[int, str]]:
    """{photo path relative to shared/data: (audited label, or -1 to drop; reason)}; clear error when malformed."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the label audit ({exc})") from None
    out: dict[str, tuple[int, str]] = {}
    for n, row in enumerate(rows, start=2):
        photo, audited, reason = ((row.get(k) or "").strip() for k in ("path", "audited", "reason"))
        if not photo or audited not in AUDITED or not reason:
            raise DatasetError(f"{path}:{n}: needs a path, an audited label ({'/'.join(AUDITED)}) and a reason")
        if photo in out:
            raise DatasetError(f"{path}:{n}: {photo} is listed twice")
        out[photo] = (AUDITED[audited], reason)
    return out


def apply_audit(data: dict[str, np.ndarray], audit: dict[str, tuple[int, str]] | None = None) -> dict[str, np.ndarray]:
    """A copy of the dataset with audited labels; the folder labels and splits stay in ``label_original`` and
    ``split_original``. The real crops of an audited photo's near-duplicate group change with it (a copy of
    a bare face is a bare face); synthetic masks drawn on a photo keep their own labels."""
    audit = load_audit() if audit is None else audit
    out = dict(data)
    label, split = np.array(data["label"], copy=True), np.asarray(data["split"]).astype("<U16")  # room for EXCLUDED
    real = ~np.asarray(data["synthetic"], bool)
    changed = 0
    for photo, (new, _) in audit.items():
        hit = np.asarray(data["path"]) == photo
        if not hit.any():
            continue  # not in this dataset (a --limit build, or a source left out)
        rows = real & np.isin(data["group"], np.unique(data["group"][hit]))
        if new < 0:
            split[rows] = EXCLUDED
        else:
            label[rows] = new
        changed += int(rows.sum())
    out.update(label=label, split=split, label_original=np.asarray(data["label"]),
               split_original=np.asarray(data["split"]), audited_faces=np.array(changed))
    return out


def original_labels(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The dataset with its folder labels back (``data`` itself when it was never audited)."""
    if "label_original" not in data:
        return data
    out = dict(data)
    out.update(label=data["label_original"], split=data["split_original"])
    return out
