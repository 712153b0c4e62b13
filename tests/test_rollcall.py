"""Roll-call (classroom paper): confidences, 0.6 threshold, one-to-one assignment, ER/UR, composed photos, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from occluface.cli import app
from occluface.errors import OccluFaceError
from occluface.rollcall import (
    SoftmaxConfidence,
    SVMConfidence,
    aggregate,
    er_ur,
    global_assign,
    greedy_assign,
    paper_assign,
    rollcall,
)
from occluface.rollcall.compose import compose_group

DATA = Path(__file__).parents[1] / "data"


def _roster_data(n_ids=5, per_id=4, dim=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = np.concatenate([centres[i] + spread * rng.normal(size=(per_id, dim)) for i in range(n_ids)])
    y = [f"id{i}" for i in range(n_ids) for _ in range(per_id)]
    return centres, x, y, rng


class _Fixed:
    """A 'confidence model' returning a given matrix, to drive rollcall() with hand-made probabilities."""

    def __init__(self, p, classes):
        self.p, self.classes_ = np.asarray(p, float), list(classes)

    def predict_proba(self, x):
        return self.p


# ----------------------------------------------------------------------------- assignment
COLLIDE = np.array([[0.90, 0.05, 0.05], [0.70, 0.25, 0.05]])  # both faces' best is identity 0; face 1 is identity 1


def test_greedy_can_name_one_identity_twice_global_never_does():
    assert greedy_assign(COLLIDE) == [0, 0]
    g = global_assign(COLLIDE)
    named = [j for j in g if j is not None]
    assert len(named) == len(set(named))
    assert g == [0, None]  # face 1's one-to-one match (identity 1, 0.25) is below the threshold
    rng = np.random.default_rng(3)
    for _ in range(50):  # random rectangular matrices: still never two faces per identity
        p = rng.dirichlet(np.full(4, 0.3), size=int(rng.integers(1, 8)))
        for method in (global_assign, paper_assign):
            named = [j for j in method(p, 0.2) if j is not None]
            assert len(named) == len(set(named))


def test_global_maximises_the_product_not_each_face():
    # greedy-by-face would give face 0 identity 0 (0.5) and face 1 identity 1 (0.1): product 0.05;
    # the optimum is face 0 -> 1 (0.45), face 1 -> 0 (0.85): product 0.38.
    p = np.array([[0.50, 0.45, 0.05], [0.85, 0.10, 0.05]])
    assert global_assign(p, threshold=0.0) == [1, 0]
    assert greedy_assign(p, threshold=0.0) == [0, 0]


def test_global_beats_greedy_on_er_and_paper_recovers_the_face():
    truth = ["a", "b"]
    names = ["a", "b", "c"]
    greedy = [names[j] if j is not None else None for j in greedy_assign(COLLIDE)]
    glob = [names[j] if j is not None else None for j in global_assign(COLLIDE)]
    paper = [names[j] if j is not None else None for j in paper_assign(COLLIDE)]
    assert er_ur(greedy, truth)["er"] == pytest.approx(0.5)
    assert er_ur(glob, truth)["er"] == 0.0
    assert er_ur(glob, truth)["ur"] == pytest.approx(0.5)
    # the paper's game stage gives the uncertain face the best still-absent identity
    assert paper == ["a", "b"]
    assert er_ur(paper, truth)["er"] == 0.0 and er_ur(paper, truth)["ur"] == 0.0


def test_threshold_routes_low_confidence_faces_to_uncertain():
    p = np.array([[0.95, 0.03, 0.02], [0.55, 0.40, 0.05], [0.05, 0.35, 0.60]])
    assert greedy_assign(p, 0.6) == [0, None, None]  # 0.60 is not > 0.6
    assert global_assign(p, 0.6) == [0, None, None]
    assert global_assign(p, 0.5) == [0, None, 2]
    res = rollcall(np.zeros((3, 2)), _Fixed(p, ["ann", "bob", "cid"]), threshold=0.6)
    assert [f.status for f in res.faces] == ["present", "uncertain", "uncertain"]
    assert res.present == ["ann"]
    assert res.unresolved == ["bob", "cid"]  # best candidates of the uncertain faces: check them by hand
    assert res.absent == []
    assert res.assigned == ["ann", None, None]


def test_rectangular_matrices():
    more_faces = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    g = global_assign(more_faces, 0.6)
    assert g == [0, None, 1]
    fewer_faces = np.array([[0.05, 0.9, 0.05, 0.0]])
    assert global_assign(fewer_faces) == [1]
    assert global_assign(np.zeros((0, 3))) == []
    assert global_assign(np.zeros((2, 0))) == [None, None]
    res = rollcall(np.zeros((1, 2)), _Fixed(fewer_faces, list("abcd")))
    assert res.present == ["b"] and res.absent == ["a", "c", "d"] and res.unresolved == []


def test_rollcall_roster_subset_and_errors():
    p = np.array([[0.5, 0.3, 0.2]])
    res = rollcall(np.zeros((1, 2)), _Fixed(p, ["a", "b", "c"]), roster_names=["a", "c"], method="greedy")
    assert res.faces[0].identity == "a" and res.faces[0].confidence == pytest.approx(0.5 / 0.7)
    with pytest.raises(OccluFaceError, match="not enrolled"):
        rollcall(np.zeros((1, 2)), _Fixed(p, ["a", "b", "c"]), roster_names=["a", "zed"])
    with pytest.raises(OccluFaceError, match="unknown assignment method"):
        rollcall(np.zeros((1, 2)), _Fixed(p, ["a", "b", "c"]), method="vote")
    with pytest.raises(OccluFaceError, match="roster identities"):
        rollcall(np.zeros((1, 2)), _Fixed([[0.5, 0.5]], ["a", "b", "c"]))
    with pytest.raises(OccluFaceError, match="threshold"):
        global_assign(p, 1.5)
    with pytest.raises(OccluFaceError, match="probabilities"):
        global_assign(np.array([[2.0, -1.0]]))


# ----------------------------------------------------------------------------- metrics
def test_er_ur_match_hand_computation():
    # 6 faces: 3 correct, 1 wrong student, 1 stranger named (wrong), 1 student unnamed
    assigned = ["a", "b", "c", "a2", "e", None]
    truth = ["a", "b", "c", "d", "stranger", "f"]
    m = er_ur(assigned, truth, roster=["a", "b", "c", "d", "e", "f", "a2"])
    assert (m["faces"], m["attendance"], m["correct"], m["wrong"], m["unrecognised"]) == (6, 5, 3, 2, 1)
    assert m["er"] == pytest.approx(2 / 5)  # wrong / attendance list
    assert m["ur"] == pytest.approx(1 / 6)  # (s - c - e) / s
    assert m["strangers"] == 1 and m["strangers_named"] == 1 and m["student_ur"] == pytest.approx(1 / 5)
    dup = er_ur(["a", "a", None], ["a", "b", None])
    assert dup["duplicate_identities"] == 1 and dup["strangers_rejected"] == 1 and dup["ur"] == pytest.approx(1 / 3)
    empty = er_ur([None, None], ["a", "b"])
    assert empty["er"] == 0.0 and empty["ur"] == 1.0
    pooled = aggregate([m, empty])
    assert pooled["er"] == pytest.approx(2 / 5) and pooled["ur"] == pytest.approx(3 / 8)
    assert pooled["mean_ur"] == pytest.approx((1 / 6 + 1) / 2)
    with pytest.raises(OccluFaceError):
        er_ur(["a"], ["a", "b"])


# ----------------------------------------------------------------------------- confidences
@pytest.mark.parametrize("method", ["temperature", "sigmoid"])
def test_svm_probabilities_calibrated_rows_and_true_identity_first(method):
    centres, x, y, rng = _roster_data()
    groups = [f"{label}-{i // 2}" for i, label in enumerate(y)]  # pairs of near-duplicates share a fold
    model = SVMConfidence(cv=2, method=method).fit(x, y, groups)
    assert f"{method} calibration over 2" in model.note and model.classes_ == [f"id{i}" for i in range(5)]
    q = centres + 0.3 * rng.normal(size=centres.shape)
    p = model.predict_proba(q)
    assert p.shape == (5, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert list(p.argmax(axis=1)) == [0, 1, 2, 3, 4]
    assert p.max(axis=1).min() > 0.6
    with pytest.raises(OccluFaceError, match="dimensions"):
        model.predict_proba(np.zeros((1, 3)))


def test_svm_falls_back_to_softmax_with_one_photo_per_identity():
    centres, x, y, rng = _roster_data(per_id=1)
    model = SVMConfidence().fit(x, y)
    assert "softmax" in model.note
    p = model.predict_proba(centres)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert list(p.argmax(axis=1)) == [0, 1, 2, 3, 4]


def test_softmax_temperature_fitted_or_given():
    centres, x, y, rng = _roster_data(spread=1.5)
    fitted = SoftmaxConfidence().fit(x, y)
    assert "fitted" in fitted.note and 0.005 <= fitted.temperature_ <= 1.0
    fixed = SoftmaxConfidence(temperature=0.5).fit(x, y)
    assert fixed.temperature_ == 0.5
    p_hot, p_cold = fixed.predict_proba(centres), SoftmaxConfidence(temperature=0.05).fit(x, y).predict_proba(centres)
    assert p_cold.max(axis=1).mean() > p_hot.max(axis=1).mean()  # lower temperature, sharper confidences
    with pytest.raises(OccluFaceError, match="at least 2"):
        SoftmaxConfidence().fit(x[:2], ["a", "a"])


# ----------------------------------------------------------------------------- compose + CLI
def _lfw_faces(n):
    from occluface.data.images import load_rgb

    paths = sorted((DATA / "lfw").glob("*/*.jpg"))[:n]
    return [load_rgb(p) for p in paths], [p.parent.name for p in paths]


def test_compose_deterministic_boxes_inside_and_masks_applied():
    images, names = _lfw_faces(4)
    boxes = [(80, 85, 175, 185)] * 4
    a = compose_group(images, boxes, names, seed=7)
    b = compose_group(images, boxes, names, seed=7)
    c = compose_group(images, boxes, names, seed=8)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    assert not np.array_equal(a.image, c.image) or a.boxes != c.boxes
    h, w = a.image.shape[:2]
    for x1, y1, x2, y2 in a.boxes:
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 70 <= x2 - x1 <= 110 + 1  # face_size range
    assert a.identities == names
    masked = compose_group(images, boxes, names, seed=7, occlusions=["surgical", None, None, None])
    assert masked.occlusions[0] == "surgical" and masked.boxes == a.boxes
    x1, y1, x2, y2 = (int(v) for v in a.boxes[0])
    lower = slice((y1 + y2) // 2, y2)
    assert np.abs(masked.image[lower, x1:x2].astype(int) - a.image[lower, x1:x2].astype(int)).mean() > 10
    x1, y1, x2, y2 = (int(v) for v in a.boxes[1])
    assert np.array_equal(masked.image[y1:y2, x1:x2], a.image[y1:y2, x1:x2])
    with pytest.raises(OccluFaceError):
        compose_group(images, boxes[:2], names, seed=0)


def test_cli_bench_rollcall_writes_report(tmp_path):
    out = tmp_path / "rc"
    result = CliRunner().invoke(
        app,
        ["bench", "rollcall", "--data", str(DATA / "lfw"), "--roster-size", "4", "--faces-per-image", "3",
         "--strangers", "1", "--images", "2", "--min-images", "2", "--seed", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for name in ("rollcall.md", "rollcall.json", "rollcall_rates.png", "rollcall_example.png"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "rollcall.json").read_text())
    cells = {(r["confidence"], r["method"], r["condition"]) for r in report["rows"]}
    assert len(cells) == 2 * 3 * 2
    for r in report["rows"]:
        assert r["faces"] == 6 and r["strangers"] == 2
        assert r["correct"] + r["wrong"] + r["unrecognised"] == r["faces"]
        if r["method"] != "greedy":
            assert r["images_with_duplicates"] == 0
    assert "| greedy |" in (out / "rollcall.md").read_text()
    bad = CliRunner().invoke(app, ["bench", "rollcall", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.exit_code == 2 and "nope" in bad.output
