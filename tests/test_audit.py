"""The audit trail: one line per API call (key name, client, route, status, names returned; never images or
vectors), erasure leaving only the line that the person was erased, and the retention purge."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from occluface.api.app import ApiSettings, create_app
from occluface.api.keys import KeyStore

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEY = "ocf_audit-key"


def _photo(name: str, field: str = "file"):
    return (field, (name, (SAMPLES / name).read_bytes(), "image/jpeg"))


def test_every_api_call_leaves_one_audit_line_and_erasure_leaves_only_its_own(tmp_path):
    from occluface.gallery import open_gallery

    path = tmp_path / "g.sqlite3"
    from occluface.api.keys import hash_key

    # rate limits off: the 14 wrong-key calls would otherwise end in the failed-key lock-out (tests/test_access.py)
    app = create_app(ApiSettings(gallery=path, keys=KeyStore({"gate-1": hash_key(KEY)})).with_rate_limit(0))
    h = {"X-API-Key": KEY}
    calls = 0
    with TestClient(app) as c:
        for name, pic in (("Obama", "fr_obama.jpg"), ("Biden", "fr_biden.jpg")):
            assert c.post("/api/subjects", data={"name": name}, files=[_photo(pic, "files")], headers=h).status_code == 201
            calls += 1
        small = _photo("fr_two_people_obama_biden.jpg")
        for i in range(98):
            kind = i % 7
            if kind in (0, 1, 2):
                r = c.post("/api/identify", files=[small], headers=h)
            elif kind == 3:
                r = c.get("/api/subjects", headers=h)
            elif kind == 4:
                r = c.get("/api/subjects/Obama/thumbnails/0", headers=h)
            elif kind == 5:
                r = c.post("/api/subjects", data={"name": "X"}, files=[_photo("fr_obama.jpg", "files")],
                           headers={"X-API-Key": "ocf_wrong"})
            else:
                r = c.get("/api/checkins", headers=h)
            assert r.status_code in (200, 403), r.text
            calls += 1
            assert c.get("/api/health").status_code == 200  # not audited
        store = app.state.service.store
        lines = store.audit_entries()
        assert len(lines) == calls == 100
        identify = [e for e in lines if e["action"] == "POST /api/identify"]
        assert identify and all(sorted(e["names"]) == ["Biden", "Obama"] and e["actor"] == "gate-1" for e in identify)
        refused = [e for e in lines if e["status"] == 403]
        assert len(refused) == 14 and all(e["actor"] is None and e["names"] == [] for e in refused)
        thumbs = [e for e in lines if e["action"] == "GET /api/subjects/{name}/thumbnails/{index}"]
        assert thumbs and all(e["actor"] == "gate-1" and e["names"] == ["Obama"] for e in thumbs)
        assert all(e["client"] for e in lines)
        raw = json.dumps(lines)
        assert "\\xff\\xd8" not in raw and "/9j/" not in raw  # no images

        assert c.delete("/api/subjects/Obama", headers=h).status_code == 200
        mentions = store.audit_entries(name="Obama")
        assert [e["action"] for e in mentions] == ["erased"]  # the only line about Obama, and only as a digest
        from occluface.gallery.store import erased_name

        assert mentions[0]["names"] == [erased_name("Obama")] and "Obama" not in json.dumps(mentions)
        assert all("Obama" not in e["names"] for e in store.audit_entries() if e["action"] != "erased")
        assert [e["names"] for e in store.audit_entries(action="POST /api/identify")][0] == ["Biden"]
        assert store.audit_entries()[-1]["action"] == "DELETE /api/subjects/{name}"
    with open_gallery(path) as g:  # the trail is in the gallery database itself
        assert len(g.audit_entries()) == 102


def test_purge_keeps_exactly_what_the_retention_allows(tmp_path):
    from occluface.cli import app
    from occluface.gallery import open_gallery

    path = tmp_path / "g.sqlite3"
    with open_gallery(path) as g:
        for t in ("2020-01-01T00:00:00.000+00:00", "2021-06-01T00:00:00.000+00:00", "2999-01-01T00:00:00.000+00:00"):
            g.audit("POST /api/identify", time=t, names=["someone"])
            g.add_checkin(time=t, camera="gate", name="someone", similarity=0.8, mask=None, frames=5, first_seen=t)
        assert g.purge("2021-01-01T00:00:00+00:00") == {"audit": 1, "checkins": 1}
        assert [e["time"][:4] for e in g.audit_entries()] == ["2021", "2999"]
        assert [e["time"][:4] for e in g.checkins()] == ["2021", "2999"]
    r = CliRunner().invoke(app, ["audit", "purge", "--keep-days", "30", "--gallery", str(path)])
    assert r.exit_code == 0 and "purged 1 audit line(s) and 1 check-in(s)" in r.output
    with open_gallery(path) as g:
        assert [e["action"] for e in g.audit_entries()] == ["purge", "POST /api/identify"]  # now, then 2999
        assert g.audit_entries()[0]["actor"].startswith("cli")


def test_cli_enrolment_is_audited_and_listed(tmp_path):
    from occluface.cli import app

    g = str(tmp_path / "g.sqlite3")
    runner = CliRunner()
    assert runner.invoke(app, ["enroll", "Obama", str(SAMPLES / "fr_obama.jpg"), "--gallery", g]).exit_code == 0
    r = runner.invoke(app, ["audit", "list", "--json", "--gallery", g])
    assert r.exit_code == 0, r.output
    lines = json.loads(r.output)
    assert [(e["action"], e["names"]) for e in lines] == [("enroll", ["Obama"])] and lines[0]["actor"].startswith("cli")
    r = runner.invoke(app, ["audit", "list", "--csv", "--name", "Obama", "--gallery", g])
    assert r.output.splitlines()[0] == "time,actor,client,action,status,names" and "Obama" in r.output


def test_server_applies_its_retention_rule_at_start_up(tmp_path):
    """`serve --keep-days 30`: lines and check-ins older than 30 days are purged when the server starts (and every
    hour after), recent ones kept, and the purge is on the record."""
    import time

    from occluface.gallery import open_gallery

    path = tmp_path / "g.sqlite3"
    with open_gallery(path) as g:
        for t in ("2020-01-01T00:00:00.000+00:00", "2999-01-01T00:00:00.000+00:00"):
            g.audit("POST /api/identify", time=t, names=["someone"])
            g.add_checkin(time=t, camera="gate", name="someone", similarity=0.8, mask=None, frames=5, first_seen=t)
    app = create_app(ApiSettings(gallery=path, keys=KeyStore.load(None, [KEY]), keep_days=30))
    with TestClient(app):
        store = app.state.service.store
        deadline = time.monotonic() + 20
        while not any(e["action"] == "purge" for e in store.audit_entries()):
            assert time.monotonic() < deadline, "the retention purge did not run"
            time.sleep(0.05)
        assert [e["time"][:4] for e in store.audit_entries(action="POST /api/identify")] == ["2999"]
        assert [e["time"][:4] for e in store.checkins()] == ["2999"]
        assert [e["actor"] for e in store.audit_entries(action="purge")] == ["retention 30 days"]


def test_a_call_that_fails_inside_the_app_is_audited_as_500(tmp_path, monkeypatch):
    from occluface.api.keys import hash_key

    app = create_app(ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore({"gate-1": hash_key(KEY)})))
    with TestClient(app, raise_server_exceptions=False) as c:
        service = app.state.service

        def broken(*_a, **_k):
            raise RuntimeError("model crashed")

        monkeypatch.setattr(type(service), "run_on_photo", broken)
        r = c.post("/api/identify", files=[_photo("fr_obama.jpg")], headers={"X-API-Key": KEY})
        assert r.status_code == 500 and "model crashed" not in r.text  # no traceback leaks to the client
        (line,) = service.store.audit_entries()
        assert line["action"] == "POST /api/identify" and line["status"] == 500 and line["actor"] == "gate-1"
