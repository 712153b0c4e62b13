"""Recognition service, CLI and REST API on the bundled sample photos (dlib baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from occluface.errors import ImageError, OccluFaceError

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = DATA / "samples"


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer

    store = open_gallery(tmp_path_factory.mktemp("g") / "gallery.sqlite3")
    r = Recognizer(store)
    r.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    r.enroll("Biden", [SAMPLES / "fr_biden.jpg"])
    return r


def test_identify_names_both_people_in_group_photo(rec):
    matches = rec.identify(SAMPLES / "fr_two_people_obama_biden.jpg")
    assert sorted(m.name for m in matches) == ["Biden", "Obama"]
    for m in matches:
        assert m.similarity >= rec.thresholds.identify
        assert m.candidates[0][0] == m.name


def test_stranger_is_unknown(rec):
    matches = rec.identify(SAMPLES / "fr_kit_harington.jpeg")
    assert len(matches) >= 1
    assert all(m.name is None and m.label == "unknown" for m in matches)


def test_verify_uses_calibrated_threshold(rec):
    assert rec.thresholds.source == "calibrated"
    same = rec.verify(SAMPLES / "fr_obama.jpg", SAMPLES / "fr_two_people_obama_biden.jpg")
    diff = rec.verify(SAMPLES / "fr_obama.jpg", SAMPLES / "fr_biden.jpg")
    assert diff.same is False and diff.similarity < diff.threshold
    assert diff.threshold == rec.thresholds.verify
    assert same.similarity > diff.similarity  # Obama in the group photo is closer than Biden alone


def test_bad_enrolment_leaves_gallery_unchanged(rec, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = rec.gallery.embeddings("dlib_resnet")[0].copy()
    with pytest.raises(ImageError, match="broken.jpg"):
        rec.enroll("Obama", [SAMPLES / "fr_obama.jpg", bad])
    noface = tmp_path / "flat.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 130, 140)).save(noface)
    with pytest.raises(OccluFaceError, match="flat.png: no face"):
        rec.enroll("Nobody", [noface])
    after = rec.gallery.embeddings("dlib_resnet")[0]
    assert np.array_equal(before, after)
    assert "Nobody" not in rec.gallery


def test_rollcall_assigns_each_identity_once(rec):
    out = rec.rollcall(SAMPLES / "fr_two_people_obama_biden.jpg", ["Obama", "Biden"])
    ids = [f["identity"] for f in out["faces"] if f["identity"]]
    assert sorted(ids) == ["Biden", "Obama"] and len(set(ids)) == len(ids)
    assert out["absent"] == []


def test_rollcall_unknown_roster_name_is_clear(rec):
    with pytest.raises(OccluFaceError, match="not enrolled"):
        rec.rollcall(SAMPLES / "fr_two_people_obama_biden.jpg", ["Obama", "Nobody"])


def test_calibration_picks_threshold_at_target_far():
    from occluface.bench.calibration import calibrate_thresholds

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    labels = np.repeat(np.arange(20), 5)
    emb = centres[labels] + 0.3 * rng.normal(size=(100, 16))
    th = calibrate_thresholds(emb, labels.astype(str), model_id="toy", target_far=0.01)
    assert th.far <= 0.01 and th.n_impostor == 100 * 99 // 2 - 20 * 10
    assert th.frr < 0.2
    with pytest.raises(OccluFaceError, match="cannot measure FAR"):
        calibrate_thresholds(emb[:6], labels[:6].astype(str), model_id="toy", target_far=1e-4)


def test_cli_enroll_identify_remove(tmp_path):
    from occluface.cli import app

    runner = CliRunner()
    g = str(tmp_path / "cli.sqlite3")
    r = runner.invoke(app, ["enroll", "Obama", str(SAMPLES / "fr_obama.jpg"), "-g", g, "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["identify", str(SAMPLES / "fr_two_people_obama_biden.jpg"), "-g", g, "--json",
                            "--annotate", str(tmp_path / "ann.png")])
    assert r.exit_code == 0, r.output
    faces = json.loads(r.stdout)["faces"]
    assert sorted(f["label"] for f in faces) == ["Obama", "unknown"]
    assert (tmp_path / "ann.png").stat().st_size > 10_000
    r = runner.invoke(app, ["verify", str(SAMPLES / "fr_obama.jpg"), str(SAMPLES / "fr_biden.jpg")])
    assert r.exit_code == 1 and "different" in r.output
    r = runner.invoke(app, ["gallery", "remove", "Nobody", "-g", g])
    assert r.exit_code != 0
    r = runner.invoke(app, ["gallery", "remove", "Obama", "-g", g])
    assert r.exit_code == 0
    r = runner.invoke(app, ["gallery", "list", "-g", g, "--json"])
    assert json.loads(r.stdout) == []
    r = runner.invoke(app, ["identify", str(tmp_path / "missing.jpg"), "-g", g])
    assert r.exit_code != 0


def test_calibration_leaves_out_excluded_identities():
    """A model's evaluation identities must not choose its threshold: `exclude` drops them before the draw."""
    from occluface.errors import DatasetError
    from occluface.bench.calibration import calibrate_folder

    lfw = SAMPLES.parent / "lfw"
    people = sorted(d.name for d in lfw.iterdir() if d.is_dir())
    th, _ = calibrate_folder(lfw, exclude=people[:4], target_far=0.05, progress=False)
    assert th.n_identities == len(people) - 4 and "without 4 excluded" in th.data
    with pytest.raises(DatasetError, match="no identities left"):
        calibrate_folder(lfw, exclude=people, progress=False)


def test_finetuned_model_ships_a_calibrated_threshold(tmp_path):
    """occluface_resnet must not fall back to the generic 0.5 cosine: that named Biden as Obama."""
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer

    rec = Recognizer(open_gallery(tmp_path / "g.sqlite3"), model="occluface_resnet", check_masks=False)
    assert rec.thresholds.source == "calibrated" and rec.thresholds.identify > 0.9
    rec.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    labels = sorted(m.label for m in rec.identify(SAMPLES / "fr_two_people_obama_biden.jpg"))
    assert labels == ["Obama", "unknown"]
