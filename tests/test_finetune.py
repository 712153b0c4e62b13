"""Occlusion-robust fine-tuning (occluface.train.distill), the shipped occluface_resnet, and `bench accuracy`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occluface.cli import app
from occluface.data.identities import heldout_identities
from occluface.errors import CheckpointError, OccluFaceError
from occluface.train.distill import (
    DistillConfig,
    DistillData,
    collect_faces,
    distill_loss,
    embed,
    export_delta,
    prepare,
    train_distill,
)

DATA = Path(__file__).parents[1] / "data"


def tiny_cfg(**kw) -> DistillConfig:
    base = dict(
        max_faces=4, shard_size=3, variants=2, yaleb_holdout=2, lfw_holdout=0, sources=("yaleb",), steps=3,
        batch_size=4, lr=3e-5, warmup=1, freeze_blocks=10, clean_fraction=0.0, val_faces=0, val_every=0,
        save_every=1, log_every=1,
    )
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("distill") / "cache"
    prepare(DATA, path, tiny_cfg(), progress=False)
    return path


def test_loss_is_lower_for_the_teacher_matching_student():
    torch.manual_seed(0)
    teacher = torch.randn(8, 128)
    close = teacher + 0.05 * torch.randn(8, 128)
    assert float(distill_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(close, teacher)) < float(distill_loss(torch.randn(8, 128), teacher))
    # weights pick which rows count
    mixed = torch.cat([teacher[:4], -teacher[4:]])
    assert float(distill_loss(mixed, teacher, [1, 1, 1, 1, 0, 0, 0, 0])) == pytest.approx(0.0, abs=1e-6)


def test_heldout_identities_are_seeded_and_never_trained_on():
    names = [f"p{i:02d}" for i in range(20)]
    a = heldout_identities(names, 5, seed=0, salt="yaleb")
    assert a == heldout_identities(list(reversed(names)), 5, seed=0, salt="yaleb") and len(a) == 5
    assert a != heldout_identities(names, 5, seed=1, salt="yaleb")
    faces, held = collect_faces(DATA, DistillConfig(yaleb_holdout=3, sources=("yaleb", "lfw")))
    assert len(held["yaleb"]) == 3 and len(held["lfw"]) == 10  # the bundled lfw/ has fewer than 300 people: all held out
    trained = {f["identity"] for f in faces if f["source"] == "yaleb"}
    assert trained and not trained & set(held["yaleb"]) and not [f for f in faces if f["source"] == "lfw"]


def test_prepared_cache_holds_clean_and_occluded_chips_with_teacher_embeddings(cache):
    data = DistillData(cache)
    assert len(data) == 4 and data.variants == 2 and data.teacher.shape == (4, 128)
    clean, occluded = data.chip(0, 0), data.chip(0, 1)
    assert clean.shape == (150, 150, 3) and clean.dtype == np.uint8 and not np.array_equal(clean, occluded)
    from occluface.models.dlib_port import DlibResNetTorch

    again = embed(DlibResNetTorch().eval(), np.stack([data.chip(i, 0) for i in range(4)]))
    assert np.allclose(again, data.teacher, atol=1e-4)
    # a second prepare resumes (nothing to do), a different setting is refused instead of mixing caches
    prepare(DATA, cache, tiny_cfg(), progress=False)
    with pytest.raises(OccluFaceError, match="other data settings"):
        prepare(DATA, cache, tiny_cfg(variants=3), progress=False)


def _occluded_loss(model, data: DistillData) -> float:
    chips = np.stack([data.chip(i, v) for i in range(len(data)) for v in range(1, data.variants + 1)])
    target = np.repeat(data.teacher, data.variants, axis=0)
    return float(distill_loss(torch.from_numpy(embed(model.eval(), chips)), torch.from_numpy(target)))


def test_a_few_steps_reduce_the_loss_and_export_a_loadable_delta(cache, tmp_path):
    from occluface.models import create
    from occluface.models.dlib_port import DlibResNetTorch

    data = DistillData(cache)
    before = _occluded_loss(DlibResNetTorch(), data)
    train_distill(cache, tmp_path / "run", tiny_cfg(steps=4), progress=False)
    delta = tmp_path / "delta.pt"
    info = export_delta(tmp_path / "run" / "last.pt", delta)
    assert info["tensors"] > 0 and info["step"] == 4
    model = create("occluface_resnet", weights=str(delta))
    assert _occluded_loss(model, data) < before
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]


def test_checkpoint_resume_gives_the_same_weights_as_an_uninterrupted_run(cache, tmp_path):
    straight = train_distill(cache, tmp_path / "a", tiny_cfg(), progress=False)
    assert straight["steps_done"] == 3
    first = train_distill(cache, tmp_path / "b", tiny_cfg(), progress=False, max_minutes=0.0)
    assert first["stopped_early"] and first["steps_done"] == 1
    resumed = train_distill(cache, tmp_path / "b", tiny_cfg(), progress=False)
    assert resumed["steps_done"] == 3 and not resumed["stopped_early"]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["backbone"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt"):
        train_distill(cache, tmp_path / "c", tiny_cfg(), progress=False)


def test_registry_builds_the_shipped_model_with_its_weights():
    from occluface.models import create, model_info
    from occluface.models.dlib_finetuned import WEIGHTS, weights_meta
    from occluface.models.dlib_port import DlibResNetTorch

    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 13 * 2**20
    model = create("occluface_resnet").eval()
    assert model.name == "occluface_resnet" and model.chip == "dlib" and model.embedding_size == 128
    assert model_info("occluface_resnet")["default_input_size"] == (150, 150)
    meta = weights_meta()
    assert len(meta["heldout"]["yaleb"]) == 10 and len(meta["heldout"]["lfw_dev"]) == 300
    base = DlibResNetTorch().eval()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and "stem.weight" not in changed  # fine-tuned tensors differ; the frozen stem is dlib's
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(model(x), base(x))
    assert (cos > 0.3).all() and (cos < 0.99999).all()  # a fine-tuned dlib, not dlib and not noise


def test_bad_inputs_give_clear_errors(tmp_path):
    from occluface.models import create

    bad = tmp_path / "delta.pt"
    torch.save({"backbone": {}, "meta": {"format": "something else"}}, bad)
    with pytest.raises(CheckpointError, match="not an occluface dlib delta"):
        create("occluface_resnet", weights=str(bad))
    with pytest.raises(OccluFaceError, match="128-d"):
        create("occluface_resnet", embedding_size=64)
    with pytest.raises(OccluFaceError, match="clean_fraction"):
        prepare(DATA, tmp_path / "x", tiny_cfg(clean_fraction=1.5), progress=False)
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "accuracy", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a folder" in res.output
    res = runner.invoke(app, ["bench", "accuracy", "--data", str(DATA), "--occlusion", "glitter", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown occlusion kind" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["finetune", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a folder" in res.output


def test_bench_accuracy_runs_end_to_end_on_the_bundled_sample(tmp_path):
    out = tmp_path / "acc"
    args = ["bench", "accuracy", "--data", str(DATA), "--models", "dlib_resnet,occluface_resnet",
            "--occlusion", "plain,lowlight", "--yaleb-holdout", "3", "--lfw-holdout", "3",
            "--probes-per-identity", "2", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["datasets"]) == {"yaleb", "lfw"}
    yale = metrics["datasets"]["yaleb"]
    assert yale["n_identities"] == 3 and yale["n_probes"] == 6
    for model in ("dlib_resnet", "occluface_resnet"):
        rows = yale["models"][model]
        assert set(rows) == {"clean", "plain", "lowlight"}
        assert 0.0 <= rows["plain"]["rank1"] <= 1.0 and 0.0 <= rows["clean"]["auc"] <= 1.0
    assert "meets_bar" in metrics["bar"]["models"]["occluface_resnet"]
    for model in ("dlib_resnet", "occluface_resnet"):  # both ship a calibrated threshold
        row = yale["models"][model]["clean"]
        assert 0.0 <= row["far_at_threshold"] <= 1.0 and 0.0 <= row["frr_at_threshold"] <= 1.0
    report = (out / "report.md").read_text()
    assert "| plain | occluface_resnet |" in report and "real masked photos" in report
    assert "At each model's shipped threshold" in report
    assert (out / "accuracy_yaleb.png").stat().st_size > 1000 and (out / "accuracy_lfw.png").is_file()


def test_speed_bench_knows_the_fine_tuned_model():
    from occluface.bench.speed import _describe, _known, default_backends

    assert "finetuned-fast" in default_backends(cuda=False) and _known("finetuned-fast")
    assert "finetuned-cuda" in default_backends(cuda=True)
    assert "occluface_resnet" in _describe("finetuned-fast")


def test_training_curves_plot(cache, tmp_path):
    from occluface.train.distill import plot_log

    train_distill(cache, tmp_path / "run", tiny_cfg(steps=2, val_faces=1, val_every=1), progress=False)
    png = plot_log(tmp_path / "run" / "log.jsonl", tmp_path / "curves.png")
    assert png.stat().st_size > 5000
    with pytest.raises(OccluFaceError, match="no training log"):
        plot_log(tmp_path / "missing.jsonl", tmp_path / "x.png")


def test_finetune_cli_runs_end_to_end_and_exports_the_delta(tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "--data", str(DATA), "--out", str(out), "--max-faces", "3", "--variants", "1",
            "--yaleb-holdout", "2", "--steps", "3", "--stop-step", "1", "--batch-size", "2", "--lr", "1e-5"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 1 and not summary["stopped_early"]
    assert (out / "occluface_resnet.pt").is_file() and (out / "curves.png").is_file()
    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    assert manifest["n_faces"] == 3 and len(manifest["heldout"]["yaleb"]) == 2


def test_bench_accuracy_training_identities_are_a_labelled_ceiling_check(tmp_path):
    from occluface.bench.accuracy import _datasets
    from occluface.data.identities import heldout_identities
    from occluface.data.identities import list_identities

    held = {name for _, _, items in _datasets(DATA, 3, 3, 2, 0, None) for name, _, _ in items}
    train = _datasets(DATA, 3, 3, 2, 0, None, identities="training")
    again = _datasets(DATA, 3, 3, 2, 0, None, identities="training")
    assert [(d, [i[:2] for i in it]) for d, _, it in train] == [(d, [i[:2] for i in it]) for d, _, it in again]
    for ds, salt, items in train:
        names = {name for name, _, _ in items}
        ids = {n: f for n, f in list_identities(DATA / ds).items() if len(f) >= 2}
        assert len(names) == 3 and not names & set(heldout_identities(ids, 3, 0, salt=salt))
        assert names <= set(ids)
    assert not {name for _, _, items in train for name, _, _ in items} & held
    with pytest.raises(OccluFaceError, match="identities must be one of heldout, training"):
        _datasets(DATA, 3, 3, 2, 0, None, identities="everyone")

    out = tmp_path / "acc"
    args = ["bench", "accuracy", "--data", str(DATA), "--models", "dlib_resnet", "--occlusion", "plain",
            "--yaleb-holdout", "2", "--lfw-holdout", "2", "--probes-per-identity", "1", "--identities", "training",
            "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["identities"] == "training" and not metrics["warnings"]
    report = (out / "report.md").read_text()
    assert report.startswith("# Accuracy: dlib baseline vs occluface models on training identities")
    assert "NOT A TEST" in report and "a ceiling, not the bar" in report
    assert metrics["flip"] is False and "test-time flip" not in report
    res = CliRunner().invoke(app, args + ["--flip"])  # test-time flip is recorded in the JSON and the report
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["flip"] is True
    assert "**test-time flip**" in (out / "report.md").read_text()
    res = CliRunner().invoke(app, args[:-3] + ["everyone", "--out", str(out)])
    assert res.exit_code == 2 and "identities must be one of" in res.output and "Traceback" not in res.output


def test_arcface_term_starts_at_the_teacher_centroids_trains_and_resumes(cache, tmp_path):
    from occluface.train.distill import build_identity_head, identity_labels

    data = DistillData(cache)
    labels, names = identity_labels(data)
    assert len(names) >= 2 and len(labels) == len(data) and (labels >= 0).all()  # Yale B faces all carry a name
    cfg = tiny_cfg(arcface_weight=0.05)
    head = build_identity_head(data, labels, len(names), cfg)
    for c in range(len(names)):
        mean = data.teacher[labels == c].mean(0)
        np.testing.assert_allclose(head.weight[c].detach().numpy(), mean / np.linalg.norm(mean), atol=1e-5)
    # its cross-entropy is finite and lower for the true names than for shuffled ones
    emb = torch.from_numpy(data.teacher)
    true = torch.nn.functional.cross_entropy(head(emb, torch.from_numpy(labels)), torch.from_numpy(labels))
    wrong = torch.from_numpy((labels + 1) % len(names))
    assert torch.isfinite(true) and true < torch.nn.functional.cross_entropy(head(emb, wrong), wrong)

    straight = train_distill(cache, tmp_path / "a", cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert straight["steps_done"] == 3 and all(np.isfinite(r["loss_arcface"]) for r in log)
    assert "identity_head" in torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    train_distill(cache, tmp_path / "b", cfg, progress=False, max_minutes=0.0)
    train_distill(cache, tmp_path / "b", cfg, progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all(torch.allclose(a["backbone"][k], b["backbone"][k], atol=1e-6) for k in a["backbone"])
    assert torch.allclose(a["identity_head"]["weight"], b["identity_head"]["weight"], atol=1e-6)
    # a run made without the term cannot be resumed with it (its head would start from scratch mid-schedule)
    train_distill(cache, tmp_path / "c", tiny_cfg(), progress=False, max_minutes=0.0)
    with pytest.raises(CheckpointError, match="without the ArcFace term"):
        train_distill(cache, tmp_path / "c", cfg, progress=False)
    with pytest.raises(OccluFaceError, match="arcface_weight"):
        tiny_cfg(arcface_weight=-1.0).check()


def test_bench_metrics_give_far_and_frr_at_a_threshold():
    from occluface.bench.accuracy import _metrics

    gallery = np.eye(3, dtype=np.float32)
    probes = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1], [0.8, 0, 0.6]], np.float32)
    g_lab, p_lab = np.array(["a", "b", "c"]), np.array(["a", "b", "c", "c"])
    m = _metrics(gallery, g_lab, probes, p_lab, threshold=0.7)
    # genuine scores 1, 0.8, 1, 0.6 -> one of 4 rejected; impostor scores: 0.6 (b->a) and 0.8 (c->a) of 8 accepted once
    assert m["frr_at_threshold"] == pytest.approx(1 / 4) and m["far_at_threshold"] == pytest.approx(1 / 8)
    assert "far_at_threshold" not in _metrics(gallery, g_lab, probes, p_lab)


class _FakeData:
    """A stand-in for the prepared cache: person k's chips are flat colour k (variant 1 darkened, variant 2 noise)."""

    variants = 2

    def __init__(self, photos=(3, 3, 2, 1), source="lfw_dev"):
        self.faces, self.colour = [], []
        rng = np.random.default_rng(0)
        colours = rng.uniform(40, 215, size=(len(photos), 3))
        for k, n in enumerate(photos):
            for _ in range(n):
                self.faces.append({"source": source, "identity": f"p{k}", "path": f"p{k}.jpg"})
                self.colour.append(colours[k])
        self.faces.append({"source": "mask_cls", "identity": "", "path": "x.jpg"})  # unnamed: never a val person
        self.colour.append(colours[0])
        self.kinds = np.asarray([["plain", "dust"]] * len(self.faces))
        self.rng = rng

    def chip(self, i, v):
        base = np.full((150, 150, 3), self.colour[i], np.float64)
        if v == 1:
            base[75:] *= 0.3  # a dark lower half: the colour's direction survives
        if v == 2:
            base = np.random.default_rng(i).uniform(0, 255, base.shape)  # nothing of the person left
        return base.astype(np.uint8)


class _MeanColour(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_validation_people_are_seeded_named_lfw_people_with_two_photos_and_rank1_is_per_kind():
    from occluface.errors import DatasetError
    from occluface.train.distill import validate_people, validation_people

    data = _FakeData()
    people = validation_people(data, 3, seed=0)
    assert set(people) == {"p0", "p1", "p2"}  # p3 has one photo, the mask_cls face no name
    assert people["p0"] == [0, 1, 2] and people["p2"] == [6, 7]
    assert validation_people(data, 2, seed=0) == validation_people(data, 2, seed=0)
    with pytest.raises(DatasetError, match="only 3 lfw_dev people"):
        validation_people(data, 4)
    assert validation_people(_FakeData(source="yaleb"), 0) == {}
    scores = validate_people(_MeanColour(), data, people)
    assert scores["val_people_rank1_clean"] == 1.0 and scores["val_people_rank1_plain"] == 1.0
    assert scores["val_people_rank1_dust"] < 1.0  # the noise variant matches by chance only
    assert scores["val_people_rank1_occluded"] == pytest.approx((1.0 * 4 + 4 * scores["val_people_rank1_dust"]) / 8)
    flipped = validate_people(_MeanColour(), data, people, flip=True)
    assert flipped["val_people_flip_rank1_clean"] == 1.0 and set(flipped) == {k.replace("rank1", "flip_rank1") for k in scores}


def test_mirrored_batches_use_the_mirrored_targets_and_leave_the_rest_of_the_batch_alone(cache):
    from occluface.models.dlib_port import DlibResNetTorch
    from occluface.train.distill import _batch, mirrored_teacher

    data = DistillData(cache)
    target = mirrored_teacher(data, cache)
    flipped_clean = np.stack([data.chip(i, 0)[:, ::-1] for i in range(len(data))])
    assert np.allclose(target, embed(DlibResNetTorch().eval(), flipped_clean), atol=1e-4)
    assert not np.allclose(target, data.teacher, atol=1e-3)
    idx = np.arange(len(data))
    plain = _batch(data, idx, 5, tiny_cfg())
    every = _batch(data, idx, 5, tiny_cfg(mirror=1.0), mirror_teacher=target)
    np.testing.assert_array_equal(every[4], plain[4])  # the same faces and variants: the mirror draw is its own stream
    assert all(np.array_equal(every[0][r], plain[0][r][:, ::-1]) for r in range(len(plain[0])))
    np.testing.assert_array_equal(every[1], target[plain[4]])
    half = _batch(data, idx, 5, tiny_cfg(batch_size=32, mirror=0.5), mirror_teacher=target)
    base = _batch(data, idx, 5, tiny_cfg(batch_size=32))
    mirrored = [not np.array_equal(half[0][r], base[0][r]) for r in range(32)]
    assert 0 < sum(mirrored) < 32
    for r in range(32):
        np.testing.assert_array_equal(half[1][r], (target if mirrored[r] else data.teacher)[base[4][r]])
    with pytest.raises(OccluFaceError, match="mirrored teacher"):
        _batch(data, idx, 5, tiny_cfg(mirror=0.5))
    with pytest.raises(OccluFaceError, match="mirror must be"):
        tiny_cfg(mirror=1.5).check()


def test_a_mirrored_run_resumes_exactly_and_refuses_a_checkpoint_of_another_setting(cache, tmp_path):
    cfg = tiny_cfg(mirror=0.5)
    train_distill(cache, tmp_path / "a", cfg, progress=False)
    train_distill(cache, tmp_path / "b", cfg, progress=False, max_minutes=0.0)
    train_distill(cache, tmp_path / "b", cfg, progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    assert all(torch.allclose(a["backbone"][k], b["backbone"][k], atol=1e-6) for k in a["backbone"])
    plain = torch.load(train_distill(cache, tmp_path / "p", tiny_cfg(), progress=False) and tmp_path / "p" / "last.pt",
                       weights_only=True)
    assert any(not torch.equal(a["backbone"][k], plain["backbone"][k]) for k in a["backbone"])  # mirroring did something
    with pytest.raises(CheckpointError, match="mirror=0.0, asked for 0.5"):
        train_distill(cache, tmp_path / "p", cfg, progress=False)
