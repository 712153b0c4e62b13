"""Evaluation: metrics on hand-built cases with known answers, pairs, plots, reports and the CLI commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occluface.bench.curves import LogError, plot_training_curves, read_log
from occluface.bench.metrics import (
    MetricsError,
    closed_set_metrics,
    gallery_probe_split,
    kfold_accuracy,
    make_pairs,
    pair_scores,
    rank1_from_gallery,
    rank1_identification,
    verification_metrics,
)
from occluface.bench.plots import plot_confusion_matrix, plot_roc

DATA = Path(__file__).parents[1] / "data"


def _is_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]


# ----------------------------------------------------------------------------- closed set


def test_closed_set_metrics_known_values():
    m = closed_set_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["a", "b", "c"], loss=0.25)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["macro_recall"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    np.testing.assert_array_equal(m["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert m["confusion_labels"] == ["a", "b", "c"]
    assert m["loss"] == 0.25
    assert "macro avg" in m["classification_report"]


def test_closed_set_scores_only_classes_present_and_rejects_bad_input():
    m = closed_set_metrics([3, 3, 1], [3, 3, 1], ["a", "b", "c", "d"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["confusion_labels"] == ["b", "d"]
    with pytest.raises(MetricsError, match="outside"):
        closed_set_metrics([0, 5], [0, 1], ["a", "b"])
    with pytest.raises(MetricsError):
        closed_set_metrics([0, 1], [0], ["a", "b"])


# ----------------------------------------------------------------------------- verification


def test_perfect_separation():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 1.0, 300)
    neg = rng.uniform(-1.0, 0.5, 2000)
    m = verification_metrics(np.r_[pos, neg], np.r_[np.ones(300, bool), np.zeros(2000, bool)])
    assert m["auc"] == 1.0
    assert m["eer"] == 0.0
    assert m["accuracy_mean"] == 1.0 and m["accuracy_std"] == 0.0 and m["n_folds"] == 10
    assert 0.5 <= m["threshold_mean"] <= 0.6
    assert m["tar_at_far"] == {"1e-02": 1.0, "1e-03": 1.0}
    assert m["notes"] == []


def test_inverted_and_random_scores():
    same = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    inverted = verification_metrics(np.r_[np.zeros(500), np.ones(500)], same)
    assert inverted["auc"] == 0.0
    rng = np.random.default_rng(1)
    chance = verification_metrics(rng.normal(size=1000), same)
    assert 0.4 < chance["auc"] < 0.6
    assert 0.4 < chance["accuracy_mean"] < 0.62


def test_tar_at_far_read_off_the_roc():
    # 1000 impostors at 0.000 .. 0.999; genuine: 30 at 2.0, 20 at 0.995, 50 at 0.5.
    neg = np.arange(1000) / 1000
    pos = np.r_[np.full(30, 2.0), np.full(20, 0.995), np.full(50, 0.5)]
    m = verification_metrics(np.r_[pos, neg], np.r_[np.ones(100, bool), np.zeros(1000, bool)])
    # FAR 1e-3 = one impostor (0.999) accepted: only the 30 at 2.0 pass. FAR 1e-2: the 0.995 ones pass too.
    assert m["tar_at_far"]["1e-03"] == pytest.approx(0.3)
    assert m["tar_at_far"]["1e-02"] == pytest.approx(0.5)


def test_tar_is_none_with_too_few_impostors():
    scores = np.r_[np.ones(50), np.zeros(150)]
    m = verification_metrics(scores, np.r_[np.ones(50, bool), np.zeros(150, bool)])
    assert m["tar_at_far"]["1e-02"] == 1.0  # 150 impostors: FAR 1e-2 is measurable
    assert m["tar_at_far"]["1e-03"] is None
    assert any("1e-03" in n and "150 impostor" in n for n in m["notes"])


def test_ten_fold_accuracy_known_value():
    # 100 genuine at 1.0; impostors: 90 at 0.0 and 10 indistinguishable at 1.0 -> best accuracy 190/200.
    same = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = np.r_[np.ones(100), np.zeros(90), np.ones(10)]
    kf = kfold_accuracy(scores, same, n_folds=10, seed=0)
    assert kf["n_folds"] == 10 and len(kf["fold_accuracies"]) == 10
    assert kf["accuracy_mean"] == pytest.approx(0.95)
    assert kf["threshold_mean"] == pytest.approx(0.5)  # halfway between the accepted 1.0 and rejected 0.0
    # Fewer pairs of the rarer kind than folds: the fold count drops; one pair: nothing to cross-validate.
    assert kfold_accuracy(np.r_[1.0, 1, 1, 0, 0, 0], np.r_[True, True, True, False, False, False])["n_folds"] == 3
    assert kfold_accuracy(np.r_[1.0, 0, 0], np.r_[True, False, False]) is None


def test_verification_rejects_one_sided_input():
    with pytest.raises(MetricsError, match="genuine and impostor"):
        verification_metrics([0.1, 0.2], [True, True])
    with pytest.raises(MetricsError, match="NaN"):
        verification_metrics([0.1, np.nan], [True, False])


# ----------------------------------------------------------------------------- pairs


def test_make_pairs_genuine_and_balanced_impostors():
    labels = ["a", "a", "a", "b", "b", "c"]
    i, j, same = make_pairs(labels, seed=0)
    lab = np.asarray(labels)
    assert np.all(i < j)
    np.testing.assert_array_equal(same, lab[i] == lab[j])
    assert same.sum() == 4  # 3 pairs among the a's, 1 among the b's
    assert (~same).sum() == 4  # balanced
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == i.size  # no pair twice
    i2, j2, _ = make_pairs(labels, seed=0)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(j, j2)
    _, _, all_same = make_pairs(labels, max_negative_per_positive=None)
    assert (~all_same).sum() == 15 - 4  # every cross-identity pair
    _, _, capped = make_pairs(labels, max_negative_per_positive=10)
    assert (~capped).sum() == 11


def test_make_pairs_large_set_is_sampled_without_duplicates():
    labels = np.repeat(np.arange(1100), 2)  # 2200 images: too many pairs to enumerate
    i, j, same = make_pairs(labels, seed=3)
    assert same.sum() == 1100 and (~same).sum() == 1100
    assert np.all(labels[i[~same]] != labels[j[~same]])
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == i.size
    i2, _, _ = make_pairs(labels, seed=4)
    assert not np.array_equal(i, i2)


def test_pair_scores_are_cosine():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    np.testing.assert_allclose(pair_scores(emb, np.array([0, 0, 0]), np.array([1, 2, 3])), [1.0, 0.0, -1.0])


# ----------------------------------------------------------------------------- identification


def test_rank1_from_gallery_constructed():
    gallery = np.eye(3)
    probes = np.array([[1.0, 0.1, 0], [0.9, 0.2, 0], [0, 0.1, 1.0], [0, 1, 0]])
    m = rank1_from_gallery(gallery, ["a", "b", "c"], probes, ["a", "b", "c", "z"])
    assert m["n_probes"] == 3 and m["n_probes_unknown"] == 1
    assert m["rank1"] == pytest.approx(2 / 3)  # the "b" probe sits closest to "a"
    assert m["rank5"] is None  # 3 identities: rank-5 would be trivially 1
    assert m["per_identity"]["b"] == {"gallery": 1, "probes": 1, "rank1_correct": 0}
    assert m["per_identity"]["z"]["gallery"] == 0


def test_rank1_identification_gallery_split_and_rank5():
    rng = np.random.default_rng(0)
    centres = np.eye(8)
    labels = np.repeat(np.arange(8), 3)
    emb = centres[labels] + 0.05 * rng.normal(size=(24, 8))
    m = rank1_identification(emb, labels)
    assert m["rank1"] == 1.0 and m["rank5"] == 1.0
    assert m["n_gallery"] == 8 and m["n_probes"] == 16
    gal, probe = gallery_probe_split(labels, gallery_per_identity=2)
    assert gal.sum() == 16 and np.all(gal[::3]) and np.all(gal[1::3]) and np.all(probe[2::3])
    # Probes of identity 0 moved onto identity 1: they miss at rank 1 but are found within 5.
    emb2 = emb.copy()
    emb2[[1, 2]] = 0.9 * centres[1] + 0.3 * centres[0]
    m2 = rank1_identification(emb2, labels)
    assert m2["rank1"] == pytest.approx(14 / 16)
    assert m2["rank5"] == 1.0
    with pytest.raises(MetricsError, match="no probe"):
        rank1_identification(np.eye(3), [0, 1, 2])


# ----------------------------------------------------------------------------- plots and curves


def _write_log(path: Path, top: float, steps: int = 60, truncated_tail: bool = False) -> None:
    rng = np.random.default_rng(int(top * 100))
    lines = []
    for s in range(1, steps + 1):
        acc = top * (1 - np.exp(-s / 15))
        lines.append({"step": s, "epoch": s / 20, "split": "train", "loss": 2.5 * np.exp(-s / 20) + 0.1,
                      "acc": float(np.clip(acc + rng.normal(0, 0.05), 0, 1)), "lr": 0.1})
        if s % 20 == 0:
            lines.append({"step": s, "epoch": s / 20, "split": "test", "loss": 2.5 * np.exp(-s / 20) + 0.3,
                          "acc": acc - 0.05 * (s == steps)})
    text = "\n".join(json.dumps(r) for r in lines) + "\n\n"
    if truncated_tail:
        text += '{"step": 61, "split": "tr'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_read_log_tolerates_a_half_written_tail_but_not_garbage(tmp_path):
    log = tmp_path / "log.jsonl"
    _write_log(log, 0.9, truncated_tail=True)
    records = read_log(log)
    assert len(records) == 63 and records[-1]["split"] == "test"
    log.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(LogError, match="line 2"):
        read_log(log)
    with pytest.raises(LogError, match="not found"):
        read_log(tmp_path / "missing.jsonl")


def test_training_curves_two_runs(tmp_path):
    _write_log(tmp_path / "a" / "log.jsonl", 0.8)
    _write_log(tmp_path / "b" / "log.jsonl", 0.95)
    png = plot_training_curves({"ResNet": tmp_path / "a" / "log.jsonl", "CBAM": tmp_path / "b" / "log.jsonl"},
                               tmp_path / "out" / "curves.png")
    assert _is_png(png, (1000, 400))


def test_confusion_and_roc_pngs(tmp_path):
    rng = np.random.default_rng(0)
    for n in (5, 30):
        cm = np.diag(rng.integers(2, 6, n)) + rng.integers(0, 2, (n, n))
        assert _is_png(plot_confusion_matrix(cm, [f"id{k}" for k in range(n)], tmp_path / f"cm{n}.png"))
    m = verification_metrics(np.r_[rng.normal(0.6, 0.2, 200), rng.normal(0, 0.2, 2000)],
                             np.r_[np.ones(200, bool), np.zeros(2000, bool)])
    assert _is_png(plot_roc({"model": (m["roc_fpr"], m["roc_tpr"], m["auc"])}, tmp_path / "roc.png"))


def test_compare_runs_table(tmp_path):
    from occluface.bench.report import compare_runs

    _write_log(tmp_path / "r1" / "log.jsonl", 0.8)
    _write_log(tmp_path / "r2" / "log.jsonl", 0.9)
    (tmp_path / "r2" / "config.json").write_text(json.dumps({"model": "cbam_resnet18"}))
    res = compare_runs([tmp_path / "r1", tmp_path / "r2"], tmp_path / "cmp", labels=["base", "improved"])
    r1, r2 = res["runs"]
    expected_best = 0.9 * (1 - np.exp(-40 / 15))  # the last evaluation dips, so the best is at step 40
    assert r2["label"] == "improved" and r2["model"] == "cbam_resnet18" and r2["steps"] == 60
    assert r2["best_test_acc"] == pytest.approx(expected_best) and r2["best_test_step"] == 40
    assert r2["final_test_acc"] == pytest.approx(0.9 * (1 - np.exp(-60 / 15)) - 0.05)
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| improved | cbam_resnet18 |" in md and f"{100 * expected_best:.2f} %" in md
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"][0]["label"] == "base"
    assert _is_png(tmp_path / "cmp" / "curves.png")
    with pytest.raises(LogError, match="no log.jsonl"):
        compare_runs([tmp_path / "nowhere"], tmp_path / "cmp2")


# ----------------------------------------------------------------------------- checkpoint reports


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Train 2 steps of a tiny registered backbone on 4 Yale B identities x 4 images."""
    import torch
    from torch import nn

    from occluface.models import registry
    from occluface.models.config import TrainConfig
    from occluface.train.trainer import train

    name = "evaltest_tiny"

    @registry.register(name, default_input_size=16, description="test-only tiny CNN")
    def _tiny(embedding_size: int = 8, input_size=(16, 16)) -> nn.Module:
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, embedding_size),
        )
        return net

    root = tmp_path_factory.mktemp("eval")
    data = root / "faces"
    for person in sorted((DATA / "yaleb").iterdir())[:4]:
        (data / person.name).mkdir(parents=True)
        for img in sorted(person.iterdir())[:4]:
            shutil.copy(img, data / person.name / img.name)
    torch.manual_seed(0)
    cfg = TrainConfig(model=name, data=str(data), out=str(root / "run"), epochs=1, batch_size=4, input_size=16,
                      embedding_size=8, max_steps=2, num_workers=0, eval_every=1, log_every=1, test_fraction=0.5,
                      amp=False, channels_last=False)
    try:
        train(cfg, progress=False)
        yield data, root / "run"
    finally:
        registry._REGISTRY.pop(name, None)


def test_evaluate_checkpoint_writes_report(tiny_run, tmp_path):
    from occluface.bench.report import evaluate_checkpoint

    data, run = tiny_run
    m = evaluate_checkpoint(run / "last.pt", data, tmp_path / "rep", progress=False)
    out = tmp_path / "rep"
    for f in ("report.md", "metrics.json", "confusion_matrix.png", "roc.png", "scores.png", "curves.png",
              "confusion_matrix.csv", "roc.csv", "pairs.csv"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["n_images"] == 8 and saved["n_identities"] == 4
    assert saved["verification"]["n_genuine"] == 4 and saved["verification"]["n_impostor"] == 4
    assert saved["identification"]["n_gallery"] == 4 and saved["identification"]["n_probes"] == 4
    assert saved["verification"]["tar_at_far"]["1e-02"] is None
    # The head on the held-out images must agree with what training logged for this very checkpoint.
    last_test = [r for r in read_log(run / "log.jsonl") if r["split"] == "test"][-1]
    assert saved["closed_set"]["accuracy"] == pytest.approx(last_test["acc"])
    assert saved["closed_set"]["loss"] == pytest.approx(last_test["loss"], rel=1e-4)
    report = (out / "report.md").read_text()
    assert "Split evaluated: **test**" in report and "Images: 8, identities: 4" in report
    assert "pairs (genuine / impostor) | 8 (4 / 4)" in report
    assert "n/a (only 4 impostor pairs)" in report
    assert m["report"] == str(out / "report.md")


def test_evaluate_all_split_and_wrong_data_folder(tiny_run, tmp_path):
    from occluface.errors import DatasetError
    from occluface.bench.report import evaluate_checkpoint

    data, run = tiny_run
    m = evaluate_checkpoint(run / "last.pt", data, tmp_path / "all", split="all", progress=False,
                            negatives_per_positive=None)
    assert m["n_images"] == 16 and m["verification"]["n_genuine"] == 24
    assert m["verification"]["n_impostor"] == 16 * 15 // 2 - 24
    with pytest.raises(DatasetError, match="none of the checkpoint's 8 test images"):
        evaluate_checkpoint(run / "last.pt", DATA / "lfw", tmp_path / "lfw", progress=False)


def test_cli_evaluate_and_compare(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    data, run = tiny_run
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(data),
                              "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_images"] == 8
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(data),
                              "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (tmp_path / "r2" / "report.md").is_file()
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(data)])
    assert res.exit_code == 2 and "nope.pt" in res.output
    res = runner.invoke(app, ["evaluate", "-c", str(run / "last.pt"), "--data", str(data), "--split", "train"])
    assert res.exit_code == 2 and "--split must be one of test, all" in res.output
    res = runner.invoke(app, ["evaluate", "-c", str(run / "last.pt"), "--data", str(data), "--device", "gpu0"])
    assert res.exit_code == 2 and "unknown device" in res.output
    res = runner.invoke(app, ["compare", str(run), str(run), "--out", str(tmp_path / "cmp"), "--label", "tiny"])
    assert res.exit_code == 2  # one label for two runs
    res = runner.invoke(app, ["compare", str(run), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "comparison.md").is_file() and "evaltest_tiny" in res.output
