"""Where the data lives: one setting instead of a default in every command.

* :data:`REPO_DATA` -- the small bundled sample in the checkout (``data/``: demo, tests, quick benchmarks);
* :func:`shared_data` -- the full datasets: ``$OCCLUFACE_DATA`` when set, else ``../shared/data`` (relative to
  the working directory, where the project's machines keep them). Every ``--data`` default of the CLI is a
  sub-folder of it, so ``OCCLUFACE_DATA=/mnt/faces occluface bench openset`` moves them all at once.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout's bundled sample data (never shipped in a wheel: the photo licences forbid it).
REPO_DATA = Path(__file__).resolve().parents[1] / "data"

#: The environment variable naming the full data folder.
DATA_ENV = "OCCLUFACE_DATA"
DEFAULT_SHARED = Path("../shared/data")


def shared_data(*parts: str) -> Path:
    """The full data folder (``$OCCLUFACE_DATA`` or ``../shared/data``), or a sub-folder of it."""
    root = Path(os.environ.get(DATA_ENV) or DEFAULT_SHARED)
    return root.joinpath(*parts)

#: What the recognition service detects with: "auto-roi" (YuNet proposes each face, CenterFace re-detects it on a
#: crop, so the landmarks stay CenterFace's), adopted under docs/results/detector-roi/RULE2.txt; it replaced "auto"
#: (CenterFace on the whole photo). Not "fast" (YuNet's own landmarks): on masked faces they align SFace's chips
#: worse, and masked rank-1 fell 5 points on the tuning people (docs/results/openset-tuning-fast). Here, not in
#: ``occluface.faces.detect``, so every command's ``--detector`` default names it without importing OpenCV.
DEFAULT_DETECTOR = "auto-roi"
