"""occluface.io: the one atomic-write helper every file the project replaces goes through."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from occluface.io import atomic_write, save_npz, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "thresholds.json"
    write_json(target, {"verify": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write('{"verify": 0.')  # half a file ...
            raise RuntimeError("disk full")  # ... and the writer dies
    assert target.read_text() == '{\n  "verify": 0.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thresholds.json"]


def test_permissions_follow_the_umask_or_the_caller(tmp_path):
    old = os.umask(0o022)
    try:
        plain = write_text(tmp_path / "a.txt", "x")
        secret = write_text(tmp_path / "keys.json", "{}", permissions=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644  # mkstemp alone would give 0600
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_npz_keeps_its_name_and_folders_are_made(tmp_path):
    target = tmp_path / "cache" / "deep" / "chips.npz"
    save_npz(target, a=np.arange(3))
    assert target.is_file() and not (target.parent / "chips.npz.npz").exists()
    assert np.load(target)["a"].tolist() == [0, 1, 2]
