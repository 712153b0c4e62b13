"""Serving many gates: model work in parallel (no global lock, a bounded pool), the settings that split a
machine's cores among processes and threads, the worker-process factory, and two real servers on one
PostgreSQL gallery (a person enrolled through one is identified through the other)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx2
import numpy as np
import pytest

from occluface.api.app import SETTINGS_ENV, ApiSettings, create_app, serve_app
from occluface.api.keys import KeyStore
from occluface.recognition.service import Match

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


class SlowRecognizer:
    """Stands in for the recognizer: each identify takes 0.3 s and records how many ran at once."""

    def __init__(self):
        self.running = self.most = 0
        self.lock = threading.Lock()
        self.thresholds = type("T", (), {"identify": 0.5})()
        self.gallery = self  # stands in for the store too: it only records audit lines
        self.audited = []

    def audit(self, action, **kw):
        self.audited.append(action)

    def identify(self, source, *, image=None, k=3):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.3)
        with self.lock:
            self.running -= 1
        return [Match(box=[0, 0, 10, 10], detection_score=0.9, name=None, similarity=0.1)]


async def _burst(app, n: int) -> list[int]:
    transport = httpx2.ASGITransport(app=app)
    photo = (SAMPLES / "fr_obama.jpg").read_bytes()
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", headers={"X-API-Key": "ocf_k"}) as client:
        rs = await asyncio.gather(*(client.post("/api/identify", files=[("file", ("p.jpg", photo, "image/jpeg"))])
                                    for _ in range(n)))
    return [r.status_code for r in rs]


@pytest.mark.parametrize("threads", [1, 3])
def test_identify_requests_run_in_parallel_up_to_the_pool_size(threads):
    app = create_app(ApiSettings(model_threads=threads, keys=KeyStore.load(None, ["ocf_k"])))
    fake = SlowRecognizer()
    app.state.service._rec = fake
    assert asyncio.run(_burst(app, 6)) == [200] * 6
    # exactly `threads` calls overlapped: no lock serialises them, and the pool bounds them (and the memory
    # of per-thread networks) however many clients wait
    assert fake.most == threads
    assert fake.audited == ["POST /api/identify"] * 6  # every call on the record
    app.state.service.close()


def test_settings_share_the_cores_among_processes_and_threads(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert ApiSettings().cores() == 4 and ApiSettings().resolved_model_threads() == 4
    assert ApiSettings().op_threads() == 1  # one thread per call: the calls themselves fill the cores
    two = ApiSettings(workers=2)
    assert two.cores() == 2 and two.resolved_model_threads() == 2 and two.op_threads() == 1
    assert ApiSettings(model_threads=1).op_threads() == 4  # one call at a time may use every core
    assert ApiSettings(workers=8).cores() == 1


def test_worker_factory_reads_the_serve_settings_and_limits_threads(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("occluface.runtime.limit_threads", lambda n, opencv=False: calls.append((n, opencv)))
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"gallery": str(tmp_path / "g.sqlite3"), "model": "sface",
                                                 "detector": "yunet", "workers": 2, "model_threads": 1,
                                                 "max_upload_bytes": 1234, "keys_file": None}))
    monkeypatch.setenv("OCCLUFACE_API_KEY", "ocf_from-env")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    app = serve_app()
    s = app.state.settings
    assert (s.model, s.detector, s.workers, s.model_threads, s.max_upload_bytes) == ("sface", "yunet", 2, 1, 1234)
    assert s.keys.check("ocf_from-env") and calls == [(1, True)]


def test_enrolment_through_the_api_names_the_uploads(tmp_path):
    """Errors of an enrolment name the uploaded file, and the stored sources are the upload names."""
    from fastapi.testclient import TestClient

    from occluface.api.keys import KeyStore

    settings = ApiSettings(gallery=tmp_path / "g.sqlite3", keys=KeyStore.load(None, ["ocf_k"]))
    with TestClient(create_app(settings)) as client:
        blank = np.full((200, 200, 3), 128, np.uint8)
        import cv2

        ok, buf = cv2.imencode(".jpg", blank)
        files = [("files", ("obama.jpg", (SAMPLES / "fr_obama.jpg").read_bytes(), "image/jpeg")),
                 ("files", ("wall.jpg", buf.tobytes(), "image/jpeg"))]
        r = client.post("/api/subjects", data={"name": "Obama"}, files=files, headers={"X-API-Key": "ocf_k"})
        assert r.status_code == 400 and "wall.jpg: no face found" in r.json()["error"]
        r = client.post("/api/subjects", data={"name": "Obama"}, files=files[:1], headers={"X-API-Key": "ocf_k"})
        assert r.status_code == 201
        store = client.app.state.service.rec.gallery
        ids = store.get_subject("Obama").embeddings
        assert sum(ids.values()) == 1
        sources = store._rows("SELECT source FROM embeddings")
        assert sources == [("obama.jpg",)]


def test_two_servers_on_one_postgresql_gallery_see_each_others_enrolments(postgres_server, tmp_path):
    from occluface.bench.loadtest import cross_server_delay

    url = postgres_server.create_database("two_gates")
    result = cross_server_delay(url, tmp_path, key="ocf_two-gates-key", detector="auto", model="sface-erase")
    assert result["before"] is None  # the second gate did not know the newcomer ...
    assert result["identified"] and result["after"] == "Kit Harington"  # ... and names them after the first enrols
    # how soon (the 1 s bar) is a figure: `occluface bench load --gallery postgresql` reports it


def test_a_served_app_builds_its_search_index_at_start_up(tmp_path):
    """`occluface serve` warms up in the background: models loaded and the index built before the first identify."""
    from fastapi.testclient import TestClient

    from occluface.gallery import open_gallery
    from occluface.recognition.matchers import create_matcher

    matcher = create_matcher("sface-erase")
    with open_gallery(tmp_path / "g.sqlite3") as g:
        v = np.random.default_rng(0).standard_normal((3, matcher.embedding_size)).astype(np.float32)
        g.enroll("someone", v, model_id=matcher.model_id, model_version=matcher.version)
    app = create_app(ApiSettings(gallery=tmp_path / "g.sqlite3", warm_up=True))
    with TestClient(app) as client:
        assert client.get("/api/health").status_code == 200  # answering while it warms up
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rec = app.state.service._rec
            if rec is not None and (matcher.model_id, None) in rec.gallery.__dict__.get("search_cache", {}):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the index was not built at start-up")
