"""Camera check-in on a short generated walk-past video: one check-in per enrolled person, an unknown event for
the stranger, events stored before they are reported (a killed watcher keeps them), check-ins listed and
exported, shift attendance, and the sources (file pacing, a missing file, a stream that cannot be reached)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from occluface.camera.source import FrameSource, parse_source
from occluface.errors import OccluFaceError

#: two enrolled people (the second masked) and a stranger (masked too): bundled LFW people
CAST = ["Aaron_Peirsol", "Abdullah_al-Attiyah", "Abel_Pacheco"]


@pytest.fixture(scope="module")
def walk_past(tmp_path_factory):
    from occluface.bench.video import make_checkin_video

    root = tmp_path_factory.mktemp("watch")
    truth = make_checkin_video(root / "walk.mp4", seconds=15, size=(640, 360), fps=5, enrolled=2, strangers=1,
                               cast=CAST)
    return root, truth


@pytest.fixture(scope="module")
def enrolled_gallery(walk_past):
    from occluface.gallery import open_gallery
    from occluface.recognition.service import Recognizer

    root, truth = walk_past

    def make(name: str) -> Path:
        path = root / f"{name}.sqlite3"
        rec = Recognizer(open_gallery(path))
        for person, photos in truth["enrol"].items():
            rec.enroll(person, photos)
        rec.gallery.close()
        return path

    return make


def test_generated_video_has_the_cast_and_its_ground_truth(walk_past):
    import cv2

    _, truth = walk_past
    assert [a["name"] for a in truth["appearances"]] == CAST
    assert [a["enrolled"] for a in truth["appearances"]] == [True, True, False]
    assert [a["masked"] for a in truth["appearances"]] == [False, True, True]
    cap = cv2.VideoCapture(truth["path"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 75 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()


def test_watch_checks_each_person_in_once_and_the_stranger_is_unknown(walk_past, enrolled_gallery):
    from occluface.bench.watch import score_events
    from occluface.camera.watch import WatchConfig, watch
    from occluface.gallery import open_gallery
    from occluface.recognition.service import Recognizer

    _, truth = walk_past
    rec = Recognizer(open_gallery(enrolled_gallery("watch")))
    result = watch(FrameSource(truth["path"], realtime=False), rec, WatchConfig(camera="gate-1"))
    score = score_events(result["events"], truth)
    assert score["checked_in_once"] == 2 and score["missed"] == [] and score["wrong_names"] == []
    assert score["strangers_checked_in"] == 0 and score["strangers_with_one_unknown_event"] == 1
    stored = rec.gallery.checkins(camera="gate-1")
    assert [e["name"] for e in stored] == ["Aaron_Peirsol", "Abdullah_al-Attiyah", None]
    assert stored[1]["mask"] in ("masked", "mixed") and stored[0]["mask"] == "unmasked"
    assert all(not e["has_thumbnail"] for e in stored)  # no face images unless the operator turns them on

    # the same people walking past again within the window: no second check-in (the repeats are not stored)
    again = watch(FrameSource(truth["path"], realtime=False), rec, WatchConfig(camera="gate-1"))
    assert [e["suppressed"] for e in again["events"] if e["name"]] == [True, True]
    assert len(rec.gallery.checkins(camera="gate-1")) == 4  # only the stranger's second unknown event was added

    # erasing a person removes their check-in history too
    rec.gallery.remove_subject("Aaron_Peirsol")
    assert [e["name"] for e in rec.gallery.checkins() if e["name"]] == ["Abdullah_al-Attiyah"]
    rec.gallery.close()


def test_killed_watch_keeps_every_event_it_reported(walk_past, enrolled_gallery):
    _, truth = walk_past
    gallery = enrolled_gallery("killed")
    proc = subprocess.Popen([sys.executable, "-m", "occluface.cli", "watch", truth["path"], "--every-frame", "--json",
                             "--camera", "door", "--gallery", str(gallery)], stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    from occluface.gallery import open_gallery

    with open_gallery(gallery) as g:
        stored = g.checkins()
    assert first["id"] in [e["id"] for e in stored] and first["name"] == "Aaron_Peirsol"


def test_checkins_and_attendance_commands(walk_past, enrolled_gallery, tmp_path):
    from occluface.cli import app

    _, truth = walk_past
    gallery = str(enrolled_gallery("cli"))
    runner = CliRunner()
    r = runner.invoke(app, ["watch", truth["path"], "--every-frame", "--camera", "lamp-room", "--gallery", gallery,
                            "--thumbnails"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["checkins", "--csv", "--gallery", gallery])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [row["name"] for row in rows] == ["Aaron_Peirsol", "Abdullah_al-Attiyah", ""]
    assert {row["camera"] for row in rows} == {"lamp-room"}
    r = runner.invoke(app, ["checkins", "--json", "--camera", "elsewhere", "--gallery", gallery])
    assert json.loads(r.output) == []
    roster = tmp_path / "shift.txt"
    roster.write_text("# morning shift\nAaron_Peirsol\nAbdullah_al-Attiyah\nAdam_Sandler\n")
    r = runner.invoke(app, ["attendance", "--roster", str(roster), "--json", "--gallery", gallery])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["present"] == ["Aaron_Peirsol", "Abdullah_al-Attiyah"] and result["absent"] == ["Adam_Sandler"]
    assert result["unknown_events"] == 1 and result["several_cameras"] == []
    r = runner.invoke(app, ["attendance", "--roster", str(roster), "--csv", "--since", "2999-01-01", "--gallery", gallery])
    assert [row["present"] for row in csv.DictReader(io.StringIO(r.output))] == ["False", "False", "False"]
    from occluface.gallery import open_gallery

    with open_gallery(gallery) as g:  # --thumbnails keeps a thumbnail with the unknown person's event only
        assert [e["has_thumbnail"] for e in g.checkins()] == [False, False, True]


def test_sources_refuse_what_they_cannot_open(tmp_path):
    with pytest.raises(OccluFaceError, match="video file not found"):
        parse_source(str(tmp_path / "missing.mp4"))
    assert parse_source("0") == 0 and parse_source("rtsp://127.0.0.1:1/cam") == "rtsp://127.0.0.1:1/cam"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(OccluFaceError, match="cannot open"):
        list(FrameSource(str(junk)).frames())
    # a stream nobody serves, without reconnecting: it ends instead of hanging
    frames = list(FrameSource("rtsp://127.0.0.1:1/none", reconnect=False).frames())
    assert frames == []


def test_realtime_file_drops_frames_when_processing_falls_behind(walk_past):
    import time

    _, truth = walk_past
    src = FrameSource(truth["path"], realtime=True)
    got = []
    for frame in src.frames():
        got.append(frame.index)
        time.sleep(0.5)  # slower than the video's 5 fps
        if frame.t > 3:
            src.stop()
    assert src.dropped > 0 and got == sorted(got) and len(got) < got[-1] + 1


def test_api_lists_checkins_with_a_key(walk_past, enrolled_gallery):
    from fastapi.testclient import TestClient

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore
    from occluface.camera.watch import WatchConfig, watch
    from occluface.gallery import open_gallery
    from occluface.recognition.service import Recognizer

    _, truth = walk_past
    path = enrolled_gallery("api")
    rec = Recognizer(open_gallery(path))
    watch(FrameSource(truth["path"], realtime=False), rec, WatchConfig(camera="gate-2"))
    rec.gallery.close()
    with TestClient(create_app(ApiSettings(gallery=path, keys=KeyStore.load(None, ["ocf_k"])))) as client:
        assert client.get("/api/checkins").status_code == 401
        r = client.get("/api/checkins", params={"camera": "gate-2"}, headers={"X-API-Key": "ocf_k"})
        assert r.status_code == 200, r.text
        assert [c["name"] for c in r.json()["checkins"]] == ["Aaron_Peirsol", "Abdullah_al-Attiyah", None]
        r = client.get("/api/checkins", params={"since": "2999-01-01"}, headers={"X-API-Key": "ocf_k"})
        assert r.json() == {"checkins": []}


def test_preview_of_the_annotated_stream(walk_past, enrolled_gallery, tmp_path):
    from fastapi.testclient import TestClient

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore
    from occluface.camera.watch import WatchConfig, watch
    from occluface.gallery import open_gallery
    from occluface.recognition.service import Recognizer

    _, truth = walk_past
    path = enrolled_gallery("preview")
    rec = Recognizer(open_gallery(path))
    frame = tmp_path / "previews" / "gate-3.jpg"
    frame.parent.mkdir()
    watch(FrameSource(truth["path"], realtime=False), rec, WatchConfig(camera="gate-3", preview=str(frame)))
    rec.gallery.close()
    assert frame.read_bytes()[:3] == b"\xff\xd8\xff" and (frame.stat().st_mode & 0o777) == 0o600
    settings = ApiSettings(gallery=path, keys=KeyStore.load(None, ["ocf_k"]), preview_dir=frame.parent)
    with TestClient(create_app(settings)) as client:
        h = {"X-API-Key": "ocf_k"}
        assert client.get("/api/cameras/gate-3/preview.jpg").status_code == 401
        r = client.get("/api/cameras/gate-3/preview.jpg", headers=h)
        assert r.status_code == 200 and r.content == frame.read_bytes()
        r = client.get("/api/cameras/elsewhere/preview.jpg", headers=h)
        assert r.status_code == 404 and "elsewhere" in r.json()["error"]
        with client.stream("GET", "/api/cameras/gate-3/preview.mjpg", headers=h) as stream:
            assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
            head = next(stream.iter_bytes())
            assert head.startswith(b"--frame") and b"\xff\xd8\xff" in head
