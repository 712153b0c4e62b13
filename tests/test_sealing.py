"""Templates encrypted at rest (optional): with a gallery key, no embedding float and no thumbnail JPEG reaches
the database files (SQLite's file, WAL and shared memory; PostgreSQL's table files), searches give the same
answers as a plain gallery, a wrong or missing key is a clear error, a tampered or moved blob never opens, and a
plain gallery is sealed in place with its old plain copies scrubbed."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from occluface.gallery import GalleryError, open_gallery, search_gallery, search_gallery_batch
from occluface.gallery.sealing import (
    KEY_ENV,
    KEY_FILE_ENV,
    OVERHEAD,
    Sealer,
    load_sealer,
    new_key_text,
    write_key_file,
)
from occluface.gallery.store import (
    SCHEMA_VERSION,
    EmbeddingError,
    schema_statements,
    seal_gallery,
    validate_embeddings,
)

DIM = 64
SOI = b"\xff\xd8\xff"  # the JPEG start-of-image marker
ZEROS = (np.float32(0.0).tobytes(), np.float32(-0.0).tobytes())
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    """Unit vectors exactly as the store keeps them (its normalisation applied: the bytes searched for on disk)."""
    return validate_embeddings(rng.standard_normal((n, d)).astype(np.float32))


def jpeg(seed: int, side: int = 40) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    assert buf.getvalue().startswith(SOI)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """Where a gallery lives: a file path or a PostgreSQL URL (a fresh database)."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.sqlite3")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def key_file(tmp_path) -> Path:
    return write_key_file(tmp_path / "gallery.key")


def sqlite_files(path: str | Path) -> dict[str, bytes]:
    """The raw bytes of the gallery file, its write-ahead log and its shared-memory index (those that exist)."""
    path = Path(path)
    return {s or "db": (path.parent / (path.name + s)).read_bytes()
            for s in ("", "-wal", "-shm") if (path.parent / (path.name + s)).exists()}


def stored_blobs(store) -> list[bytes]:
    """Every sealed blob as stored (read through the store's own connection, nothing opened)."""
    rows = store._rows("SELECT vector FROM embeddings") + store._rows("SELECT image FROM thumbnails") + \
        store._rows("SELECT thumbnail FROM checkins WHERE thumbnail IS NOT NULL")
    return [bytes(r[0]) for r in rows]


def leaks(data: bytes, vectors: np.ndarray, thumbnails: list[bytes], blobs: list[bytes] = (), *,
          short: bool = True) -> list[str]:
    """What of the plain templates the raw bytes give away.

    Any 16-byte window (at every byte offset) of a vector's float32 bytes, and a thumbnail's first 16 bytes, are
    searched in the raw bytes as they are. Single floats (4 bytes) and the 3-byte JPEG marker are so short that
    random ciphertext holds one by chance now and then, so they (``short``) are searched in the bytes outside the
    stored sealed blobs (``blobs``, replaced by zeros first): what a sealed gallery must never have there is
    plain data. A float of exactly 0 (some matchers' vectors hold one) is not searched: zeros pad every file."""
    found = []
    for i, vec in enumerate(vectors):
        raw = vec.astype("<f4").tobytes()
        found += [f"vector {i} bytes {o}..{o + 16}" for o in range(len(raw) - 15) if raw[o : o + 16] in data]
    found += [f"thumbnail {i} header" for i, t in enumerate(thumbnails) if t[:16] in data]
    if not short:
        return found
    outside = data
    for blob in blobs:
        outside = outside.replace(blob, bytes(len(blob)))
    for i, vec in enumerate(vectors):
        raw = vec.astype("<f4").tobytes()
        found += [f"vector {i} float {o // 4}" for o in range(0, len(raw), 4)
                  if raw[o : o + 4] not in ZEROS and raw[o : o + 4] in outside]
    if thumbnails and SOI in outside:
        found.append("a JPEG start-of-image marker")
    return found


# ----------------------------------------------------------------------------- the cipher and the key
def test_sealer_binds_each_blob_to_its_place():
    sealer = Sealer(os.urandom(32))
    blob = sealer.seal(b"plain bytes", b"vector:1")
    assert len(blob) == len(b"plain bytes") + OVERHEAD and b"plain" not in blob
    assert sealer.open(blob, b"vector:1") == b"plain bytes"
    assert sealer.seal(b"plain bytes", b"vector:1") != blob  # a fresh nonce every time
    with pytest.raises(GalleryError, match="cannot decrypt .*wrong gallery key"):
        sealer.open(blob, b"vector:2")  # moved to another row
    with pytest.raises(GalleryError, match="cannot decrypt"):
        sealer.open(blob[:-1] + bytes([blob[-1] ^ 1]), b"vector:1")  # one bit flipped
    with pytest.raises(GalleryError, match="cannot decrypt"):
        Sealer(os.urandom(32)).open(blob, b"vector:1")  # another key
    assert repr(sealer) == "Sealer(source='the gallery key')"  # never the key


def test_key_sources_and_their_errors(tmp_path, monkeypatch):
    assert load_sealer() is None
    text = new_key_text()
    monkeypatch.setenv(KEY_ENV, text)
    assert load_sealer().source == f"${KEY_ENV}"
    assert load_sealer(key=False) is None  # explicitly none, whatever the environment says
    monkeypatch.setenv(KEY_ENV, "c2hvcnQ=")  # base64 of 5 bytes
    with pytest.raises(GalleryError, match=rf"\${KEY_ENV}: not a gallery key: it decodes to 5 bytes"):
        load_sealer()
    monkeypatch.setenv(KEY_ENV, "not base64 at all!")
    with pytest.raises(GalleryError, match=rf"\${KEY_ENV}: not a gallery key"):
        load_sealer()
    monkeypatch.delenv(KEY_ENV)
    # a key file: owner-only, never overwritten, refused when others may read it
    path = write_key_file(tmp_path / "k")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(GalleryError, match="exists already"):
        write_key_file(path)
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    assert load_sealer().source == f"gallery key file {path}"
    os.chmod(path, 0o644)
    with pytest.raises(GalleryError, match=rf"gallery key file {path}: may be read by group or others .*chmod 600"):
        load_sealer()
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(GalleryError, match=r"missing.key: cannot read it"):
        load_sealer()
    monkeypatch.setenv(KEY_ENV, text)
    with pytest.raises(GalleryError, match="set only one"):
        load_sealer()
    # standard and URL-safe base64, with or without padding and line breaks, give the same key
    raw = os.urandom(32)
    import base64

    for form in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=") + "\n"):
        assert Sealer.from_text(form, source="t").open(Sealer(raw).seal(b"x", b"a"), b"a") == b"x"


# ----------------------------------------------------------------------------- nothing plain on disk
def test_sealed_sqlite_files_hold_no_vector_float_and_no_jpeg(tmp_path, key_file, monkeypatch):
    rng = np.random.default_rng(1)
    vectors = unit(rng, 3)
    thumbs = [jpeg(1), jpeg(2), jpeg(3)]
    checkin_thumb = jpeg(4)

    def fill(g) -> None:
        g.enroll("alice", vectors[:2], model_id="m", model_version="1", thumbnails=thumbs[:2], sources=["a1", "a2"])
        g.enroll("bob", vectors[2:], model_id="m", model_version="1", thumbnails=thumbs[2:])
        g.add_checkin(time="2026-01-01T08:00:00+00:00", camera="gate", name=None, similarity=0.2, mask=None,
                      frames=5, first_seen="2026-01-01T07:59:58+00:00", thumbnail=checkin_thumb)
        assert search_gallery(g, "m", vectors[2], k=1)[0][0] == "bob"

    plain_path = tmp_path / "plain" / "gallery.sqlite3"
    with open_gallery(plain_path) as plain:  # the control: the check sees plain templates where they are
        fill(plain)
        assert not plain.sealed and len(leaks(sqlite_files(plain_path)["db"] + sqlite_files(plain_path)["-wal"],
                                             vectors, thumbs + [checkin_thumb])) >= 3 * (4 * DIM - 15)

    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    path = tmp_path / "sealed" / "gallery.sqlite3"
    g = open_gallery(path)
    try:
        assert g.sealed and g._one("PRAGMA journal_mode")[0] == "wal"
        fill(g)
        files = sqlite_files(path)
        assert set(files) == {"db", "-wal", "-shm"} and len(files["-wal"]) > 0  # the WAL holds the writes now
        blobs = stored_blobs(g)
        assert len(blobs) == 7 and all(len(b) == 4 * DIM + OVERHEAD for b in blobs[:3])
        for name, data in files.items():
            assert leaks(data, vectors, thumbs + [checkin_thumb], blobs) == [], name
        # what is read back is what was enrolled
        matrix, names = g.embeddings("m")
        assert names == ["alice", "alice", "bob"] and np.allclose(matrix, vectors, atol=1e-6)
        assert g.thumbnails("alice") == thumbs[:2] and g.thumbnails("bob") == thumbs[2:]
        [event] = g.checkins()
        assert event["has_thumbnail"] and g.checkin_thumbnail(event["id"]) == checkin_thumb
    finally:
        g.close()
    for name, data in sqlite_files(path).items():  # after the closing checkpoint too
        assert leaks(data, vectors, thumbs + [checkin_thumb], blobs) == [], name


def test_sealed_postgres_sends_no_plain_template_to_the_server(postgres_server, postgres_url, key_file):
    rng = np.random.default_rng(2)
    vectors = unit(rng, 2)
    thumbs = [jpeg(5), jpeg(6)]
    with open_gallery(postgres_url, key_file=key_file) as g:
        assert g.sealed
        g.enroll("alice", vectors, model_id="m", model_version="1", thumbnails=thumbs)
        assert g.thumbnails("alice") == thumbs
        blobs = stored_blobs(g)
    # sealed on the client: neither the table files nor the server's write-ahead log ever saw a plain vector
    data = b"".join(p.read_bytes() for sub in ("base", "pg_wal") for p in (postgres_server.data_dir / sub).rglob("*")
                    if p.is_file())
    # other tests share these files and store plain JPEGs, whose first bytes (the JFIF header) are all alike: each
    # thumbnail is looked for by its own coded data instead
    assert leaks(data, vectors, [], short=False) == [] and blobs[0] in data
    assert [i for i, t in enumerate(thumbs) if t[len(t) // 2 : len(t) // 2 + 32] in data or t[-34:-2] in data] == []


# ----------------------------------------------------------------------------- same answers, clear errors
def test_sealed_gallery_searches_like_a_plain_one(target, tmp_path, key_file):
    rng = np.random.default_rng(3)
    people = {f"p{i}": unit(rng, 2) for i in range(12)}
    queries = unit(rng, 8)
    with open_gallery(tmp_path / "plain.sqlite3") as plain, open_gallery(target, key_file=key_file) as sealed:
        for g in (plain, sealed):
            for name, vecs in people.items():
                g.enroll(name, vecs, model_id="m", model_version="1")
        assert sealed.sealed and not plain.sealed
        assert search_gallery_batch(sealed, "m", queries, k=5) == search_gallery_batch(plain, "m", queries, k=5)
        # another process enrols: this one's index follows through the change log (reads by id, opened too)
        extra = unit(rng, 1)
        with open_gallery(target, key_file=key_file) as other:
            other.enroll("late", extra, model_id="m", model_version="1")
        plain.enroll("late", extra, model_id="m", model_version="1")
        assert search_gallery(sealed, "m", extra[0], k=3) == search_gallery(plain, "m", extra[0], k=3)
        assert search_gallery(sealed, "m", extra[0], k=1)[0][0] == "late"
        # erasing a person still works, and the sealed gallery keeps agreeing
        assert sealed.remove_subject("p3") and plain.remove_subject("p3")
        assert "p3" not in sealed and sealed.models()["m"]["count"] == 2 * 11 + 1
        assert search_gallery_batch(sealed, "m", queries, k=5) == search_gallery_batch(plain, "m", queries, k=5)
        assert [e["action"] for e in sealed.audit_entries()] == ["erased"]


def test_wrong_or_missing_key_is_a_clear_error(target, tmp_path, key_file, monkeypatch):
    with open_gallery(target, key_file=key_file) as g:
        g.enroll("alice", unit(np.random.default_rng(4), 1), model_id="m", model_version="1")
    with pytest.raises(GalleryError, match=rf"is sealed .*no gallery key was given; set \${KEY_FILE_ENV}"):
        open_gallery(target)
    other = write_key_file(tmp_path / "other.key")
    with pytest.raises(GalleryError, match=re.escape(f"sealed with another key; gallery key file {other} does not "
                                                     "open it (wrong gallery key?)")):
        open_gallery(target, key_file=other)
    monkeypatch.setenv(KEY_ENV, new_key_text())
    with pytest.raises(GalleryError, match=rf"\${KEY_ENV} does not open it"):
        open_gallery(target)
    monkeypatch.delenv(KEY_ENV)
    with open_gallery(target, key_file=key_file) as g:  # the right key still opens it
        assert g.sealed and [s.name for s in g.list_subjects()] == ["alice"]
    # a key for a gallery of plain templates is refused, not silently mixed
    plain = tmp_path / "plain.sqlite3"
    with open_gallery(plain) as g:
        g.enroll("bob", unit(np.random.default_rng(5), 1), model_id="m", model_version="1")
    with pytest.raises(GalleryError, match="holds face templates that are not encrypted; seal them in place first"):
        open_gallery(plain, key_file=key_file)
    with open_gallery(plain) as g:
        assert not g.sealed and "bob" in g


def test_a_tampered_or_moved_blob_is_an_error_not_a_match(tmp_path, key_file):
    path = tmp_path / "g.sqlite3"
    rng = np.random.default_rng(6)
    with open_gallery(path, key_file=key_file) as g:
        g.enroll("alice", unit(rng, 1), model_id="m", model_version="1", thumbnails=[jpeg(7)])
        g.enroll("mallory", unit(rng, 1), model_id="m", model_version="1", thumbnails=[jpeg(8)])

    def raw(sql: str, args=()) -> list:
        db = sqlite3.connect(path)
        try:
            out = db.execute(sql, args).fetchall()
            db.commit()
            return out
        finally:
            db.close()

    (alice_id, alice_vec), (mallory_id, mallory_vec) = raw("SELECT id, vector FROM embeddings ORDER BY id")
    # mallory's template copied onto alice's row: would make mallory pass as alice; it does not open
    raw("UPDATE embeddings SET vector = ? WHERE id = ?", (mallory_vec, alice_id))
    with open_gallery(path, key_file=key_file) as g:
        with pytest.raises(GalleryError, match=rf"cannot decrypt embedding {alice_id} .*wrong gallery key"):
            g.embeddings("m")
        with pytest.raises(GalleryError, match="cannot decrypt"):
            search_gallery(g, "m", unit(rng, 1)[0], k=1)
    flipped = bytearray(alice_vec)
    flipped[40] ^= 0x01
    raw("UPDATE embeddings SET vector = ? WHERE id = ?", (bytes(flipped), alice_id))
    with open_gallery(path, key_file=key_file) as g, pytest.raises(GalleryError, match="cannot decrypt embedding"):
        g.embeddings("m")
    raw("UPDATE embeddings SET vector = ? WHERE id = ?", (alice_vec, alice_id))
    (thumb,) = raw("SELECT image FROM thumbnails WHERE embedding_id = ?", (mallory_id,))[0]
    raw("UPDATE thumbnails SET image = ? WHERE embedding_id = ?", (thumb, alice_id))
    with open_gallery(path, key_file=key_file) as g:
        assert g.embeddings("m")[1] == ["alice", "mallory"]  # restored
        with pytest.raises(GalleryError, match="cannot decrypt the thumbnail image"):
            g.thumbnails("alice")
    # the key check value removed (the gallery made to look plain): sealed vectors are refused, never decoded
    raw("DELETE FROM gallery_meta")
    with open_gallery(path) as g, pytest.raises(GalleryError, match="is sealed, but the gallery was opened without"):
        g.embeddings("m")
    with pytest.raises(GalleryError, match="not encrypted"):  # and the key alone will not adopt it as plain
        open_gallery(path, key_file=key_file)


def test_vector_length_is_still_checked_on_a_plain_gallery(tmp_path):
    path = tmp_path / "g.sqlite3"
    with open_gallery(path) as g:
        g.enroll("alice", unit(np.random.default_rng(9), 1), model_id="m", model_version="1")
        with pytest.raises(EmbeddingError, match="dimension 32 but .* dimension 64"):
            g.enroll("bob", unit(np.random.default_rng(9), 1, 32), model_id="m", model_version="1")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the database refuses a bad length too
            g._exec("INSERT INTO embeddings (subject_id, model_id, model_version, dim, vector, created) "
                    "VALUES (1, 'm', '1', 64, ?, 'now')", (b"\0" * 255,))
        with pytest.raises(EmbeddingError, match="one float32 vector"):
            g._pack_vector(np.zeros((2, 2), np.float32), 1, "m", "1")
    db = sqlite3.connect(path)
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()[0]
    db.close()
    assert "4 * dim + 28" in sql


# ----------------------------------------------------------------------------- converting a plain gallery
def test_seal_gallery_converts_in_place_and_scrubs_the_plain_copies(target, key_file):
    rng = np.random.default_rng(10)
    vectors = unit(rng, 3)
    thumbs = [jpeg(11), jpeg(12), jpeg(13)]
    with open_gallery(target) as g:
        g.enroll("alice", vectors[:2], model_id="m", model_version="1", thumbnails=thumbs[:2])
        g.enroll("bob", vectors[2:], model_id="m", model_version="1", thumbnails=thumbs[2:])
        g.add_checkin(time="2026-01-01T08:00:00+00:00", camera="gate", name=None, similarity=0.1, mask=None,
                      frames=3, first_seen="2026-01-01T08:00:00+00:00", thumbnail=jpeg(14))
        before = search_gallery_batch(g, "m", vectors, k=2)
        assert seal_gallery(g, key_file=key_file) == {"embeddings": 3, "thumbnails": 3, "checkin_thumbnails": 1}
        assert g.sealed and search_gallery_batch(g, "m", vectors, k=2) == before  # the same store goes on
        with pytest.raises(GalleryError, match="sealed already"):
            g.seal(key_file=key_file)
        if not target.startswith("postgresql"):
            blobs = stored_blobs(g)
            for name, data in sqlite_files(target).items():
                assert leaks(data, vectors, thumbs + [jpeg(14)], blobs) == [], name
    with open_gallery(target, key_file=key_file) as g:
        assert search_gallery_batch(g, "m", vectors, k=2) == before
        assert g.thumbnails("alice") == thumbs[:2] and g.checkin_thumbnail(g.checkins()[0]["id"]) == jpeg(14)
        g.enroll("carol", unit(rng, 1), model_id="m", model_version="1")
        assert g.remove_subject("alice") and g.thumbnails("bob") == thumbs[2:]


def test_postgres_seal_leaves_no_plain_bytes_in_the_table_files(postgres_server, postgres_url, key_file):
    rng = np.random.default_rng(15)
    secret = unit(rng, 1)
    thumb = b"thumbnail-of-alice-" + bytes(range(40))
    with open_gallery(postgres_url) as g:
        g.enroll("alice", secret, model_id="m", model_version="1", thumbnails=[thumb])
        base = postgres_server.data_dir / "base"

        def table_files() -> bytes:
            return b"".join(p.read_bytes() for p in base.rglob("*") if p.is_file())

        g._exec("CHECKPOINT")  # the plain rows reach the table files (the check below can see them)
        assert secret[0].astype("<f4").tobytes() in table_files()
        g.seal(key_file=key_file)
    data = table_files()
    assert leaks(data, secret, [], short=False) == [] and b"thumbnail-of-alice" not in data


def test_a_plain_writer_cannot_write_into_a_gallery_sealed_since(tmp_path, key_file):
    path = tmp_path / "g.sqlite3"
    with open_gallery(path) as plain:  # empty: opened without a key, stays open
        with open_gallery(path, key_file=key_file) as sealed:  # an empty gallery opened with a key becomes sealed
            assert sealed.sealed
        with pytest.raises(GalleryError, match="sealed after this process opened it"):
            plain.enroll("alice", unit(np.random.default_rng(16), 1), model_id="m", model_version="1")
        with pytest.raises(GalleryError, match="sealed after this process opened it"):
            plain.add_checkin(time="t", camera="gate", name=None, similarity=0.0, mask=None, frames=1,
                              first_seen="t", thumbnail=jpeg(17))
        plain.add_checkin(time="t", camera="gate", name=None, similarity=0.0, mask=None, frames=1, first_seen="t")
    with open_gallery(path, key_file=key_file) as g:
        assert len(g) == 0 and g.models() == {}


def _old_gallery_sql(dialect: str) -> list[str]:
    return [st for version in range(1, 5) for st in schema_statements(version, dialect)]


def test_sqlite_gallery_of_schema_4_is_rebuilt_without_losing_thumbnails(tmp_path, key_file):
    """Schema 5 rebuilds the embeddings table (SQLite cannot change a CHECK in place); the thumbnails pointing at it
    survive the rebuild, still cascade on removal, and the gallery can then be sealed."""
    path = tmp_path / "old.sqlite3"
    vec = unit(np.random.default_rng(18), 2)
    db = sqlite3.connect(path)
    for statement in _old_gallery_sql("sqlite"):
        db.execute(statement)
    db.execute("INSERT INTO schema_version (version) VALUES (4)")
    db.execute("INSERT INTO subjects (id, name, meta, created) VALUES (1, 'ada', '{}', 'then'), (2, 'bea', '{}', 'then')")
    for eid, sid in ((7, 1), (9, 2)):
        db.execute("INSERT INTO embeddings (id, subject_id, model_id, model_version, dim, vector, created) VALUES "
                   "(?, ?, 'm', '1', ?, ?, 'then')", (eid, sid, DIM, vec[sid - 1].astype("<f4").tobytes()))
        db.execute("INSERT INTO thumbnails (embedding_id, image) VALUES (?, ?)", (eid, jpeg(eid)))
    db.commit()
    db.close()
    with open_gallery(path) as g:
        assert g._one("SELECT version FROM schema_version")[0] == SCHEMA_VERSION == 6
        assert g._one("PRAGMA foreign_keys")[0] == 1
        assert g.thumbnails("ada") == [jpeg(7)] and g.thumbnails("bea") == [jpeg(9)]
        assert search_gallery(g, "m", vec[1], k=1)[0][0] == "bea"
        assert [r[0] for r in g._rows("SELECT id FROM embeddings ORDER BY id")] == [7, 9]  # ids kept
        assert {r[0] for r in g._rows("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'embeddings'")} \
            >= {"embeddings_by_model", "embeddings_by_subject", "embeddings_by_model_version"}
        assert g.remove_subject("ada") and g._one("SELECT COUNT(*) FROM thumbnails")[0] == 1  # still cascades
        seal_gallery(g, key_file=key_file)
    with open_gallery(path, key_file=key_file) as g:
        assert g.thumbnails("bea") == [jpeg(9)] and search_gallery(g, "m", vec[1], k=1)[0][0] == "bea"


def test_postgres_gallery_of_schema_4_is_migrated_and_sealed(postgres_url, key_file):
    import psycopg

    vec = unit(np.random.default_rng(19), 1)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in _old_gallery_sql("postgresql"):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (4)")
        conn.execute("INSERT INTO subjects (name, meta, created) VALUES ('ada', '{}', 'then')")
        conn.execute("INSERT INTO embeddings (subject_id, model_id, model_version, dim, vector, created) "
                     "SELECT id, 'm', '1', %s, %s, 'then' FROM subjects", (DIM, vec[0].astype("<f4").tobytes()))
    with open_gallery(postgres_url) as g:
        checks = sorted(r[0] for r in g._rows("SELECT conname FROM pg_constraint WHERE conrelid = 'embeddings'::regclass "
                                               "AND contype = 'c'"))
        assert checks == ["embeddings_dim_check", "embeddings_vector_length"]
        with pytest.raises(GalleryError, match="embeddings_vector_length"):  # a wrong length is still refused
            g._exec("INSERT INTO embeddings (subject_id, model_id, model_version, dim, vector, created) "
                    "SELECT id, 'm', '1', 64, ?, 'now' FROM subjects", (b"\0" * 255,))
        g.seal(key_file=key_file)
    with open_gallery(postgres_url, key_file=key_file) as g:
        assert search_gallery(g, "m", vec[0], k=1)[0][0] == "ada"


# ----------------------------------------------------------------------------- the command line
def test_cli_makes_a_key_and_seals_a_gallery(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from occluface.cli import app

    runner = CliRunner()
    key = tmp_path / "keys" / "gallery.key"
    key.parent.mkdir()
    r = runner.invoke(app, ["gallery-key", "new", "--out", str(key)])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and KEY_FILE_ENV in r.output
    r = runner.invoke(app, ["gallery-key", "new", "--out", str(key)])
    assert r.exit_code == 2 and "exists already" in r.output
    gallery = tmp_path / "g.sqlite3"
    with open_gallery(gallery) as g:
        g.enroll("alice", unit(np.random.default_rng(20), 1), model_id="m", model_version="1", thumbnails=[jpeg(21)])
    r = runner.invoke(app, ["gallery-key", "seal", "--gallery", str(gallery)])
    assert r.exit_code == 2 and "no gallery key" in r.output
    monkeypatch.setenv(KEY_FILE_ENV, str(key))
    r = runner.invoke(app, ["gallery-key", "seal", "--gallery", str(gallery)])
    assert r.exit_code == 0 and "sealed 1 embedding(s), 1 thumbnail(s)" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["gallery", "list", "--json", "--gallery", str(gallery)])  # the key from the environment
    assert r.exit_code == 0 and "alice" in r.output
    monkeypatch.delenv(KEY_FILE_ENV)
    r = runner.invoke(app, ["gallery", "list", "--gallery", str(gallery)])
    assert r.exit_code == 2 and "is sealed" in r.output and "Traceback" not in r.output
    with open_gallery(gallery, key_file=key) as g:
        assert g.sealed and g.thumbnails("alice") == [jpeg(21)]
        assert [e["action"] for e in g.audit_entries()] == ["seal"]


# ----------------------------------------------------------------------------- end to end
def test_api_and_recognizer_on_a_sealed_gallery(tmp_path, key_file, monkeypatch):
    """The real models through the REST API: enrol, identify, fetch a thumbnail; the files hold no plain template."""
    from fastapi.testclient import TestClient

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore, hash_key

    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    path = tmp_path / "g.sqlite3"
    api_key = "ocf_sealing-test"
    app = create_app(ApiSettings(gallery=path, keys=KeyStore({"gate": hash_key(api_key)})))
    h = {"X-API-Key": api_key}

    def photo(name: str, field: str):
        return (field, (name, (SAMPLES / name).read_bytes(), "image/jpeg"))

    with TestClient(app) as c:
        for name, pic in (("Obama", "fr_obama.jpg"), ("Biden", "fr_biden.jpg")):
            r = c.post("/api/subjects", data={"name": name}, files=[photo(pic, "files")], headers=h)
            assert r.status_code == 201, r.text
        r = c.post("/api/identify", files=[photo("fr_two_people_obama_biden.jpg", "file")], headers=h)
        assert r.status_code == 200 and sorted(f["label"] for f in r.json()["faces"]) == ["Biden", "Obama"], r.text
        thumb = c.get("/api/subjects/Obama/thumbnails/0", headers=h)
        assert thumb.status_code == 200 and thumb.content.startswith(SOI)
        store = app.state.service.store
        assert store.sealed
        model = next(iter(store.models()))
        vectors, _ = store.embeddings(model)
        files = sqlite_files(path)
        blobs = stored_blobs(store)
        for name, data in files.items():
            assert leaks(data, vectors, [thumb.content], blobs) == [], name
