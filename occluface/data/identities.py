"""The data protocol: folder-per-identity listing, seeded held-out identities, gallery/probe splits.

Every benchmark, training run and check picks its people here, so a held-out set is the same set wherever it
is computed (`occluface bench accuracy` re-derives exactly the identities a fine-tuning run left out).
Listing is :func:`occluface.data.folder.scan_folder` grouped by identity: one scanner for the whole project.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from occluface.errors import DatasetError

__all__ = ["FRONTAL_LIGHT", "list_identities", "heldout_identities", "split_identity", "light_angles", "light_subset"]

#: Yale B's frontal-light file-name tag (light azimuth 0, elevation 0): the enrolment photo of an identity.
FRONTAL_LIGHT = "P00A+000E+00"
_ANGLES = re.compile(r"A([+-]\d+)E([+-]\d+)")


def list_identities(data: str | Path) -> dict[str, list[Path]]:
    """Identity folder name -> sorted image files, for every sub-folder holding at least one image."""
    from occluface.data.folder import scan_folder

    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected one sub-folder of face images per identity)")
    ids: dict[str, list[Path]] = {}
    for sample in scan_folder(root):
        ids.setdefault(sample.label, []).append(sample.path)
    return ids


def heldout_identities(names: Sequence[str], n: int, seed: int = 0, salt: str = "") -> list[str]:
    """Seeded choice of ``n`` identities (sorted) kept for evaluation only; all of them when n >= len(names).

    Depends only on (seed, salt, the sorted name list), so `occluface bench accuracy` recomputes exactly the
    set the fine-tuning run left out.
    """
    names = sorted(set(str(x) for x in names))
    if n >= len(names):
        return names
    rng = np.random.default_rng([int(seed), *salt.encode("utf-8")])
    return sorted(names[i] for i in rng.choice(len(names), size=int(n), replace=False))


def light_angles(filename: str) -> tuple[int, int] | None:
    """(azimuth, elevation) of the light from a Yale B file name like `yaleB01_P00A+035E+15.png`."""
    m = _ANGLES.search(Path(filename).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def light_subset(filename: str) -> str:
    """Yale B lighting subset 1-5 by the angle between light and camera axis (Lee, Ho & Kriegman 2005).

    Subsets: 1 <= 12 deg, 2 <= 25, 3 <= 50, 4 <= 77, 5 beyond; "?" when the name carries no angles.
    """
    angles = light_angles(filename)
    if angles is None:
        return "?"
    a, e = np.radians(angles)
    theta = float(np.degrees(np.arccos(np.clip(np.cos(a) * np.cos(e), -1.0, 1.0))))
    for subset, limit in enumerate((12, 25, 50, 77), start=1):
        if theta <= limit + 1e-6:
            return str(subset)
    return "5"


def split_identity(name: str, files: Sequence[Path], n_probes: int, seed: int) -> tuple[Path, list[Path]]:
    """(gallery, probes): the frontal-light image, and a seeded sample of up to ``n_probes`` of the rest.

    Without a `P00A+000E+00` file the image with the smallest |azimuth| + |elevation| is the gallery. The
    sample depends only on (seed, identity name), so running fewer identities keeps the same probes.
    """
    files = sorted(Path(f) for f in files)
    if len(files) < 2:
        raise DatasetError(f"{name}: needs at least 2 images (1 gallery + probes), has {len(files)}")
    gallery = next((f for f in files if FRONTAL_LIGHT in f.name), None)
    if gallery is None:
        angled = [(abs(a[0]) + abs(a[1]), f) for f in files if (a := light_angles(f.name)) is not None]
        if not angled:
            raise DatasetError(
                f"{name}: no frontal-light image ({FRONTAL_LIGHT}) and no light angles in the file names"
            )
        gallery = min(angled)[1]
    rest = [f for f in files if f != gallery]
    rng = np.random.default_rng([int(seed), *name.encode("utf-8")])
    take = min(int(n_probes), len(rest))
    idx = np.sort(rng.choice(len(rest), size=take, replace=False))
    return gallery, [rest[i] for i in idx]
