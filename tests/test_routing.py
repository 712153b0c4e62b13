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
from occluface.gallery.routing import masked_template, routed_vectors

DATA = Path(__file__).parents[1] / "data"


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_routed_vectors_give_each_probe_the_score_of_its_own_path():
    rng = np.random.default_rng(0)
    cp, mp = _unit(rng.normal(size=(5, 8))), _unit(rng.normal(size=(5, 4)))  # two networks, two widths
    cg, mg = _unit(rng.normal(size=(3, 8))), _unit(rng.normal(size=(3, 4)))
    masked = np.array([True, False, True, False, False])
    probes, gallery = routed_vectors(masked, cp * 3, mp, cg, mg * 2)  # inputs need not be normalised
    scores = probes @ gallery.T
    want = np.where(masked[:, None], mp @ mg.T, cp @ cg.T)
    np.testing.assert_allclose(scores, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(probes, axis=1), 1.0, atol=1e-6)
    with pytest.raises(OccluFaceError, match="mask calls"):
        routed_vectors(masked[:4], cp, mp, cg, mg)
    with pytest.raises(OccluFaceError, match="gallery entries"):
        routed_vectors(masked, cp, mp, cg, mg[:2])
    with pytest.raises(OccluFaceError, match="zero"):
        routed_vectors(masked, np.zeros_like(cp), mp, cg, mg)


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
    if rows["clean"]["routed_masked"] == 0.0:  # every bare probe took dlib's path: dlib's figures exactly
        assert rows["clean"]["rank1"] == dlib["clean"]["rank1"]
    assert "routed" in metrics["model_notes"]
    assert "sent to the masked path" in (out / "report.md").read_text()
