"""REST API: operations, JSON errors, upload limits and API-key protection."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from occluface.api.app import ApiSettings, create_app
from occluface.api.keys import KeyStore, hash_key

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEY = "ocf_test-key-123"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = ApiSettings(gallery=tmp_path_factory.mktemp("api") / "g.sqlite3", keys=KeyStore.load(None, [KEY]),
                           max_upload_bytes=2 * 1024 * 1024)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:  # every call sends the key
        yield c


def _file(name: str, field: str = "file"):
    return (field, (name, (SAMPLES / name).read_bytes(), "image/jpeg"))


def test_enroll_requires_key(client):
    del client.headers["X-API-Key"]
    try:
        for headers, code in (({}, 401), ({"X-API-Key": "wrong"}, 403)):
            r = client.post("/api/subjects", data={"name": "Obama"}, files=[_file("fr_obama.jpg", "files")], headers=headers)
            assert r.status_code == code and "key" in r.json()["error"]
            r = client.delete("/api/subjects/Obama", headers=headers)
            assert r.status_code == code
            r = client.get("/api/subjects/Obama/thumbnails/0", headers=headers)
            assert r.status_code == code
            r = client.post("/api/identify", files=[_file("fr_obama.jpg")], headers=headers)
            assert r.status_code == code and "faces" not in r.json()
    finally:
        client.headers["X-API-Key"] = KEY
    assert client.get("/api/subjects").json()["subjects"] == []


def test_enroll_identify_verify_rollcall_delete(client):
    h = {"X-API-Key": KEY}
    r = client.post("/api/subjects", data={"name": "Obama"}, files=[_file("fr_obama.jpg", "files")], headers=h)
    assert r.status_code == 201, r.text
    r = client.post("/api/subjects", data={"name": "Biden"}, files=[_file("fr_biden.jpg", "files")], headers=h)
    assert r.status_code == 201
    r = client.post("/api/identify", files=[_file("fr_two_people_obama_biden.jpg")])
    assert r.status_code == 200
    assert sorted(f["label"] for f in r.json()["faces"]) == ["Biden", "Obama"]
    assert {f["mask"]["label"] for f in r.json()["faces"]} == {"unmasked"}
    r = client.post("/api/verify", files=[_file("fr_obama.jpg", "a"), _file("fr_biden.jpg", "b")])
    assert r.status_code == 200 and r.json()["same"] is False
    r = client.post("/api/rollcall", files=[_file("fr_two_people_obama_biden.jpg")], data={"roster": "Obama,Biden"})
    assert r.status_code == 200 and r.json()["present"] == ["Biden", "Obama"]
    r = client.get("/api/subjects/Obama/thumbnails/0", headers=h)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert client.delete("/api/subjects/Obama", headers=h).json() == {"removed": "Obama"}
    r = client.delete("/api/subjects/Obama", headers=h)
    assert r.status_code == 404 and "Obama" in r.json()["error"]
    names = [s["name"] for s in client.get("/api/subjects").json()["subjects"]]
    assert names == ["Biden"]


def test_bad_uploads_get_json_errors(client):
    r = client.post("/api/identify", files=[("file", ("notes.jpg", b"hello, not an image", "image/jpeg"))])
    assert r.status_code == 422 and "notes.jpg" in r.json()["error"]
    r = client.post("/api/identify", files=[("file", ("empty.png", b"", "image/png"))])
    assert r.status_code == 422 and "empty" in r.json()["error"]
    big = io.BytesIO(b"\0" * (2 * 1024 * 1024 + 10))
    r = client.post("/api/identify", files=[("file", ("big.jpg", big.getvalue(), "image/jpeg"))])
    assert r.status_code == 413
    r = client.post("/api/identify")
    assert r.status_code == 422 and "file" in r.json()["error"]
    r = client.post("/api/rollcall", files=[_file("fr_two_people_obama_biden.jpg")], data={"roster": "Nobody"})
    assert r.status_code == 400 and "Nobody" in r.json()["error"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size but holds no pixel data (a decompression-bomb shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_huge_image_refused_without_decoding(client):
    r = client.post("/api/identify", files=[("file", ("huge.png", _png_header(20000, 20000), "image/png"))])
    assert r.status_code == 422
    assert "huge.png" in r.json()["error"] and "pixels" in r.json()["error"]


def test_mask_check_with_heat_map(client):
    masked = Path(__file__).resolve().parents[1] / "data" / "real_masked"
    photo = sorted(masked.glob("*.jpg"))[0]
    r = client.post("/api/mask-check", files=[("file", (photo.name, photo.read_bytes(), "image/jpeg"))],
                    data={"cam": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces"] and all(f["label"] == "masked" for f in body["faces"])
    import base64

    assert base64.b64decode(body["cam_png"])[:4] == b"\x89PNG"
    r = client.post("/api/mask-check", files=[_file("fr_obama.jpg")])
    assert [f["label"] for f in r.json()["faces"]] == ["unmasked"] and "cam_png" not in r.json()


def test_openapi_and_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/identify", "/api/verify", "/api/rollcall", "/api/subjects"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "occluface" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_keys_are_stored_hashed(tmp_path):
    store = KeyStore.load(tmp_path / "keys.json")
    key = store.add("gate-1")
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and hash_key(key) in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    assert KeyStore.load(tmp_path / "keys.json").check(key)
    assert not KeyStore.load(tmp_path / "keys.json").check(key + "x")


def test_the_same_face_under_a_second_name_is_refused_with_the_first(tmp_path):
    settings = ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore.load(None, [KEY]))
    h = {"X-API-Key": KEY}
    with TestClient(create_app(settings), headers=h) as c:
        assert c.post("/api/subjects", data={"name": "Obama"}, files=[_file("fr_obama.jpg", "files")], headers=h).status_code == 201
        r = c.post("/api/subjects", data={"name": "Barack"}, files=[_file("fr_obama.jpg", "files")], headers=h)
        assert r.status_code == 409 and "'Obama'" in r.json()["error"] and "fr_obama.jpg" in r.json()["error"]
        assert [s["name"] for s in c.get("/api/subjects").json()["subjects"]] == ["Obama"]  # nothing stored
        # more photos of the same person under the same name are fine, and so is another person
        assert c.post("/api/subjects", data={"name": "Obama"}, files=[_file("fr_obama.jpg", "files")], headers=h).status_code == 201
        assert c.post("/api/subjects", data={"name": "Biden"}, files=[_file("fr_biden.jpg", "files")], headers=h).status_code == 201
        r = c.post("/api/subjects", data={"name": "Barack", "force": "true"}, files=[_file("fr_obama.jpg", "files")], headers=h)
        assert r.status_code == 201  # the operator says they are two people


def test_cli_enrol_refuses_a_duplicate_identity_unless_forced(tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    g = str(tmp_path / "g.sqlite3")
    runner = CliRunner()
    assert runner.invoke(app, ["enroll", "Obama", str(SAMPLES / "fr_obama.jpg"), "--gallery", g]).exit_code == 0
    r = runner.invoke(app, ["enroll", "Barack", str(SAMPLES / "fr_obama.jpg"), "--gallery", g])
    assert r.exit_code == 2 and "already matches 'Obama'" in r.output
    assert runner.invoke(app, ["enroll", "Barack", str(SAMPLES / "fr_obama.jpg"), "--gallery", g, "--force"]).exit_code == 0
