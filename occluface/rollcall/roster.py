"""A roster: who is expected (a text file of names, one per line, ``#`` comments; or a folder-per-person)."""

from __future__ import annotations

from pathlib import Path

from occluface.errors import OccluFaceError


def read_roster(path: str | Path) -> list[str]:
    """The names of a roster file (one per line; blank lines and ``#`` comments skipped) or of a folder's
    sub-folders (one per person), in order, without repeats."""
    p = Path(path)
    if p.is_dir():
        names = [q.name for q in sorted(p.iterdir()) if q.is_dir()]
    elif p.is_file():
        names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    else:
        raise OccluFaceError(f"{p}: roster not found (a text file of names or a folder with one sub-folder per person)")
    if not names:
        raise OccluFaceError(f"{p}: the roster names nobody")
    return list(dict.fromkeys(names))
