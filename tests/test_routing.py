"""Mask-routed matching (issue 8): each probe scored on its own path, masked templates, and the routed
matcher in `bench accuracy` on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from occluface.cli import app
from occluface.errors import OccluFaceError
from occluface.recognition.routed import masked_template, path_scores, routed_vectors

DATA = Path(__file__).parents[1] / "data"


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_routed_vectors_give_each_probe_the_score_of_its_own_path():
    rng = np.random.default_rng(0)
    dp, tp = _unit(rng.normal(size=(5, 8))), _unit(rng.normal(size=(5, 4)))  # two networks, two widths
    dg, tg, mg = _unit(rng.normal(size=(3, 8))), _unit(rng.normal(size=(3, 4))), _unit(rng.normal(size=(3, 4)))
    masked = np.array([True, False, True, False, False])
    probes, gallery = routed_vectors(masked, dp * 3, tp, dg, tg * 2, mg, masked_offset=-0.25)  # any scale in
    scores = probes @ gallery.T
    want = np.where(masked[:, None], tp @ mg.T - 0.25, (dp @ dg.T + tp @ tg.T) / 2)
    np.testing.assert_allclose(scores, want, atol=1e-6)
    np.testing.assert_allclose(path_scores(masked, dp, tp, dg, tg, mg, -0.25), want, atol=1e-6)
    norms = np.linalg.norm(gallery, axis=1)
    np.testing.assert_allclose(norms, norms[0], atol=1e-6)  # one norm for every entry: ranks are untouched
    with pytest.raises(OccluFaceError, match="mask calls"):
        routed_vectors(masked[:4], dp, tp, dg, tg, mg)
    with pytest.raises(OccluFaceError, match="gallery entries"):
        routed_vectors(masked, dp, tp, dg, tg, mg[:2])
    with pytest.raises(OccluFaceError, match="zero"):
        routed_vectors(masked, np.zeros_like(dp), tp, dg, tg, mg)


def test_masked_template_is_the_normalised_mean_of_the_variants():
    a, b = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 3.0], [0.0, 1.0]])
    t = masked_template([a, b])
    np.testing.assert_allclose(t, [[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]], atol=1e-6)
    with pytest.raises(OccluFaceError):
        masked_template([])
    with pytest.raises(OccluFaceError, match="shape"):
        masked_template([a, b[:1]])


def test_bench_accuracy_scores_the_routed_matcher(tmp_path):
    out = tmp_path / "acc"
    args = ["bench", "accuracy", "--data", str(DATA), "--models", "dlib_resnet,routed", "--occlusion", "surgical",
            "--yaleb-holdout", "3", "--lfw-holdout", "0", "--probes-per-identity", "3", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"] == ["dlib_resnet", "routed"]
    rows, dlib = metrics["datasets"]["yaleb"]["models"]["routed"], metrics["datasets"]["yaleb"]["models"]["dlib_resnet"]
    assert rows["surgical"]["routed_masked"] == 1.0  # a synthetic surgical mask is called masked
    assert 0.0 <= rows["clean"]["routed_masked"] <= 1.0 and 0.0 <= rows["clean"]["rank1"] <= 1.0
    assert dlib["surgical"]["rank1"] <= rows["surgical"]["rank1"]  # the masked path beats dlib on masks
    assert "routed" in metrics["model_notes"]
    assert "sent to the masked path" in (out / "report.md").read_text()


SAMPLES = DATA / "samples"


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer

    rec = Recognizer(open_gallery(tmp_path_factory.mktemp("g") / "g.sqlite3"), model="routed")
    rec.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    rec.enroll("Biden", [SAMPLES / "fr_biden.jpg"])
    return rec


def test_routed_recognizer_names_bare_and_masked_faces_and_keeps_strangers_out(routed):
    from occluface.data.images import load_rgb
    from occluface.data.occlusion import apply

    assert routed.thresholds.source == "calibrated" and routed.thresholds.identify > 0.9  # the bare path's
    assert "routed" in routed.gallery.models() and "dlib_resnet" not in routed.gallery.models()
    group = load_rgb(SAMPLES / "fr_two_people_obama_biden.jpg")
    bare = routed.identify(group, image=group)
    assert sorted(m.name for m in bare) == ["Biden", "Obama"]
    assert all(m.mask["label"] == "unmasked" for m in bare)
    masked_photo = apply(group, "surgical", seed=3)
    masked = routed.identify(masked_photo, image=masked_photo)
    assert sorted(m.name for m in masked) == ["Biden", "Obama"]
    assert all(m.mask["label"] == "masked" for m in masked)
    assert all(m.name is None for m in routed.identify(SAMPLES / "fr_kit_harington.jpeg"))


def test_routed_vectors_of_the_service_score_on_one_scale(routed):
    from occluface.data.images import load_rgb

    image = load_rgb(SAMPLES / "fr_obama.jpg")
    face = routed.main_face(image, "obama")
    g = routed.enrol_vectors(image, [face])
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    bare, masked = (routed.embed_faces(image, [face], [{"label": lab}]) for lab in ("unmasked", "masked"))
    np.testing.assert_allclose([np.linalg.norm(bare), np.linalg.norm(masked)], 1.0, atol=1e-5)
    m = routed.matcher
    # the same photo as probe: bare path = mean of two cosines of 1; masked path = cosine to its template + offset
    assert float((bare @ g.T)[0, 0]) * m.score_scale == pytest.approx(1.0, abs=1e-4)
    assert float((masked @ g.T)[0, 0]) * m.score_scale < 1.0 + m.offset + 1e-4
    diff = routed.verify(SAMPLES / "fr_obama.jpg", SAMPLES / "fr_biden.jpg")
    assert diff.same is False and diff.similarity < diff.threshold == routed.thresholds.verify


def test_routed_rollcall_uses_one_embedding_space_and_names_both(routed):
    out = routed.rollcall(SAMPLES / "fr_two_people_obama_biden.jpg")
    assert sorted(out["present"]) == ["Biden", "Obama"] and out["absent"] == []
    with pytest.raises(OccluFaceError, match="columns"):
        routed.matcher.tuned_part(np.zeros((2, 5), np.float32))


def test_speed_bench_measures_the_routed_path(tmp_path):
    from occluface.bench.speed import _describe, _measure, default_backends

    assert "routed-fast" in default_backends(cuda=False) and "mask classifier" in _describe("routed-fast")
    chips = np.random.default_rng(0).integers(0, 255, (3, 150, 150, 3), dtype=np.uint8)
    np.save(tmp_path / "chips.npy", chips)
    out = _measure({"backend": "routed-fast", "chips": str(tmp_path / "chips.npy"), "batch": 2, "repeats": 1, "threads": 1})
    assert out["faces_per_s"] > 0 and out["peak_rss_mib"] > 0


def test_routing_classifier_ships_small_and_sends_masks_down_the_masked_path():
    from occluface.data.images import load_rgb
    from occluface.data.occlusion import apply
    from occluface.faces.detect import create_detector
    from occluface.recognition.routed import ROUTING_CLASSIFIER, route_masked
    from occluface.maskcheck.model import DEFAULT_WEIGHTS, load_weights

    assert ROUTING_CLASSIFIER.is_file() and ROUTING_CLASSIFIER.stat().st_size < 3_000_000
    assert ROUTING_CLASSIFIER != DEFAULT_WEIGHTS and load_weights(ROUTING_CLASSIFIER).classes == 2
    assert load_weights(ROUTING_CLASSIFIER).meta["config"]  # the training run is recorded in the file
    group = load_rgb(SAMPLES / "fr_two_people_obama_biden.jpg")
    det = create_detector("auto")
    faces = det.detect(group)
    assert route_masked(group, faces) == [False, False]
    masked = apply(group, "surgical", seed=3)
    assert route_masked(masked, det.detect(masked)) == [True, True]
    assert route_masked(group, []) == []


def test_identify_on_a_gallery_enrolled_with_another_model_says_so(tmp_path):
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer

    store = open_gallery(tmp_path / "g.sqlite3")
    Recognizer(store, model="dlib_resnet", check_masks=False).enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    with pytest.raises(OccluFaceError, match="enrolments for dlib_resnet only.*--model dlib_resnet"):
        Recognizer(store, check_masks=False).identify(SAMPLES / "fr_obama.jpg")
    assert Recognizer(open_gallery(tmp_path / "empty.sqlite3")).identify(SAMPLES / "fr_obama.jpg")[0].name is None


def test_enrolments_of_another_release_of_the_weights_are_refused(tmp_path, routed):
    from occluface.gallery.connect import open_gallery
    from occluface.models.dlib_finetuned import weights_fingerprint
    from occluface.recognition.service import Recognizer

    fp = weights_fingerprint()
    assert len(fp) == 12 and routed.model_version == f"routed-v1:cloth+mask:tuned-{fp}"
    store = open_gallery(tmp_path / "g.sqlite3")
    earlier = Recognizer(store, model="occluface_resnet", check_masks=False)
    assert earlier.model_version == f"occluface_resnet:{fp}"
    earlier.model_version = "occluface_resnet:000000000000"  # as an earlier release of the weights enrolled
    earlier.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    now = Recognizer(store, model="occluface_resnet", check_masks=False)
    with pytest.raises(OccluFaceError, match="version occluface_resnet:000000000000, not occluface_resnet:.*weights changed"):
        now.identify(SAMPLES / "fr_obama.jpg")
    with pytest.raises(OccluFaceError, match="weights changed"):
        now.rollcall(SAMPLES / "fr_two_people_obama_biden.jpg")
