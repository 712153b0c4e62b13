"""The open-set benchmark's people splits: the held-out, tuning and fresh draws never share a person, and the
second fresh draw is exactly the people the first one left."""

from __future__ import annotations

from pathlib import Path

import pytest

from occluface.bench.openset import FRESH_DRAW, _people
from occluface.errors import OccluFaceError


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory) -> Path:
    """1,200 people with two (empty) photos each: the split only reads names."""
    root = tmp_path_factory.mktemp("splits")
    for i in range(1200):
        d = root / "lfw_dev" / f"Person_{i:04d}"
        d.mkdir(parents=True)
        for k in (1, 2):
            (d / f"Person_{i:04d}_{k:04d}.jpg").write_bytes(b"")
    return root


def names(root: Path, split: str, n: int = 2000) -> set[str]:
    (ds, people, items, held), = _people(root, split, 0, n, 0, 8)
    assert ds == "lfw" and all(name in people for name, _, _ in items)
    return set(people)


def test_fresh_draws_are_disjoint_from_every_other_split(lfw_like):
    held, tuning = names(lfw_like, "heldout", 300), names(lfw_like, "tuning", 400)
    fresh, fresh2 = names(lfw_like, "fresh", FRESH_DRAW), names(lfw_like, "fresh2")
    assert len(held) == 300 and len(tuning) == 400 and len(fresh) == FRESH_DRAW
    for a, b in ((held, tuning), (held, fresh), (held, fresh2), (tuning, fresh), (tuning, fresh2), (fresh, fresh2)):
        assert not a & b
    # fresh2 is everyone the first fresh draw left in the fresh pool: asking fresh for more shows that pool
    pool = names(lfw_like, "fresh")
    assert fresh <= pool and fresh2 == pool - fresh and fresh2
    assert names(lfw_like, "fresh2", 10) <= fresh2 and len(names(lfw_like, "fresh2", 10)) == 10


def test_unknown_split_is_a_clear_error(lfw_like):
    from occluface.bench.openset import run_openset

    with pytest.raises(OccluFaceError, match="split must be one of"):
        run_openset(lfw_like, split="fresh3")
