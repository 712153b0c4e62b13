"""Access control and privacy: every endpoint without, with a wrong and with the right API key.

Rules checked here (tests/test_api.py covers the basic 401/403 and the hashed key file): every route that
writes the gallery or returns stored face data is refused without the right key, before any upload is
processed; open routes never return thumbnails or raw embeddings; uploads are size-limited on every upload
route; the gallery file is owner-only whatever the umask, and removing a person (CLI or API) deletes every
trace from the files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from occluface.api.app import ApiSettings, create_app
from occluface.api.keys import KeyStore, hash_key

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEY = "ocf_access-test-key"
LIMIT = 1024 * 1024

#: (method, path) -> needs a key. A new route must be added here, so its protection is a decision.
ROUTES = {
    ("GET", "/"): False,
    ("GET", "/api/health"): False,
    ("POST", "/api/identify"): False,
    ("POST", "/api/verify"): False,
    ("POST", "/api/rollcall"): False,
    ("POST", "/api/mask-check"): False,  # heat maps only of the caller's own upload, never of stored data
    ("GET", "/api/subjects"): False,
    ("POST", "/api/subjects"): True,
    ("DELETE", "/api/subjects/{name}"): True,
    ("GET", "/api/subjects/{name}/thumbnails/{index}"): True,
    ("GET", "/api/checkins"): True,  # who came past which camera when
    ("GET", "/api/checkins/stream"): True,
    ("GET", "/api/cameras/{camera}/preview.jpg"): True,  # faces in a camera's view
    ("GET", "/api/cameras/{camera}/preview.mjpg"): True,
}
BAD_KEYS = {
    "missing": ({}, 401),
    "empty": ({"X-API-Key": ""}, 401),
    "wrong": ({"X-API-Key": "ocf_not-the-key"}, 403),
    "hash of the key": ({"X-API-Key": hash_key(KEY)}, 403),
    "key with suffix": ({"X-API-Key": KEY + "x"}, 403),
    "key prefix only": ({"X-API-Key": KEY[:-1]}, 403),
    "upper-cased": ({"X-API-Key": KEY.upper()}, 403),
    "as bearer token": ({"Authorization": f"Bearer {KEY}"}, 401),
}


def photo(name: str = "fr_obama.jpg") -> bytes:
    return (SAMPLES / name).read_bytes()


@pytest.fixture(scope="module")
def gallery_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("access") / "gallery.sqlite3"


@pytest.fixture(scope="module")
def client(gallery_path):
    app = create_app(ApiSettings(gallery=gallery_path, keys=KeyStore.load(None, [KEY]), max_upload_bytes=LIMIT))
    with TestClient(app) as c:
        for name, pic in (("Obama", "fr_obama.jpg"), ("Biden", "fr_biden.jpg")):
            r = c.post("/api/subjects", data={"name": name}, headers={"X-API-Key": KEY},
                       files=[("files", (pic, photo(pic), "image/jpeg"))])
            assert r.status_code == 201, r.text
        yield c


def face_data(gallery_path: Path) -> tuple:
    """Everything the gallery holds about people (subjects, embeddings, thumbnails, keys), read from the file."""
    import sqlite3

    db = sqlite3.connect(gallery_path)
    try:
        return tuple(tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
                     for t in ("subjects", "embeddings", "thumbnails", "api_keys", "checkins"))
    finally:
        db.close()


def call(client, method: str, path: str, headers: dict, *, name: str = "Obama", body: bytes | None = None):
    """One request to a route pattern with plausible arguments (a valid face photo unless ``body`` is given)."""
    url = path.replace("{name}", name).replace("{index}", "0").replace("{camera}", "gate")
    data = photo() if body is None else body
    if method == "GET":
        return client.get(url, headers=headers)
    if method == "DELETE":
        return client.delete(url, headers=headers)
    if path == "/api/verify":
        return client.post(url, headers=headers, files=[("a", ("a.jpg", data, "image/jpeg")),
                                                        ("b", ("b.jpg", data, "image/jpeg"))])
    if path == "/api/subjects":
        return client.post(url, headers=headers, data={"name": "Intruder"}, files=[("files", ("x.jpg", data, "image/jpeg"))])
    return client.post(url, headers=headers, data={"roster": "Obama,Biden"}, files=[("file", ("x.jpg", data, "image/jpeg"))])


def assert_no_face_data(response) -> None:
    """No JPEG/PNG bytes (raw or base64) and no embedding-sized float vector anywhere in the body."""
    raw = response.content
    assert b"\xff\xd8\xff" not in raw and b"\x89PNG" not in raw and b"/9j/" not in raw and b"iVBORw0" not in raw
    if "json" not in response.headers.get("content-type", ""):
        return

    def walk(v) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            assert not (len(v) >= 32 and all(isinstance(x, float) for x in v)), "an embedding-like vector leaked"
            for x in v:
                walk(x)

    walk(response.json())


def test_route_table_is_complete(client):
    """Every API route of the app is classified above (a new endpoint needs a protection decision)."""
    found = {(m, r.path) for r in client.app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert found == set(ROUTES)


@pytest.mark.parametrize("route", [r for r, protected in ROUTES.items() if protected], ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_protected_routes_refuse_bad_keys_before_touching_anything(client, gallery_path, route, case):
    headers, code = BAD_KEYS[case]
    before = face_data(gallery_path)
    audited = len(client.app.state.service.store.audit_entries())
    r = call(client, *route, headers)
    assert r.status_code == code, (case, r.text)
    assert "key" in r.json()["error"]
    assert_no_face_data(r)
    # refused before the upload is decoded: an empty "photo" still gets the key error, not a decode error
    r = call(client, *route, headers, body=b"")
    assert r.status_code == code
    assert face_data(gallery_path) == before, "a refused request must not change the gallery"
    refused = client.app.state.service.store.audit_entries()[audited:]  # but both attempts are on the record
    assert [e["status"] for e in refused] == [code, code] and all(e["names"] == [] for e in refused)
    assert [s["name"] for s in client.get("/api/subjects").json()["subjects"]] == ["Biden", "Obama"]


def test_open_routes_work_without_a_key_and_leak_no_face_data(client):
    for (method, path), protected in ROUTES.items():
        if protected:
            continue
        r = call(client, method, path, {})
        assert r.status_code == 200, (path, r.text)
        assert_no_face_data(r)
    for name in ("openapi.json", "docs", "redoc"):
        assert_no_face_data(client.get(f"/{name}"))
    listing = client.get("/api/subjects").json()["subjects"]
    assert listing and set(listing[0]) == {"name", "embeddings", "created"} and isinstance(listing[0]["embeddings"], int)


def test_right_key_opens_each_protected_route(client):
    h = {"X-API-Key": KEY}
    r = call(client, "GET", "/api/subjects/{name}/thumbnails/{index}", h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"
    r = call(client, "POST", "/api/subjects", h, body=photo("fr_kit_harington.jpeg"))  # someone not enrolled yet
    assert r.status_code == 201 and r.json()["name"] == "Intruder"
    r = call(client, "DELETE", "/api/subjects/{name}", h, name="Intruder")
    assert r.status_code == 200 and r.json() == {"removed": "Intruder"}


def test_server_without_keys_disables_protected_routes(tmp_path):
    app = create_app(ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore()))
    with TestClient(app) as c:
        for route in [r for r, protected in ROUTES.items() if protected]:
            for headers in ({}, {"X-API-Key": KEY}, {"X-API-Key": ""}):
                r = call(c, *route, headers, body=b"")
                assert r.status_code == 403 and "no API keys configured" in r.json()["error"]


def test_keys_file_holds_only_hashes_and_is_owner_only(tmp_path):
    from occluface.cli import app

    keys = tmp_path / "keys.json"
    out = CliRunner().invoke(app, ["apikey", "gate-7", "--keys", str(keys)])
    assert out.exit_code == 0, out.output
    key = out.output.split()[-1]
    assert key.startswith("ocf_") and len(key) > 40
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    text = keys.read_text()
    assert key not in text and json.loads(text)["keys"][0] == {"name": "gate-7", "sha256": hash_key(key)}
    store = KeyStore.load(keys)
    assert store.check(key) and not store.check(hash_key(key)) and not store.check("")


@pytest.mark.parametrize("path", ["/api/identify", "/api/verify", "/api/rollcall", "/api/mask-check", "/api/subjects"])
def test_every_upload_route_is_size_limited(client, path):
    big = b"\xff\xd8\xff" + b"\0" * (LIMIT + 10)
    r = call(client, "POST", path, {"X-API-Key": KEY}, body=big)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    if path == "/api/subjects":  # too many photos in one enrolment
        r = client.post(path, data={"name": "Many"}, headers={"X-API-Key": KEY},
                        files=[("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(21)])
        assert r.status_code == 413
    # a whole request far over the limit is refused from its Content-Length alone
    r = client.post(path, content=b"0" * 10, headers={"content-length": str(LIMIT * 100), "X-API-Key": KEY,
                                                       "content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_chunked_upload_without_length_is_cut_off(client):
    """No Content-Length (chunked): the body is refused as it streams in, not after spooling it all."""
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        for _ in range(200):  # 200 MiB if it were all read
            yield b"\0" * LIMIT
        yield b"\r\n--b--\r\n"

    r = client.post("/api/identify", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    assert client.get("/api/health").status_code == 200


def test_gallery_files_are_owner_only_whatever_the_umask(tmp_path):
    from occluface.gallery.connect import open_gallery

    old = os.umask(0)  # the most permissive umask: files would be world-writable by default
    try:
        path = tmp_path / "open" / "gallery.sqlite3"
        with open_gallery(path) as g:
            g.enroll("a", np.ones((1, 8), np.float32), model_id="m", model_version="1", thumbnails=[b"jpeg"])
            files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
            assert {p.name for p in files} >= {"gallery.sqlite3", "gallery.sqlite3-wal"}
            for p in files:
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_server_created_gallery_is_owner_only(client, gallery_path):
    assert stat.S_IMODE(gallery_path.stat().st_mode) == 0o600
    for p in gallery_path.parent.iterdir():
        if p.name.startswith(gallery_path.name):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


# ----------------------------------------------------------------------------- privacy
def traces(path: Path, name: str) -> dict[str, object]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT e.vector, e.source, t.image FROM embeddings e JOIN subjects s ON s.id = e.subject_id "
                          "LEFT JOIN thumbnails t ON t.embedding_id = e.id WHERE s.name = ?", (name,)).fetchall()
    finally:
        db.close()
    return {"vectors": [r[0] for r in rows], "sources": [r[1] for r in rows], "thumbs": [r[2] for r in rows if r[2]]}


def on_disk(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def assert_gone(path: Path, name: str, secret: dict) -> None:
    data = on_disk(path)
    for blob in secret["vectors"] + secret["thumbs"]:
        assert bytes(blob) not in data, "embedding or thumbnail bytes still in the gallery files"
        mid = len(blob) // 2  # JPEG headers are shared by every thumbnail; the middle is this face's own data
        assert bytes(blob)[mid : mid + 48] not in data, "part of an embedding or thumbnail is still on disk"
    assert name.encode() not in data


def test_cli_gallery_remove_deletes_every_trace(tmp_path):
    from occluface.cli import app

    g = tmp_path / "cli.sqlite3"
    runner = CliRunner()
    for who, pic in (("Barack Obama", "fr_obama.jpg"), ("Joe Biden", "fr_biden.jpg")):
        r = runner.invoke(app, ["enroll", who, str(SAMPLES / pic), "-g", str(g), "--json"])
        assert r.exit_code == 0, r.output
    secret = traces(g, "Barack Obama")
    assert len(secret["vectors"]) == 1 and len(secret["thumbs"]) == 1 and secret["thumbs"][0][:2] == b"\xff\xd8"
    assert bytes(secret["vectors"][0]) in on_disk(g), "the check below must be able to see the bytes"
    r = runner.invoke(app, ["gallery", "remove", "Barack Obama", "-g", str(g)])
    assert r.exit_code == 0, r.output
    assert_gone(g, "Barack Obama", secret)
    r = runner.invoke(app, ["identify", str(SAMPLES / "fr_two_people_obama_biden.jpg"), "-g", str(g), "--json"])
    labels = sorted(f["label"] for f in json.loads(r.stdout)["faces"])
    assert labels == ["Joe Biden", "unknown"], "the removed person is no longer recognised"
    assert len(traces(g, "Joe Biden")["vectors"]) == 1, "other people are untouched"


def test_api_delete_deletes_every_trace(client, gallery_path):
    h = {"X-API-Key": KEY}
    secret = traces(gallery_path, "Biden")
    assert secret["vectors"] and secret["thumbs"]
    assert client.delete("/api/subjects/Biden", headers=h).status_code == 200
    assert_gone(gallery_path, "Biden", secret)
    assert client.get("/api/subjects/Biden/thumbnails/0", headers=h).status_code == 404
    faces = client.post("/api/identify", files=[("file", ("x.jpg", photo("fr_biden.jpg"), "image/jpeg"))]).json()["faces"]
    assert all(f["label"] != "Biden" for f in faces)
