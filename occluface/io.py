"""Atomic file writes: the one way the project replaces a file, so a crash never leaves half of one behind.

Every write goes to a temporary file in the target's folder, is flushed and fsynced, and is then renamed over
the target (``os.replace``, atomic on POSIX and Windows); on any error the temporary file is removed and the
old target is untouched. The folder's entry is fsynced too where the platform allows, so the rename survives
a power cut.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "save_npy", "save_npz", "load_npz"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not possible on every platform / filesystem
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, encoding: str | None = None,
                 permissions: int | None = None, suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """``with atomic_write(path, "w") as fh: ...`` -- ``path`` is replaced only if the block finishes.

    ``permissions``: the new file's mode (default: 0666 less the umask, as ``open`` would give; pass 0o600 for
    secrets). ``suffix``: the temporary file's ending (``.npz`` for ``numpy.savez``, which appends it otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, (0o666 & ~_umask()) if permissions is None else permissions)
        if "b" in mode:
            fh = os.fdopen(fd, mode)
        else:
            fh = os.fdopen(fd, mode, encoding=encoding or "utf-8")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes, **kw: Any) -> Path:
    with atomic_write(path, "wb", **kw) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, **kw: Any) -> Path:
    with atomic_write(path, "w", **kw) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, **kw: Any) -> Path:
    """JSON with a final newline (``indent=None``: one line); a value JSON cannot hold is an error, not a string."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", **kw)


def save_npy(path: str | Path, array: Any) -> Path:
    import numpy as np

    with atomic_write(path, "wb", suffix=".npy") as fh:
        np.save(fh, array)
    return Path(path)


def save_npz(path: str | Path, /, **arrays: Any) -> Path:
    import numpy as np

    with atomic_write(path, "wb", suffix=".npz") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_npz(path: str | Path, what: str = "cache") -> dict[str, Any]:
    """Every array of an ``.npz`` file as a dict; a clear error naming the file when it cannot be read."""
    import numpy as np

    from occluface.errors import DatasetError

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable {what} ({exc}); delete it to rebuild") from None
