"""Access control and privacy: every endpoint without a key, with a wrong, revoked or expired one and with each scope.

Rules checked here: every route except the page and the health check needs a key holding its scope, and is
refused otherwise before any upload is processed, without a name, image or vector in the answer; an ``enrol``
key touches only the people it enrolled; uploads are size-limited on every upload route; the gallery file is
owner-only whatever the umask, and removing a person (CLI or API) deletes every trace from the files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import httpx2
import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from occluface.api.app import ApiSettings, create_app
from occluface.api.keys import ApiKey, KeyStore, hash_key
from occluface.api.limits import Rate

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEY = "ocf_access-test-key"  # every scope
LIMIT = 1024 * 1024
OFF = Rate(0.0, 0.0)

#: (method, path) -> the scope it needs (None: open). A new route must be added here, so its protection is a decision.
ROUTES = {
    ("GET", "/"): None,
    ("GET", "/api/health"): None,
    ("POST", "/api/identify"): "identify",
    ("POST", "/api/verify"): "identify",
    ("POST", "/api/rollcall"): "identify",
    ("POST", "/api/mask-check"): "identify",
    ("GET", "/api/checkins"): "identify",  # who came past which camera when
    ("GET", "/api/checkins/stream"): "identify",
    ("GET", "/api/cameras/{camera}/preview.jpg"): "identify",  # faces in a camera's view
    ("GET", "/api/cameras/{camera}/preview.mjpg"): "identify",
    ("POST", "/api/subjects"): "enrol",
    ("DELETE", "/api/subjects/{name}"): "enrol",
    ("GET", "/api/subjects"): "admin",  # every enrolled name
    ("GET", "/api/subjects/{name}/thumbnails/{index}"): "admin",
    ("GET", "/api/keys"): "admin",
    ("GET", "/api/audit"): "admin",
}
PAST, FUTURE = "2020-01-01T00:00:00+00:00", "2099-01-01T00:00:00+00:00"
#: the keys of the test server besides KEY: name -> (key, record)
KEYS = {
    "identify": ("ocf_identify-only", ApiKey("gate-1", hash_key("ocf_identify-only"), ("identify",), expires=FUTURE)),
    "enrol": ("ocf_enrol-only", ApiKey("desk-1", hash_key("ocf_enrol-only"), ("enrol",))),
    "admin": ("ocf_admin", ApiKey("admin-1", hash_key("ocf_admin"), ("admin",))),
    "revoked": ("ocf_revoked", ApiKey("old-admin", hash_key("ocf_revoked"), ("admin",), revoked=PAST)),
    "expired": ("ocf_expired", ApiKey("temp-admin", hash_key("ocf_expired"), ("admin",), expires=PAST)),
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
    "revoked": ({"X-API-Key": KEYS["revoked"][0]}, 403),
    "expired": ({"X-API-Key": KEYS["expired"][0]}, 403),
}
ADMIN = {"X-API-Key": KEY}


def photo(name: str = "fr_obama.jpg") -> bytes:
    return (SAMPLES / name).read_bytes()


def key_store() -> KeyStore:
    store = KeyStore.load(None, [KEY])
    store.records.update({rec.name: rec for _, rec in KEYS.values()})
    return store


@pytest.fixture(scope="module")
def gallery_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("access") / "gallery.sqlite3"


@pytest.fixture(scope="module")
def client(gallery_path):
    app = create_app(ApiSettings(gallery=gallery_path, keys=key_store(), max_upload_bytes=LIMIT,
                                 key_rate=OFF, client_rate=OFF, failed_key_rate=OFF))
    with TestClient(app) as c:
        for name, pic in (("Obama", "fr_obama.jpg"), ("Biden", "fr_biden.jpg")):
            r = c.post("/api/subjects", data={"name": name}, headers=ADMIN,
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


#: Routes that answer an endless stream when allowed: read up to their first chunk, then disconnect.
ENDLESS = {"/api/checkins/stream"}


def stream_call(app, path: str, headers: dict, timeout: float = 60.0) -> httpx2.Response:
    """GET an endless stream straight through the ASGI app (the test client would wait for its end): the status,
    the headers and the body up to the first chunk of an answer that keeps streaming, all of a refusal."""
    import asyncio

    async def go() -> httpx2.Response:
        start: dict = {}
        body: list[bytes] = []
        done = asyncio.Event()
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body") or start.get("status") == 200:
                    done.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "state": {},
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [(b"host", b"testserver")],
                 "client": ("testclient", 50000), "server": ("testserver", 80)}
        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(done.wait(), timeout)
        try:
            await asyncio.wait_for(task, 10)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            task.cancel()
        return httpx2.Response(start["status"], headers=[(k.decode(), v.decode()) for k, v in start["headers"]],
                              content=b"".join(body))

    return asyncio.run(go())


def call(client, method: str, path: str, headers: dict, *, name: str = "Obama", body: bytes | None = None):
    """One request to a route pattern with plausible arguments (a valid face photo unless ``body`` is given)."""
    url = path.replace("{name}", name).replace("{index}", "0").replace("{camera}", "gate")
    data = photo() if body is None else body
    if method == "GET" and path in ENDLESS:
        return stream_call(client.app, url, headers)
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


PROTECTED = [r for r, scope in ROUTES.items() if scope]


def assert_refused(client, gallery_path, route, headers, code) -> None:
    before = face_data(gallery_path)
    audited = len(client.app.state.service.store.audit_entries())
    r = call(client, *route, headers)
    assert r.status_code == code, r.text
    assert "key" in r.json()["error"]
    assert_no_face_data(r)
    assert b"Obama" not in r.content and b"Biden" not in r.content, "a refused call returned a name"
    # refused before the upload is decoded: an empty "photo" still gets the key error, not a decode error
    r = call(client, *route, headers, body=b"")
    assert r.status_code == code
    assert face_data(gallery_path) == before, "a refused request must not change the gallery"
    refused = client.app.state.service.store.audit_entries()[audited:]  # but both attempts are on the record
    assert [e["status"] for e in refused] == [code, code] and all(e["names"] == [] for e in refused)


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_protected_routes_refuse_bad_keys_before_touching_anything(client, gallery_path, route, case):
    headers, code = BAD_KEYS[case]
    assert_refused(client, gallery_path, route, headers, code)
    assert [s["name"] for s in client.get("/api/subjects", headers=ADMIN).json()["subjects"]] == ["Biden", "Obama"]


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("scope", ["identify", "enrol", "admin"])
def test_each_scope_opens_exactly_its_routes(client, gallery_path, route, scope):
    key, record = KEYS[scope]
    if not record.allows(ROUTES[route]):
        assert_refused(client, gallery_path, route, {"X-API-Key": key}, 403)
        assert "scope" in call(client, *route, {"X-API-Key": key}).json()["error"]
        return
    # allowed: past the key check, without changing anything (an empty upload, a person not enrolled)
    before = face_data(gallery_path)
    r = call(client, *route, {"X-API-Key": key}, body=b"", name="Nobody")
    assert r.status_code not in (401, 403, 429), r.text
    assert face_data(gallery_path) == before


def test_open_routes_work_without_a_key_and_leak_no_face_data(client):
    for (method, path), scope in ROUTES.items():
        if scope:
            continue
        r = call(client, method, path, {})
        assert r.status_code == 200, (path, r.text)
        assert_no_face_data(r)
        assert b"Obama" not in r.content
    for name in ("openapi.json", "docs", "redoc"):
        assert_no_face_data(client.get(f"/{name}"))
    listing = client.get("/api/subjects", headers=ADMIN).json()["subjects"]
    assert listing and set(listing[0]) == {"name", "embeddings", "created"} and isinstance(listing[0]["embeddings"], int)


def test_right_key_opens_each_protected_route(client):
    r = call(client, "GET", "/api/subjects/{name}/thumbnails/{index}", ADMIN)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"
    r = call(client, "POST", "/api/subjects", ADMIN, body=photo("fr_kit_harington.jpeg"))  # someone not enrolled yet
    assert r.status_code == 201 and r.json()["name"] == "Intruder"
    r = call(client, "DELETE", "/api/subjects/{name}", ADMIN, name="Intruder")
    assert r.status_code == 200 and r.json() == {"removed": "Intruder"}
    keys = client.get("/api/keys", headers=ADMIN).json()["keys"]
    assert {k["name"]: k["state"] for k in keys}["old-admin"] == "revoked" and "sha256" not in json.dumps(keys)


def test_enrol_key_touches_only_the_people_it_enrolled(client, gallery_path):
    enrol = {"X-API-Key": KEYS["enrol"][0]}
    r = call(client, "POST", "/api/subjects", enrol, body=photo("fr_kit_harington.jpeg"))
    assert r.status_code == 201, r.text
    before = face_data(gallery_path)
    for method, name in (("DELETE", "Obama"), ("POST", "Obama")):  # Obama was enrolled by the admin key
        r = client.delete("/api/subjects/Obama", headers=enrol) if method == "DELETE" else client.post(
            "/api/subjects", data={"name": name}, headers=enrol, files=[("files", ("x.jpg", photo(), "image/jpeg"))])
        assert r.status_code == 403 and "enrolled by another key" in r.json()["error"]
    assert face_data(gallery_path) == before
    assert client.delete("/api/subjects/Intruder", headers=enrol).status_code == 200


def test_kiosk_serves_identify_without_a_key_to_this_machine_only(tmp_path):
    settings = ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore(), kiosk=True)
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 5000)) as local, TestClient(app, client=("10.0.0.7", 5000)) as remote:
        r = call(local, "POST", "/api/identify", {})
        assert r.status_code == 200 and r.json()["faces"][0]["name"] is None, r.text
        assert call(local, "GET", "/api/subjects", {}).status_code == 403  # admin routes stay closed
        assert call(local, "POST", "/api/subjects", {}).status_code == 403
        assert call(remote, "POST", "/api/identify", {}).status_code == 403
        assert [e["actor"] for e in app.state.service.store.audit_entries()][:1] == ["kiosk"]
    out = CliRunner().invoke(__import__("occluface.cli", fromlist=["app"]).app, ["serve", "--kiosk", "--host", "0.0.0.0"])
    assert out.exit_code != 0 and "127.0.0.1" in out.output


def test_server_without_keys_refuses_every_protected_route(tmp_path):
    app = create_app(ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore(), failed_key_rate=OFF))
    with TestClient(app) as c:
        for route in PROTECTED:
            for headers in ({}, {"X-API-Key": KEY}, {"X-API-Key": ""}):
                r = call(c, *route, headers, body=b"")
                assert r.status_code == 403 and "no API keys configured" in r.json()["error"]


def test_keys_file_holds_only_hashes_and_is_owner_only(tmp_path):
    from occluface.cli import app

    keys = tmp_path / "keys.json"
    out = CliRunner().invoke(app, ["apikey", "create", "gate-7", "--keys", str(keys), "--scope", "identify"])
    assert out.exit_code == 0, out.output
    key = out.output.split()[-1]
    assert key.startswith("ocf_") and len(key) > 40
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    text = keys.read_text()
    entry = json.loads(text)["keys"][0]
    assert key not in text and entry["name"] == "gate-7" and entry["sha256"] == hash_key(key)
    assert entry["scopes"] == ["identify"] and entry["revoked"] is None
    store = KeyStore.load(keys)
    assert store.check(key) and not store.check(hash_key(key)) and not store.check("")


def test_key_lifecycle_in_the_gallery_database(tmp_path):
    """create / list / expire / revoke through the CLI; a running server sees each change; each is audited."""
    from occluface.cli import app

    gallery = str(tmp_path / "g.sqlite3")
    cli = CliRunner()
    out = cli.invoke(app, ["apikey", "create", "gate-9", "--gallery", gallery, "--scope", "identify", "--expires", "30d"])
    assert out.exit_code == 0, out.output
    key = out.output.split()[-1]
    from occluface.api.keys import open_keys

    server = create_app(ApiSettings(gallery=gallery, keys=open_keys(gallery, database=True)))
    with TestClient(server) as c:
        assert call(c, "POST", "/api/identify", {"X-API-Key": key}).status_code == 200
        listed = json.loads(cli.invoke(app, ["apikey", "list", "--gallery", gallery, "--json"]).output)
        assert [(k["name"], k["scopes"], k["state"], k["where"]) for k in listed] == [("gate-9", ["identify"], "active", "gallery")]
        assert key not in json.dumps(listed) and hash_key(key) not in json.dumps(listed)
        assert cli.invoke(app, ["apikey", "expire", "gate-9", "--gallery", gallery]).exit_code == 0
        import time

        time.sleep(1.1)  # servers re-read the database's keys every second
        r = call(c, "POST", "/api/identify", {"X-API-Key": key})
        assert r.status_code == 403 and "expired" in r.json()["error"]
        assert cli.invoke(app, ["apikey", "expire", "gate-9", "--at", "never", "--gallery", gallery]).exit_code == 0
        time.sleep(1.1)
        assert call(c, "POST", "/api/identify", {"X-API-Key": key}).status_code == 200
        assert cli.invoke(app, ["apikey", "revoke", "gate-9", "--gallery", gallery]).exit_code == 0
        time.sleep(1.1)
        r = call(c, "POST", "/api/identify", {"X-API-Key": key})
        assert r.status_code == 403 and "revoked" in r.json()["error"]
        actions = [e["action"] for e in c.app.state.service.store.audit_entries()]
    assert [a for a in actions if a.startswith("key-")] == ["key-created", "key-expiry-set", "key-expiry-set", "key-revoked"]
    out = cli.invoke(app, ["apikey", "create", "gate-9", "--gallery", gallery])
    assert out.exit_code != 0 and "exists already" in out.output
    out = cli.invoke(app, ["apikey", "create", "x", "--gallery", gallery, "--scope", "root"])
    assert out.exit_code != 0 and "unknown" in out.output


def test_rate_limits_answer_429_to_one_key_while_another_is_served(tmp_path):
    """A burst of 200 identify calls from one key: past its burst, 429 with Retry-After; another key still served;
    failed key attempts from one address are cut off too. The clock stands still, so nothing refills."""
    gate, other = KEYS["identify"], KEYS["admin"]
    app = create_app(ApiSettings(gallery=tmp_path / "g.sqlite3", keys=key_store(), key_rate=Rate(5.0, 10.0),
                                 client_rate=Rate(1000.0, 1000.0), failed_key_rate=Rate(0.1, 5.0)))
    app.state.limiter.clock = lambda: 1000.0
    with TestClient(app) as c:
        codes = [call(c, "GET", "/api/checkins", {"X-API-Key": gate[0]}).status_code for _ in range(200)]
        assert codes[:10] == [200] * 10 and set(codes[10:]) == {429}
        r = call(c, "GET", "/api/checkins", {"X-API-Key": gate[0]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "gate-1" in r.json()["error"]
        assert call(c, "GET", "/api/checkins", {"X-API-Key": other[0]}).status_code == 200
        with TestClient(app, client=("10.0.0.9", 1)) as guesser:
            codes = [call(guesser, "GET", "/api/checkins", {"X-API-Key": f"ocf_guess{i}"}).status_code for i in range(8)]
            assert codes == [403] * 5 + [429] * 3
            assert call(guesser, "GET", "/api/checkins", {"X-API-Key": other[0]}).status_code == 429  # cut off
        audit = c.app.state.service.store.audit_entries()
        assert sum(e["status"] == 429 for e in audit) == 190 + 1 + 4


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

    r = client.post("/api/identify", content=body(), headers={"content-type": "multipart/form-data; boundary=b", **ADMIN})
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
    faces = client.post("/api/identify", headers=h, files=[("file", ("x.jpg", photo("fr_biden.jpg"), "image/jpeg"))]).json()["faces"]
    assert all(f["label"] != "Biden" for f in faces)


@pytest.mark.parametrize("with_keys_table", [True, False], ids=["old keys table", "no keys table"])
def test_schema_4_gallery_migrates_its_keys(tmp_path, with_keys_table):
    """A gallery of schema 4 opens with its keys (made before scopes: every scope); SQLite galleries made while
    schema 2 created the keys table on PostgreSQL only have none, and get one."""
    from occluface.gallery.connect import open_gallery
    from occluface.gallery.store import SCHEMA_VERSION, schema_statements

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for statement in (st for version in range(1, 5) for st in schema_statements(version, "sqlite")):
        db.execute(statement)
    if with_keys_table:
        db.execute("INSERT INTO api_keys (name, sha256, created) VALUES ('gate-1', ?, 'then')", (hash_key(KEY),))
    else:
        db.execute("DROP TABLE api_keys")
    db.execute("INSERT INTO schema_version (version) VALUES (4)")
    db.commit()
    db.close()
    with open_gallery(path) as g:
        assert g._one("SELECT version FROM schema_version")[0] == SCHEMA_VERSION
        records = g.api_key_records()
        assert [(r["name"], r["scopes"], r["revoked"]) for r in records] == (
            [("gate-1", "identify,enrol,admin", None)] if with_keys_table else [])
        g.add_api_key("gate-2", hash_key("ocf_new"), scopes="identify")
        assert {r["name"] for r in g.api_key_records()} == ({"gate-1", "gate-2"} if with_keys_table else {"gate-2"})
