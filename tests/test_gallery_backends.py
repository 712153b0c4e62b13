"""The gallery on both backends (SQLite file, real PostgreSQL server): the same behaviour, the change log that
keeps every process's search index current without rebuilds, schema migration, crash safety, API keys."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from occluface.gallery import (
    EmbeddingError,
    ExactIndex,
    FaissIndex,
    GalleryError,
    UnknownSubjectError,
    open_gallery,
    search_gallery,
    search_gallery_batch,
)
from occluface.gallery.postgres import PostgresGalleryStore, redact
from occluface.gallery.store import CHANGE_LOG_KEEP, SCHEMA_VERSION, SQLiteGalleryStore

DIM = 16


def unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """Where a gallery lives: a file path or a PostgreSQL URL (a fresh database)."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.sqlite3")
    return request.getfixturevalue("postgres_url")


def test_open_gallery_picks_the_backend(target, monkeypatch):
    with open_gallery(target) as g:
        assert isinstance(g, PostgresGalleryStore if target.startswith("postgresql") else SQLiteGalleryStore)
    monkeypatch.setenv("OCCLUFACE_GALLERY", target)
    with open_gallery() as g:
        assert g.location == (redact(target) if target.startswith("postgresql") else target)


def test_round_trip_atomicity_and_removal_on_both_backends(target):
    rng = np.random.default_rng(0)
    with open_gallery(target) as g:
        x = unit(rng, 3)
        r = g.enroll("alice", x[:2], model_id="m", model_version="1", sources=["a.jpg", "b.jpg"], thumbnails=[b"t1", b"t2"])
        assert r.subject_created and len(r.embedding_ids) == 2
        g.enroll("bob", x[2:], model_id="m", model_version="1", meta={"team": "B"})
        assert [s.name for s in g.list_subjects()] == ["alice", "bob"] and len(g) == 2 and "bob" in g
        assert g.get_subject("bob", strict=True).meta == {"team": "B"}
        assert g.models() == {"m": {"dim": DIM, "count": 3, "versions": ["1"]}}
        matrix, names = g.embeddings("m")
        assert names == ["alice", "alice", "bob"] and np.allclose(matrix, x, atol=1e-6)
        assert g.thumbnails("alice") == [b"t1", b"t2"]
        # a bad row rejects the whole batch; another version of the model is refused
        bad = np.concatenate([unit(rng, 1), np.full((1, DIM), np.nan, np.float32)])
        with pytest.raises(EmbeddingError, match="row 1"):
            g.enroll("carol", bad, model_id="m", model_version="1")
        with pytest.raises(EmbeddingError, match="version"):
            g.enroll("carol", unit(rng, 1), model_id="m", model_version="2")
        assert "carol" not in g
        # a failure inside a caller's transaction undoes everything in it; a failing nested call only itself
        with pytest.raises(RuntimeError):
            with g.transaction():
                g.enroll("dave", unit(rng, 1), model_id="m", model_version="1")
                g.remove_subject("alice")
                raise RuntimeError("power cut")
        assert [s.name for s in g.list_subjects()] == ["alice", "bob"]
        with g.transaction():
            g.add_subject("erin")
            with pytest.raises(EmbeddingError):
                g.enroll("fred", np.zeros((1, DIM), np.float32), model_id="m", model_version="1")
        assert [s.name for s in g.list_subjects()] == ["alice", "bob", "erin"]
        assert g.remove_subject("alice") and not g.remove_subject("alice")
        with pytest.raises(UnknownSubjectError):
            g.remove_subject("alice", strict=True)
        assert g.embeddings("m")[1] == ["bob"]
        assert g.remove_embeddings("m") == 1 and g.models() == {}


def test_index_follows_writes_of_another_connection_in_place(target):
    """Two stores on one gallery stand for two API processes: each one's writes reach the other's index as
    single adds and deletes (no rebuild), within one search."""
    rng = np.random.default_rng(1)
    people = unit(rng, 30)
    with open_gallery(target) as a, open_gallery(target) as b:
        for i, v in enumerate(people):
            a.enroll(f"p{i:02d}", v, model_id="m", model_version="1")
        assert search_gallery(b, "m", people[3], k=1)[0][0] == "p03"
        entry = b.search_cache[("m", None)]
        newcomer = unit(rng, 1)
        t0 = time.perf_counter()
        a.enroll("newcomer", newcomer, model_id="m", model_version="1")
        assert search_gallery(b, "m", newcomer[0], k=1)[0][0] == "newcomer"
        assert time.perf_counter() - t0 < 1.0
        a.remove_subject("p03")
        assert search_gallery(b, "m", people[3], k=1)[0][0] != "p03"
        assert b.search_cache[("m", None)] is entry and entry.applied == 2 and entry.index.ntotal == 30
        assert entry.revision == a.change_seq() == b.change_seq()


def test_change_log_lists_writes_in_order(target):
    rng = np.random.default_rng(2)
    with open_gallery(target) as g:
        start = g.change_seq()
        ids = g.enroll("ann", unit(rng, 2), model_id="m", model_version="1").embedding_ids
        g.remove_subject("ann")
        g.enroll("ben", unit(rng, 1), model_id="m", model_version="1")
        g.remove_embeddings("m")
        ops = [(c.op, c.embedding_id) for c in g.changes_since(start)]
        assert ops[:4] == [("add", ids[0]), ("add", ids[1]), ("del", ids[0]), ("del", ids[1])]
        assert [op for op, _ in ops[4:]] == ["add", "reset"]
        seqs = [c.seq for c in g.changes_since(start)]
        assert seqs == sorted(seqs) and seqs[-1] == g.change_seq()
        assert g.changes_since(g.change_seq()) == []
        assert g.changes_since(g.change_seq() + 5) is None  # a reader ahead of the store (a new gallery): rebuild


def test_reset_and_pruned_log_rebuild_the_index(target, monkeypatch):
    rng = np.random.default_rng(3)
    with open_gallery(target) as g:
        x = unit(rng, 5)
        for i, v in enumerate(x):
            g.enroll(f"p{i}", v, model_id="m", model_version="1")
        search_gallery(g, "m", x[0])
        first = g.search_cache[("m", None)]
        g.remove_embeddings("m")
        g.enroll("solo", x[1], model_id="m", model_version="1")
        assert search_gallery(g, "m", x[1], k=5) == [("solo", pytest.approx(1.0, abs=1e-5))]
        assert g.search_cache[("m", None)] is not first
        # a reader further behind than the kept log rebuilds instead of applying a partial list
        monkeypatch.setattr(type(g), "changes_since", lambda self, seq, **kw: None)
        g.enroll("late", x[2], model_id="m", model_version="1")
        assert search_gallery(g, "m", x[2], k=1)[0][0] == "late"


def test_sqlite_reuses_freed_ids_and_the_index_stays_right(tmp_path):
    """SQLite hands a freed largest rowid to the next insert: del(7) then add(7) must leave the new person."""
    rng = np.random.default_rng(4)
    with open_gallery(tmp_path / "g.sqlite3") as writer, open_gallery(tmp_path / "g.sqlite3") as reader:
        old = writer.enroll("old", unit(rng, 1), model_id="m", model_version="1")
        search_gallery(reader, "m", unit(rng, 1)[0])
        writer.remove_subject("old")
        newer = unit(rng, 1)
        new = writer.enroll("new", newer, model_id="m", model_version="1")
        assert new.embedding_ids == old.embedding_ids  # the id came back
        assert search_gallery(reader, "m", newer[0], k=5) == [("new", pytest.approx(1.0, abs=1e-5))]


@pytest.mark.parametrize("make", [ExactIndex, lambda: FaissIndex("flat"), lambda: FaissIndex("ivf", nlist=4, nprobe=4)])
def test_in_place_add_and_remove_equal_a_rebuild(make):
    rng = np.random.default_rng(5)
    rows, queries = unit(rng, 300), unit(rng, 20)
    ids = np.arange(1000, 1300)
    index = make().build(rows[:200], ids[:200])
    index.add(rows[200:], ids[200:])
    gone = ids[::3]
    assert index.remove(np.concatenate([gone, [5, 6]])) == len(gone)  # unknown ids are ignored
    keep = ~np.isin(ids, gone)
    rebuilt = make().build(rows[keep], ids[keep])
    assert index.ntotal == rebuilt.ntotal == int(keep.sum())
    s1, i1 = index.search(queries, 5)
    s2, i2 = rebuilt.search(queries, 5)
    assert (i1 == i2).all() and np.allclose(s1, s2, atol=1e-5)
    assert not np.isin(i1, gone).any()


def test_hnsw_cannot_drop_vectors_so_the_gallery_rebuilds_it():
    rng = np.random.default_rng(6)
    index = FaissIndex("hnsw", hnsw_m=8).build(unit(rng, 50), np.arange(50))
    index.add(unit(rng, 2), np.array([50, 51]))
    assert index.ntotal == 52 and not index.supports_remove
    with pytest.raises(GalleryError, match="rebuild"):
        index.remove(np.array([1]))


def test_sqlite_gallery_of_schema_1_is_migrated(tmp_path):
    """A gallery written by the release before the change log opens, keeps its data and gains the log."""
    path = tmp_path / "old.sqlite3"
    from occluface.gallery.store import schema_statements

    db = sqlite3.connect(path)
    for statement in schema_statements(1, "sqlite"):
        db.execute(statement)
    db.execute("INSERT INTO schema_version (version) VALUES (1)")
    db.execute("INSERT INTO subjects (id, name, meta, created) VALUES (1, 'ada', '{}', 'then')")
    vec = unit(np.random.default_rng(7), 1)[0]
    db.execute("INSERT INTO embeddings (subject_id, model_id, model_version, dim, vector, created) VALUES "
               "(1, 'm', '1', ?, ?, 'then')", (DIM, vec.astype("<f4").tobytes()))
    db.commit()
    db.close()
    with open_gallery(path) as g:
        assert search_gallery(g, "m", vec, k=1)[0][0] == "ada"
        g.enroll("bea", -vec, model_id="m", model_version="1")
        assert search_gallery(g, "m", -vec, k=1)[0][0] == "bea" and g.change_seq() == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()


def test_postgres_gallery_of_schema_1_is_migrated(postgres_url):
    import psycopg

    from occluface.gallery.store import schema_statements

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in schema_statements(1, "postgresql"):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO subjects (name, meta, created) VALUES ('ada', '{}', 'then')")
    with open_gallery(postgres_url) as g:
        assert [s.name for s in g.list_subjects()] == ["ada"]
        g.enroll("bea", unit(np.random.default_rng(8), 1), model_id="m", model_version="1")
        assert g.change_seq() >= 1 and g.api_keys() == {}
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(GalleryError, match="schema version 99"):
        open_gallery(postgres_url)


def test_postgres_sigkill_mid_enrolment_leaves_no_partial_subject(postgres_url):
    """The enrolling process is killed with SIGKILL inside its transaction (rows written, not committed)."""
    with open_gallery(postgres_url) as g:
        g.enroll("alice", unit(np.random.default_rng(9), 1), model_id="m", model_version="1")
        seq = g.change_seq()
    code = (
        "import sys, time, numpy as np\n"
        "from occluface.gallery import open_gallery\n"
        f"g = open_gallery({postgres_url!r})\n"
        "with g.transaction():\n"
        "    g.enroll('bob', np.ones((3, 16), np.float32), model_id='m', model_version='1')\n"
        "    print('inside', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with open_gallery(postgres_url) as g:
        assert [s.name for s in g.list_subjects()] == ["alice"]
        assert g.models()["m"]["count"] == 1 and g.change_seq() == seq
        g.enroll("bob", np.ones((1, 16), np.float32), model_id="m", model_version="1")  # the writer lock is free


def test_postgres_removal_leaves_no_bytes_in_the_table_files(postgres_server, postgres_url):
    rng = np.random.default_rng(10)
    secret = unit(rng, 1)
    with open_gallery(postgres_url) as g:
        g.enroll("alice", secret, model_id="m", model_version="1", thumbnails=[b"thumbnail-of-alice-" + bytes(range(30))])
        g.enroll("bob", unit(rng, 1), model_id="m", model_version="1")
        g.remove_subject("alice")

    def table_files() -> bytes:
        base = postgres_server.data_dir / "base"
        return b"".join(p.read_bytes() for p in base.rglob("*") if p.is_file())

    data = table_files()
    assert secret[0].astype("<f4").tobytes() not in data and b"thumbnail-of-alice" not in data


def test_postgres_api_keys_live_in_the_gallery_database(postgres_url, tmp_path):
    from typer.testing import CliRunner

    from occluface.api.keys import open_keys
    from occluface.cli import app

    server_keys = open_keys(postgres_url)  # what a running server checks against
    assert not server_keys
    result = CliRunner().invoke(app, ["apikey", "create", "gate-1", "--scope", "identify", "--gallery", postgres_url])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("ocf_") and "postgresql://postgres@" in result.output
    time.sleep(1.1)  # a server re-reads the database's keys every second
    assert server_keys and server_keys.check(key) and not server_keys.check(key + "x")  # seen without a restart
    assert server_keys.lookup(key).scopes == ("identify",)
    with open_gallery(postgres_url) as g:
        stored = g.api_keys()
        assert list(stored) == ["gate-1"] and key not in json.dumps(stored)  # only the hash
        with pytest.raises(GalleryError, match="exists already"):
            g.add_api_key("gate-1", "0" * 64)
        assert g.remove_api_key("gate-1")
    time.sleep(1.1)
    assert not server_keys.check(key)
    result = CliRunner().invoke(app, ["apikey", "create", "gate-2", "--gallery", postgres_url])
    key = result.output.strip().splitlines()[-1]
    time.sleep(1.1)
    assert server_keys.check(key)
    assert CliRunner().invoke(app, ["apikey", "revoke", "gate-2", "--gallery", postgres_url]).exit_code == 0
    time.sleep(1.1)  # a server re-reads the database's keys every second
    assert not server_keys.check(key)


def test_postgres_bad_url_is_a_clear_error():
    with pytest.raises(GalleryError, match=r"postgresql://nobody:\*\*\*@127.0.0.1:1/none: cannot connect"):
        PostgresGalleryStore("postgresql://nobody:secret@127.0.0.1:1/none", timeout=2)


def test_change_log_is_pruned(tmp_path, monkeypatch):
    from occluface.gallery import store as store_module

    monkeypatch.setattr(store_module, "CHANGE_LOG_KEEP", 5)
    rng = np.random.default_rng(11)
    with open_gallery(tmp_path / "g.sqlite3") as g:
        g.enroll("first", unit(rng, 1), model_id="m", model_version="1")
        search_gallery(g, "m", unit(rng, 1)[0])
        stale = g.search_cache[("m", None)]
        for i in range(1010):
            g.enroll(f"p{i}", unit(rng, 1), model_id="m", model_version="1")
        kept = g._rows("SELECT COUNT(*) FROM changes")[0][0]
        assert kept < 1010 and g.changes_since(stale.revision) is None
        hits = search_gallery_batch(g, "m", g.embeddings("m")[0][-1:], k=1)
        assert hits[0][0][0] == "p1009" and g.search_cache[("m", None)] is not stale
    assert CHANGE_LOG_KEEP >= 10_000  # the real default keeps far more than a burst of enrolments


def test_a_search_inside_a_rolled_back_transaction_leaves_no_phantom(target):
    """What a transaction sees before it commits may roll back: it must not reach the cached index."""
    rng = np.random.default_rng(12)
    x = unit(rng, 3)
    with open_gallery(target) as g:
        g.enroll("kept", x[0], model_id="m", model_version="1")
        assert search_gallery(g, "m", x[0], k=1)[0][0] == "kept"
        with pytest.raises(RuntimeError):
            with g.transaction():
                g.enroll("phantom", x[1], model_id="m", model_version="1")
                assert search_gallery(g, "m", x[1], k=1)[0][0] == "phantom"  # visible to itself
                assert g.models()["m"]["count"] == 2
                raise RuntimeError("cancelled")
        g.enroll("real", x[2], model_id="m", model_version="1")  # SQLite may reuse the rolled-back change number
        assert [n for n, _ in search_gallery(g, "m", x[1], k=5)] == sorted(["kept", "real"], key=lambda n: -float(
            x[1] @ x[0 if n == "kept" else 2]))
        assert g.models()["m"]["count"] == 2


def test_concurrent_first_searches_build_one_index(tmp_path, monkeypatch):
    """At a million rows a build takes a minute: threads that miss together wait for one build, not each make one."""
    import threading

    from occluface.gallery import search as search_module

    rng = np.random.default_rng(13)
    x = unit(rng, 50)
    builds = []
    real_build = search_module._build

    def slow_build(*args, **kwargs):
        builds.append(1)
        time.sleep(0.3)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(search_module, "_build", slow_build)
    with open_gallery(tmp_path / "g.sqlite3") as g:
        with g.transaction():
            for i, v in enumerate(x):
                g.enroll(f"p{i}", v, model_id="m", model_version="1")
        answers = []
        threads = [threading.Thread(target=lambda i=i: answers.append(search_gallery(g, "m", x[i], k=1)[0][0]))
                   for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(answers) == ["p0", "p1", "p2", "p3"] and len(builds) == 1
