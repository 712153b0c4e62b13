"""Gallery store (SQLite) and vector search: round trips, atomicity, privacy and search agreement."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys

import numpy as np
import pytest

from occluface.errors import OccluFaceError
from occluface.gallery import (
    DuplicateSubjectError,
    EmbeddingError,
    ExactIndex,
    FaissIndex,
    GalleryError,
    GalleryStore,
    SQLiteGalleryStore,
    UnknownSubjectError,
    make_index,
    open_gallery,
    search_gallery,
    search_gallery_batch,
)
from occluface.bench.search import synthetic_gallery

DIM = 16


def unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def snapshot(store: SQLiteGalleryStore) -> tuple:
    """Everything observable about the gallery contents, for 'unchanged' assertions."""
    db = sqlite3.connect(store.path)
    try:
        return tuple(
            tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in ("subjects", "embeddings", "thumbnails")
        )
    finally:
        db.close()


@pytest.fixture
def gallery(tmp_path):
    store = open_gallery(tmp_path / "g" / "gallery.sqlite3")
    yield store
    store.close()


def test_round_trip_several_embeddings_per_subject(gallery):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, DIM)).astype(np.float64) * 5  # not normalised, float64: stored normalised float32
    res = gallery.enroll("alice", a, model_id="dlib_resnet", model_version="1", sources=["a1.jpg", "a2.jpg", "a3.jpg"])
    assert res.subject_created and len(res.embedding_ids) == 3
    again = gallery.enroll("alice", unit(rng, 2), model_id="dlib_resnet", model_version="1")
    assert not again.subject_created and again.subject_id == res.subject_id
    gallery.enroll("alice", unit(rng, 1, 32), model_id="iresnet50", model_version="2")
    bob_id = gallery.add_subject("bob", {"badge": 7})
    with pytest.raises(DuplicateSubjectError):
        gallery.add_subject("bob")
    assert gallery.add_subject("bob", exist_ok=True) == bob_id

    subjects = gallery.list_subjects()
    assert [s.name for s in subjects] == ["alice", "bob"]
    assert subjects[0].embeddings == {"dlib_resnet": 5, "iresnet50": 1}
    assert subjects[1].embeddings == {} and subjects[1].meta == {"badge": 7}
    assert gallery.get_subject("bob").id == bob_id
    assert gallery.get_subject("carol") is None
    with pytest.raises(UnknownSubjectError):
        gallery.get_subject("carol", strict=True)

    matrix, names = gallery.embeddings("dlib_resnet")
    assert matrix.dtype == np.float32 and matrix.shape == (5, DIM)
    assert names == ["alice"] * 5
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(matrix[:3], a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-6)
    assert gallery.models()["iresnet50"] == {"dim": 32, "count": 1, "versions": ["2"]}

    assert gallery.remove_subject("alice") is True
    assert gallery.remove_subject("alice") is False
    with pytest.raises(UnknownSubjectError) as err:
        gallery.remove_subject("alice", strict=True)
    assert isinstance(err.value, OccluFaceError) and "alice" in str(err.value)
    assert [s.name for s in gallery.list_subjects()] == ["bob"]
    assert gallery.embeddings("dlib_resnet")[1] == []


def test_model_versions_are_not_mixed(gallery):
    rng = np.random.default_rng(11)
    gallery.enroll("alice", unit(rng, 2), model_id="iresnet50", model_version="ckpt-a", thumbnails=[b"t1", b"t2"])
    gallery.enroll("bob", unit(rng, 1), model_id="dlib_resnet", model_version="19")
    before = snapshot(gallery)
    with pytest.raises(EmbeddingError, match="not comparable"):
        gallery.enroll("bob", unit(rng, 1), model_id="iresnet50", model_version="ckpt-b")
    assert snapshot(gallery) == before
    assert gallery.remove_embeddings("iresnet50") == 2
    assert gallery.get_subject("alice").embeddings == {} and gallery.thumbnails("alice") == []
    gallery.enroll("alice", unit(rng, 1), model_id="iresnet50", model_version="ckpt-b")
    assert gallery.models()["iresnet50"]["versions"] == ["ckpt-b"]
    assert gallery.models()["dlib_resnet"]["count"] == 1


def test_reopen_persists(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with open_gallery(path) as g:
        g.enroll("alice", unit(np.random.default_rng(1), 2), model_id="m", model_version="1")
    with open_gallery(path) as g:
        assert g.get_subject("alice", strict=True).embeddings == {"m": 2}


def test_removal_leaves_no_rows_and_no_bytes(gallery):
    rng = np.random.default_rng(2)
    secret = unit(rng, 2)
    thumb = b"\x89PNG-thumbnail-of-alice-" + bytes(range(40))
    gallery.enroll("alice", secret, model_id="m", model_version="1", thumbnails=[thumb, thumb + b"2"], sources=["x.jpg", "y.jpg"])
    gallery.enroll("bob", unit(rng, 1), model_id="m", model_version="1")
    blob = secret[0].astype("<f4").tobytes()

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in gallery.path.parent.iterdir() if p.name.startswith(gallery.path.name))

    assert blob in on_disk() and b"thumbnail-of-alice" in on_disk()  # the check below can see the bytes
    assert gallery.thumbnails("alice") == [thumb, thumb + b"2"]
    assert gallery.remove_subject("alice")
    db = sqlite3.connect(gallery.path)
    try:
        assert db.execute("SELECT COUNT(*) FROM subjects WHERE name = 'alice'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1  # bob's
    finally:
        db.close()
    data = on_disk()
    assert blob not in data and secret[1].astype("<f4").tobytes() not in data
    assert b"thumbnail-of-alice" not in data and b"alice" not in data


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[np.nan] * DIM], dtype=np.float32), "NaN"),
        (np.zeros((1, DIM + 1), np.float32), "dimension"),
        (np.zeros((1, DIM), np.float32), "zero vector"),
        (np.ones((1, DIM), np.int64), "floating"),
    ],
)
def test_bad_embedding_mid_batch_leaves_gallery_unchanged(gallery, bad, message):
    rng = np.random.default_rng(3)
    gallery.enroll("alice", unit(rng, 2), model_id="m", model_version="1")
    before = snapshot(gallery)
    if bad.shape[1] == DIM and bad.dtype.kind == "f":
        batch = np.concatenate([unit(rng, 2), bad, unit(rng, 1)]).astype(bad.dtype)
    else:
        batch = bad
    for name in ("alice", "newcomer"):
        with pytest.raises(EmbeddingError, match=message):
            gallery.enroll(name, batch, model_id="m", model_version="1", sources=[f"img{i}.jpg" for i in range(len(batch))])
    assert snapshot(gallery) == before
    assert "newcomer" not in gallery


def test_error_names_the_bad_row_source(gallery):
    batch = unit(np.random.default_rng(4), 3)
    batch[1, 0] = np.inf
    with pytest.raises(EmbeddingError, match=r"row 1 \(b\.jpg\)"):
        gallery.enroll("x", batch, model_id="m", model_version="1", sources=["a.jpg", "b.jpg", "c.jpg"])


def test_crash_inside_transaction_rolls_back(gallery):
    rng = np.random.default_rng(5)
    gallery.enroll("alice", unit(rng, 1), model_id="m", model_version="1")
    before = snapshot(gallery)
    with pytest.raises(RuntimeError, match="power cut"):
        with gallery.transaction():
            gallery.enroll("bob", unit(rng, 2), model_id="m", model_version="1")
            gallery.remove_subject("alice")
            gallery.add_subject("carol")
            assert "bob" in gallery and "alice" not in gallery  # visible inside the transaction
            raise RuntimeError("power cut")
    assert snapshot(gallery) == before
    assert [s.name for s in gallery.list_subjects()] == ["alice"]
    # a failing nested enrol rolls back only itself; the outer transaction still commits
    with gallery.transaction():
        gallery.add_subject("dave")
        with pytest.raises(EmbeddingError):
            gallery.enroll("erin", np.full((1, DIM), np.nan, np.float32), model_id="m", model_version="1")
    assert [s.name for s in gallery.list_subjects()] == ["alice", "dave"]


def test_other_process_sees_nothing_of_an_interrupted_enrolment(tmp_path):
    """A process killed mid-enrolment (no rollback code runs) leaves the file as it was."""
    import subprocess

    path = tmp_path / "gallery.sqlite3"
    with open_gallery(path) as g:
        g.enroll("alice", unit(np.random.default_rng(6), 1), model_id="m", model_version="1")
        before = snapshot(g)
    code = (
        "import os, numpy as np\n"
        "from occluface.gallery import open_gallery\n"
        f"g = open_gallery({str(path)!r})\n"
        "with g.transaction():\n"
        "    g.enroll('bob', np.ones((2, 16), np.float32), model_id='m', model_version='1')\n"
        "    os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    with open_gallery(path) as g:
        assert snapshot(g) == before
        assert [s.name for s in g.list_subjects()] == ["alice"]


def test_file_and_folder_are_owner_only(tmp_path):
    path = tmp_path / "new" / "deeper" / "gallery.sqlite3"
    with open_gallery(path) as g:
        g.enroll("alice", unit(np.random.default_rng(7), 1), model_id="m", model_version="1")
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert path in files
        for p in files:  # the database and its -wal / -shm companions
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    loose = tmp_path / "loose.sqlite3"
    loose.touch(mode=0o644)
    os.chmod(loose, 0o644)
    open_gallery(loose).close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_bad_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GalleryError, match="junk.sqlite3"):
        open_gallery(junk)
    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(GalleryError, match="not an occluface gallery"):
        open_gallery(other)
    with pytest.raises(GalleryError, match="folder"):
        open_gallery(tmp_path)
    g = open_gallery(tmp_path / "ok.sqlite3")
    with pytest.raises(GalleryError, match="empty"):
        g.add_subject("   ")
    with pytest.raises(GalleryError, match="2 thumbnails for 1"):
        g.enroll("a", unit(np.random.default_rng(0), 1), model_id="m", model_version="1", thumbnails=[b"x", b"y"])
    g.close()
    with pytest.raises(GalleryError, match="closed"):
        g.list_subjects()


def test_default_path_is_under_user_data_dir(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_dir", lambda appname=None, *a, **k: str(tmp_path / "data" / appname))
    with SQLiteGalleryStore() as g:
        assert g.path == tmp_path / "data" / "occluface" / "gallery.sqlite3"
        assert g.path.exists()


def test_exact_and_faiss_agree_on_top1():
    rng = np.random.default_rng(8)
    gallery = unit(rng, 500, 32)
    queries = gallery[rng.choice(500, 50)] + 0.1 * unit(rng, 50, 32)
    s_exact, i_exact = ExactIndex().build(gallery).search(queries, 5)
    s_flat, i_flat = FaissIndex("flat").build(gallery).search(queries, 5)
    np.testing.assert_array_equal(i_exact[:, 0], i_flat[:, 0])
    np.testing.assert_allclose(s_exact, s_flat, atol=1e-5)
    assert (np.diff(s_exact, axis=1) <= 1e-7).all()  # descending
    # scores are cosines: the query is normalised by the index
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_allclose(s_exact[:, 0], np.sum(qn * gallery[i_exact[:, 0]], axis=1), atol=1e-5)
    # k larger than the gallery returns every row once
    _, i_all = ExactIndex().build(gallery[:3]).search(queries[:2], 10)
    assert i_all.shape == (2, 3) and sorted(i_all[0]) == [0, 1, 2]
    with pytest.raises(EmbeddingError, match="dimension"):
        ExactIndex().build(gallery).search(np.ones(31, np.float32), 1)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_on_small_set(kind):
    gallery, queries, source = synthetic_gallery(4000, 32, 200, seed=1, query_noise=0.5)
    _, exact = ExactIndex().build(gallery).search(queries, 1)
    index = FaissIndex(kind, hnsw_m=16, ef_construction=40, seed=0).build(gallery)
    _, approx = index.search(queries, 1)
    assert (approx[:, 0] == exact[:, 0]).mean() >= 0.99
    assert (exact[:, 0] == source).mean() >= 0.95  # the synthetic data has meaningful neighbours


def test_default_ivf_tuning_keeps_recall_on_hard_queries():
    """Queries at cosine ~0.71 to their source in 128-d: the default nprobe must still find the exact top-1."""
    gallery, queries, source = synthetic_gallery(5000, 128, 300, seed=1)  # default query noise
    _, exact = ExactIndex().build(gallery).search(queries, 1)
    assert (exact[:, 0] == source).mean() >= 0.99
    _, approx = FaissIndex("ivf").build(gallery).search(queries, 1)
    assert (approx == exact).mean() >= 0.99


def test_ivf_rebuild_reuses_training():
    gallery, queries, _ = synthetic_gallery(3000, 32, 100, seed=2, query_noise=0.5)
    first = FaissIndex("ivf").build(gallery[:2500])
    assert not first.reused_training
    second = FaissIndex("ivf").build(gallery, reuse=first)
    assert second.reused_training and second.ntotal == 3000
    _, exact = ExactIndex().build(gallery).search(queries, 1)
    assert (second.search(queries, 1)[1] == exact).mean() >= 0.99
    assert not FaissIndex("ivf").build(gallery[:1000], reuse=first).reused_training  # too far from 2500


def test_search_gallery_with_faiss_index_follows_writes(gallery, monkeypatch):
    from occluface.gallery import search

    monkeypatch.setattr(search, "EXACT_MAX", 10)
    monkeypatch.setattr(search, "FLAT_MAX", 50)
    rows, queries, source = synthetic_gallery(400, DIM, 20, seed=3, query_noise=0.3)
    with gallery.transaction():
        for i in range(100):
            gallery.enroll(f"p{i:03d}", rows[i * 4 : i * 4 + 4], model_id="m", model_version="1")
    hits = search_gallery_batch(gallery, "m", queries, k=2)
    assert [h[0][0] for h in hits] == [f"p{s // 4:03d}" for s in source]
    entry = gallery.search_cache[("m", None)]
    assert entry.index.kind == "faiss-ivf" and not entry.index.reused_training
    # a write is applied to the same index in place (FAISS add_with_ids / remove_ids), never a rebuild
    gallery.enroll("newbie", queries[0], model_id="m", model_version="1")
    assert search_gallery(gallery, "m", queries[0], k=1)[0] == ("newbie", pytest.approx(1.0, abs=1e-5))
    assert gallery.search_cache[("m", None)] is entry and entry.applied == 1 and entry.index.ntotal == 401
    gallery.remove_subject("newbie")
    assert search_gallery(gallery, "m", queries[0], k=1)[0][0] == f"p{source[0] // 4:03d}"
    assert gallery.search_cache[("m", None)] is entry and entry.index.ntotal == 400
    # a model reset (remove_embeddings) rebuilds, reusing the trained IVF lists
    gallery.remove_embeddings("m")
    with gallery.transaction():
        for i in range(100):
            gallery.enroll(f"p{i:03d}", rows[i * 4 : i * 4 + 4], model_id="m", model_version="1")
    assert search_gallery(gallery, "m", queries[1], k=1)[0][0] == f"p{source[1] // 4:03d}"
    assert gallery.search_cache[("m", None)] is not entry
    assert gallery.search_cache[("m", None)].index.reused_training


def test_make_index_chooses_by_size():
    assert isinstance(make_index(100, 128), ExactIndex)
    assert make_index(80_000, 128).kind == "faiss-flat"
    assert make_index(2_000_000, 128).kind in ("faiss-ivf", "faiss-hnsw")


def test_search_gallery_aggregates_per_subject_and_tracks_writes(gallery):
    rng = np.random.default_rng(9)
    centres = unit(rng, 4)
    for i, name in enumerate(["ann", "ben", "cat", "dan"]):
        gallery.enroll(name, centres[i] + 0.2 * unit(rng, 3), model_id="m", model_version="1")
    hits = search_gallery(gallery, "m", centres[1], k=3)
    assert hits[0][0] == "ben" and len(hits) == 3 and len({n for n, _ in hits}) == 3
    matrix, names = gallery.embeddings("m")
    ben_best = float(np.max(matrix[[n == "ben" for n in names]] @ (centres[1] / np.linalg.norm(centres[1]))))
    assert hits[0][1] == pytest.approx(ben_best, abs=1e-5)
    assert [h[1] for h in hits] == sorted((h[1] for h in hits), reverse=True)
    assert len(search_gallery(gallery, "m", centres[0], k=10)) == 4

    # the cached index must follow writes: enrol a perfect match, then remove it
    gallery.enroll("eve", centres[1][None] * 3, model_id="m", model_version="1")
    assert search_gallery(gallery, "m", centres[1], k=1)[0][0] == "eve"
    gallery.remove_subject("eve")
    assert search_gallery(gallery, "m", centres[1], k=1)[0][0] == "ben"

    batch = search_gallery_batch(gallery, "m", centres[[0, 2]], k=1)
    assert [b[0][0] for b in batch] == ["ann", "cat"]
    with pytest.raises(GalleryError, match="no embeddings for model 'other'"):
        search_gallery(gallery, "other", centres[0])


def test_search_sees_writes_from_another_connection(tmp_path):
    path = tmp_path / "g.sqlite3"
    rng = np.random.default_rng(10)
    target = unit(rng, 1)
    with open_gallery(path) as reader, open_gallery(path) as writer:
        assert search_gallery(reader, "m", target[0]) == []  # empty gallery: no match, no error
        writer.enroll("zed", target, model_id="m", model_version="1")
        assert search_gallery(reader, "m", target[0], k=1)[0][0] == "zed"


def test_native_search_hook_replaces_local_index():
    """A server-backed store only has to implement the interface and answer native_search."""

    class RemoteStore(GalleryStore):
        revision = None

        def native_search(self, model_id, queries, k, *, model_version=None):
            return [[("remote-hit", 0.9)] for _ in np.atleast_2d(queries)]

        def embeddings(self, model_id, *, model_version=None):
            raise AssertionError("native search should be used")

        def _unused(self, *args, **kwargs):
            raise NotImplementedError

        add_subject = get_subject = list_subjects = remove_subject = _write_enrolment = models = _unused
        remove_embeddings = thumbnails = transaction = close = _unused

    assert search_gallery(RemoteStore(), "m", np.ones(4, np.float32)) == [("remote-hit", 0.9)]


def test_bench_search_cli_writes_report(tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    out = tmp_path / "search"
    result = CliRunner().invoke(
        app, ["bench", "search", "--sizes", "300,1200", "--dim", "16", "--queries", "20", "--approx", "ivf,hnsw", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "search.json").read_text())
    rows = data["results"]
    assert {(r["size"], r["index"]) for r in rows} == {
        (n, k) for n in (300, 1200) for k in ("exact-numpy", "faiss-flat", "faiss-ivf", "faiss-hnsw")
    }
    for r in rows:
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert 0.0 <= r["recall_at_1"] <= 1.0
    assert all(r["recall_at_1"] == 1.0 for r in rows if r["index"] in ("exact-numpy", "faiss-flat"))
    md = (out / "search.md").read_text()
    assert "| 1,200 |" in md and "p99" in md and "--sizes 300,1200" in md
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = CliRunner().invoke(app, ["bench", "search", "--sizes", "ten", "--out", str(out)])
    assert bad.exit_code == 2 and "--sizes" in bad.output
