"""Mask-wearing classifier (issue 6): data grouping/split, incorrect-mask synthesis, narrow ResNet, training
loop files, paper metrics, shipped weights with Grad-CAM, and the mask-check command on bundled data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occluface.cli import app
from occluface.errors import CheckpointError, OccluFaceError
from occluface.maskcheck import data as mdata

DATA = Path(__file__).parents[1] / "data"
runner = CliRunner()


def _lfw_photo(i: int) -> Path:
    person = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir())[i]
    return sorted(person.glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def detector():
    from occluface.faces.detect import create_detector

    return create_detector("auto")


@pytest.fixture(scope="module")
def model():
    from occluface.maskcheck.model import DEFAULT_WEIGHTS, load_weights

    assert DEFAULT_WEIGHTS.is_file(), "shipped mask-classifier weights are missing"
    return load_weights()


# ----------------------------------------------------------------------------- data


def test_name_groups_keep_near_duplicates_together():
    g = mdata._name_group
    assert g("without_mask", "1856_augmented_image_74.jpg") == g("without_mask", "0150_74.jpg")
    assert g("with_mask", "0008_0_0_0_copy_11.jpg") == g("with_mask", "0019_0_0_0_copy_2.jpg") == g("with_mask", "0030_0_0_0.jpg")
    assert g("without_mask", "0001_0_0_aidai_0014.jpg") == g("without_mask", "0003_0_0_aidai_0043.jpg")
    assert g("without_mask", "0001_0_0_aidai_0014.jpg") != g("without_mask", "0007_0_0_anhu_0004.jpg")
    assert g("with_mask", "0150_74.jpg") != g("without_mask", "0150_74.jpg")


def test_split_is_grouped_seeded_and_about_nine_to_one():
    groups = [f"g{i // 3}" for i in range(600)]
    strata = ["a" if i < 300 else "b" for i in range(600)]
    s1 = mdata.split_groups(groups, strata, seed=3)
    assert s1 == mdata.split_groups(groups, strata, seed=3)
    assert s1 != mdata.split_groups(groups, strata, seed=4)
    by_group: dict[str, set[str]] = {}
    for g, s in zip(groups, s1):
        by_group.setdefault(g, set()).add(s)
    assert all(len(v) == 1 for v in by_group.values())
    assert 30 <= s1.count("test") <= 95 and 25 <= s1.count("val") <= 90
    # a group keeps its split when other groups are added
    more = mdata.split_groups(groups + ["new1", "new2"], strata + ["a", "a"], seed=3)
    assert more[:600] == s1


def test_mirrored_copies_are_merged_into_one_group():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    crops = np.stack([a, a[:, ::-1], b])
    groups = mdata.union_near_duplicates(crops, ["x", "y", "z"])
    assert groups[0] == groups[1] and groups[2] != groups[0]


def test_rwmfd_listing_drops_duplicates_and_ood_folders_are_whole(tmp_path):
    root = tmp_path / "d"
    for folder, names in (("0000", ["a.jpg", "b.jpg"]), ("0001", ["c.jpg"]), ("0002", ["d.jpg", "e.jpg", "f.jpg"])):
        (root / "rwmfd_masked" / folder).mkdir(parents=True)
        for n in names:
            (root / "rwmfd_masked" / folder / n).write_bytes(b"x")
    (root / "rwmfd_masked_duplicates.tsv").write_text(
        "group\tsha256\tfile\n1\tab\trwmfd_masked/0000/a.jpg\n1\tab\trwmfd_masked/0002/d.jpg\n"
    )
    recs = mdata.list_rwmfd(root)
    assert sorted(r.path.name for r in recs) == ["a.jpg", "b.jpg", "c.jpg", "e.jpg", "f.jpg"]
    held = mdata.ood_folders(recs, 0.3, seed=0)
    assert held and held <= {r.group for r in recs}


def test_crop_part_adds_synthetic_masks_and_resumes(tmp_path):
    recs = [mdata.Record(p, lab, f"mask_cls/{cls}", mdata._name_group(cls, p.name))
            for cls, lab in (("with_mask", mdata.CORRECT), ("without_mask", mdata.NONE))
            for p in sorted((DATA / "mask_cls" / cls).glob("*.jpg"))[:1]]
    part = tmp_path / "p.npz"
    out = mdata.crop_part(DATA, recs, part, seed=0, synth_fraction=1.0, detector="auto", progress=False)
    assert bool(out["complete"]) and out["images"].shape[1:] == (112, 112, 3)
    assert sorted(out["label"].tolist()) == [mdata.NONE, mdata.CORRECT, mdata.CORRECT, mdata.INCORRECT]
    synth = out["synthetic"]
    assert synth.sum() == 2 and len(set(out["group"][synth].tolist())) == 1
    assert out["group"][synth][0] == out["group"][(out["label"] == mdata.NONE)][0]  # same group as its source
    # an interrupted part resumes after its `done` records (here: all), without cropping them again
    partial = {k: out[k][:1] for k in ("images", "label", "source", "group", "path", "synthetic")}
    np.savez(part, **partial, skipped=np.array([], dtype="<U8"), done=np.array(len(recs)), complete=np.array(False))
    again = mdata.crop_part(DATA, recs, part, seed=0, synth_fraction=1.0, detector="auto", progress=False)
    assert len(again["images"]) == 1 and bool(again["complete"])


def test_incorrect_mask_leaves_the_nose_uncovered(detector):
    from occluface.data.images import load_rgb
    from occluface.data.occlusion import mask_region
    from occluface.data.occlusion.faces import _fit68, box_from_five

    img = load_rgb(_lfw_photo(0))
    face = mdata.main_face(detector, img)
    lm = _fit68(img, box_from_five(face.landmarks))
    nose = tuple(np.round(lm[30]).astype(int))  # nose tip
    chin = tuple(np.round((lm[8] * 0.7 + lm[57] * 0.3)).astype(int))
    for style in ("nose_out", "chin"):
        region = mask_region(img.shape, mdata.incorrect_landmarks(lm, style))
        assert not region[nose[1], nose[0]] and region[chin[1], chin[0]], style
    assert mask_region(img.shape, lm)[nose[1], nose[0]]  # a correctly worn mask does cover it
    with pytest.raises(OccluFaceError):
        mdata.incorrect_landmarks(lm, "ear")


# ----------------------------------------------------------------------------- model + training


def test_narrow_resnet18_width_option():
    from occluface.models import create

    full = create("resnet18", embedding_size=2, input_size=112)
    narrow = create("resnet18", embedding_size=2, input_size=112, width=16)
    n_full = sum(p.numel() for p in full.parameters())
    n_narrow = sum(p.numel() for p in narrow.parameters())
    assert n_narrow < n_full / 10
    assert narrow(torch.zeros(2, 3, 64, 64)).shape == (2, 2)
    with pytest.raises(OccluFaceError):
        create("resnet18", embedding_size=2, input_size=112, width=2)


def _fake_data(n: int = 48) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lab = np.array(([0, 1, 2] * n)[:n])
    imgs = rng.integers(90, 160, (n, 112, 112, 3), dtype=np.uint8)
    imgs[lab == 1, 60:] = 20  # "mask": dark lower half
    imgs[lab == 2, 85:] = 20
    split = np.array((["train"] * 6 + ["val", "test"]) * (n // 8))
    split[:3] = "ood"
    return {"images": imgs, "label": lab, "split": split, "source": np.array(["mask_cls/x"] * n),
            "group": np.array([str(i) for i in range(n)]), "path": np.array(["p"] * n), "synthetic": np.zeros(n, bool)}


def test_training_writes_log_checkpoints_and_report(tmp_path):
    from occluface.bench.maskcheck import evaluate
    from occluface.maskcheck.model import load_weights
    from occluface.train.maskcheck import MaskTrainConfig, predict_proba, train

    data = _fake_data()
    cfg = MaskTrainConfig(classes=3, width=8, input_size=48, epochs=2, batch_size=16, lr=0.05, seed=1, augment="strong",
                          label_smoothing=0.1)
    summary = train(data, tmp_path / "run", cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert all(np.isfinite(r["val_nll"]) and 0 <= r["val_masked_f1"] <= 1 for r in rows)
    assert 1 <= summary["best_epoch"] <= 2
    full, half = load_weights(tmp_path / "run" / "best.pt"), load_weights(tmp_path / "run" / "weights.pt")
    assert half.classes == 3 and half.input_size == 48 and half.class_names == ("none", "correct", "incorrect")
    assert (tmp_path / "run" / "weights.pt").stat().st_size < (tmp_path / "run" / "best.pt").stat().st_size
    x = data["images"][:6]
    np.testing.assert_allclose(predict_proba(full, x), predict_proba(half, x), atol=0.02)
    res = evaluate(half, data, tmp_path / "report")
    assert (tmp_path / "report" / "confusion.png").stat().st_size > 0
    cm = np.array(res["all"]["confusion_matrix"])
    assert cm.sum() == (data["split"] == "test").sum()
    assert "mask_cls/x" in res["ood"] and "| true \\ predicted |" in (tmp_path / "report" / "report.md").read_text()


def test_strong_augmentation_is_seeded_and_keeps_the_range(tmp_path):
    from occluface.train.maskcheck import MaskTrainConfig, augment_strong, train

    x = torch.rand(8, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    a = augment_strong(x.clone(), torch.Generator().manual_seed(3))
    b = augment_strong(x.clone(), torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    for bad in ({"augment": "wild"}, {"label_smoothing": 1.0}):
        with pytest.raises(OccluFaceError):
            train(_fake_data(), tmp_path / "bad", MaskTrainConfig(**bad), progress=False)


def test_cache_built_with_another_validation_share_is_refused(tmp_path):
    cache = tmp_path / "c.npz"
    np.savez(cache, version=np.array(mdata.CACHE_VERSION), seed=np.array(0), val_fraction=np.array(0.1))
    with pytest.raises(OccluFaceError, match="val_fraction"):
        mdata.build_dataset(tmp_path / "nodata", cache, val_fraction=0.2)


def test_paper_figures_follow_from_its_confusion_matrix():
    from occluface.bench.maskcheck import binary_metrics

    y = np.array([0] * 799 + [1] * 235)
    p = np.array([0] * 796 + [1] * 3 + [0] * 11 + [1] * 224)
    u = binary_metrics(y, p, "unmasked")
    assert round(u["precision"], 4) == 0.9864 and round(u["recall"], 4) == 0.9962 and round(u["f1"], 4) == 0.9913
    m = binary_metrics(y, p)
    assert (m["tp"], m["fn"], m["fp"]) == (224, 11, 3) and round(m["accuracy"], 4) == round(u["accuracy"], 4) == 0.9865


def test_bad_weight_file_is_a_clear_error(tmp_path):
    from occluface.maskcheck.model import load_weights

    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="w.pt"):
        load_weights(bad)


# ----------------------------------------------------------------------------- shipped weights


def test_shipped_weights_are_small_and_classify_bundled_faces(model, detector):
    from occluface.data.images import load_rgb
    from occluface.maskcheck import predict_mask_state
    from occluface.maskcheck.model import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.stat().st_size < 8_000_000
    # the masked-logit bias it applies was chosen on validation, and the file says so
    chosen = model.meta["mask_bias"]
    assert chosen["bias"] == model.mask_bias and chosen["val_faces"] > 100
    assert chosen["best_range"][0] <= model.mask_bias <= chosen["best_range"][1]
    labels = []
    for cls in ("with_mask", "without_mask"):
        for p in sorted((DATA / "mask_cls" / cls).glob("*.jpg"))[:3]:
            img = load_rgb(p)
            face = mdata.main_face(detector, img)
            [state] = predict_mask_state(img, [face], weights=model)
            assert set(state["probs"]) == {"unmasked", "masked"} and abs(sum(state["probs"].values()) - 1) < 1e-4
            labels.append((cls, state["label"]))
    assert sum((c == "with_mask") == (lab == "masked") for c, lab in labels) >= 5


def test_gradcam_heat_lies_on_the_mask_of_synthetic_masked_faces(model, detector):
    from occluface.data.images import load_rgb
    from occluface.data.occlusion import apply, mask_region
    from occluface.data.occlusion.faces import _fit68, box_from_five
    from occluface.faces.align import align_face, similarity_matrix
    from occluface.maskcheck.cam import gradcam, heat_fraction

    fractions = []
    for i in range(4):
        img = load_rgb(_lfw_photo(i))
        face = mdata.main_face(detector, img)
        lm = _fit68(img, box_from_five(face.landmarks))
        masked = apply(img, "surgical", seed=i, landmarks=lm)
        crop = align_face(masked, face.landmarks, model.input_size)
        region_img = mask_region(img.shape, lm).astype(np.uint8)
        matrix = similarity_matrix(face.landmarks, model.input_size)
        region = cv2.warpAffine(region_img, matrix, (model.input_size,) * 2, flags=cv2.INTER_NEAREST) > 0
        heat = gradcam(model, crop, target=model.class_names.index("masked"))
        fractions.append(heat_fraction(heat, region))
        # the mask covers well under half the crop, so a heat share above half means the model looks at it
        assert region.mean() < 0.45
    assert np.mean(fractions) > 0.5, fractions


def test_gradcam_png_and_dict_faces(model, detector):
    from occluface.data.images import load_rgb
    from occluface.maskcheck import gradcam_png, predict_mask_state

    img = load_rgb(DATA / "real_masked" / "0000.jpg")
    face = mdata.main_face(detector, img)
    as_dict = {"box": face.box.tolist(), "landmarks": face.landmarks.tolist()}
    assert predict_mask_state(img, [as_dict], weights=model)[0]["label"] == predict_mask_state(img, [face], weights=model)[0]["label"]
    png = gradcam_png(img, as_dict, weights=model)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    whole = gradcam_png(img, face, weights=model, whole_image=True)
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(whole)).size == (img.shape[1], img.shape[0])
    with pytest.raises(OccluFaceError):
        gradcam_png(img, {"box": [0, 0, 1, 1]}, weights=model)
    with pytest.raises(OccluFaceError):
        gradcam_png(img, face, weights=model, target="sunglasses")


def test_mask_check_cli_on_bundled_sample(tmp_path):
    out = tmp_path / "cam.png"
    res = runner.invoke(app, ["mask-check", str(DATA / "real_masked" / "0000.jpg"), "--cam", str(out), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["faces"] and payload["faces"][0]["label"] == "masked"
    assert out.stat().st_size > 0
    res = runner.invoke(app, ["mask-check", str(tmp_path / "missing.jpg")])
    assert res.exit_code == 2 and "no such image" in " ".join(res.output.split())


def test_train_and_bench_commands_report_missing_data_clearly(tmp_path):
    for cmd in (["train-maskcls", "--out", str(tmp_path / "run")], ["bench", "maskcls", "--out", str(tmp_path / "rep")]):
        res = runner.invoke(app, [*cmd, "--data", str(tmp_path / "nodata"), "--cache", str(tmp_path / "c.npz")])
        assert res.exit_code == 2, res.output
        assert "data folder not found" in " ".join(res.output.split())


# ----------------------------------------------------------------------------- masked-logit bias (validation-chosen)


def test_mask_bias_is_chosen_in_the_middle_of_the_best_range():
    from occluface.maskcheck.calibrate import choose_mask_bias, decide

    # unmasked faces are sure (P(masked) <= 0.05); two real masks sit just below 0.5: argmax misses them
    p_masked = np.array([0.01, 0.02, 0.05, 0.30, 0.40, 0.90, 0.97, 0.99])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    proba = np.stack([1 - p_masked, p_masked], 1)
    chosen = choose_mask_bias(proba, y)
    assert chosen["val_errors_before"] == {"false_masked": 0, "false_unmasked": 2, "wrong": 2}
    assert chosen["val_errors_after"]["wrong"] == 0 and chosen["val_macro_f1_after"] == 1.0
    # zero errors from logit(0.3) - ... : between log(0.05/0.95) and log(0.30/0.70) on the odds scale
    lo, hi = -np.log(0.30 / 0.70), -np.log(0.05 / 0.95)
    assert lo <= chosen["bias"] <= hi and abs(chosen["bias"] - (lo + hi) / 2) < 0.06
    assert (decide(np.log(proba), chosen["bias"]) == y).all()
    # a classifier that is already right with equal margins keeps a bias near zero
    sym = np.array([0.1, 0.2, 0.8, 0.9])
    assert abs(choose_mask_bias(np.stack([1 - sym, sym], 1), np.array([0, 0, 1, 1]))["bias"]) < 0.06
    with pytest.raises(OccluFaceError):
        choose_mask_bias(np.zeros((0, 2)), np.zeros(0, int))


def test_mask_bias_moves_probabilities_survives_the_weight_file_and_not_gradcam(tmp_path):
    from occluface.maskcheck.cam import gradcam
    from occluface.maskcheck.model import MaskNet, load_weights, save_weights
    from occluface.train.maskcheck import predict_proba

    torch.manual_seed(0)
    net = MaskNet(3, width=8, input_size=48).eval()
    crops = np.random.default_rng(0).integers(0, 255, (4, 48, 48, 3), dtype=np.uint8)
    before = predict_proba(net, crops)
    heat_before = gradcam(net, crops[0], target=1)
    net.mask_bias = 1.5
    after = predict_proba(net, crops)
    # every masked class's odds against "none" grow by e^1.5; the masked classes keep their ratio
    np.testing.assert_allclose(after[:, 1] / after[:, 0], np.exp(1.5) * before[:, 1] / before[:, 0], rtol=1e-4)
    np.testing.assert_allclose(after[:, 1] / after[:, 2], before[:, 1] / before[:, 2], rtol=1e-4)
    np.testing.assert_allclose(gradcam(net, crops[0], target=1), heat_before, atol=1e-5)
    save_weights(tmp_path / "w.pt", net, {"x": 1})
    again = load_weights(tmp_path / "w.pt")
    assert again.mask_bias == 1.5
    np.testing.assert_allclose(predict_proba(again, crops), after, atol=0.02)
    from occluface.models.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(tmp_path / "w.pt")
    payload["model"]["mask_bias"] = float("nan")
    save_checkpoint(tmp_path / "bad.pt", payload)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_weights(tmp_path / "bad.pt")


def test_calibrate_weights_uses_validation_only_and_rewrites_the_file(tmp_path):
    from occluface.maskcheck.calibrate import calibrate_weights
    from occluface.maskcheck.model import MaskNet, load_weights, save_weights

    torch.manual_seed(0)
    save_weights(tmp_path / "w.pt", MaskNet(3, width=8, input_size=48), {"epoch": 3})
    data = _fake_data()
    chosen = calibrate_weights(tmp_path / "w.pt", data)
    model = load_weights(tmp_path / "w.pt")
    assert model.mask_bias == chosen["bias"] and model.meta["epoch"] == 3 and model.meta["mask_bias"]["bias"] == chosen["bias"]
    assert chosen["val_faces"] == (data["split"] == "val").sum()
    # the test split does not take part: scrambling its labels changes nothing
    scrambled = dict(data, label=np.where(data["split"] == "test", 0, data["label"]))
    assert calibrate_weights(tmp_path / "w.pt", scrambled, tmp_path / "w2.pt")["bias"] == chosen["bias"]


def test_extra_lfw_training_people_are_never_the_never_seen_ones(tmp_path):
    for i in range(30):
        (tmp_path / "lfw_dev" / f"person_{i:02d}").mkdir(parents=True)
        for k in range(2):
            (tmp_path / "lfw_dev" / f"person_{i:02d}" / f"person_{i:02d}_{k}.jpg").write_bytes(b"x")
    ood = mdata.list_lfw(tmp_path, 10, seed=0)
    extra = mdata.list_lfw(tmp_path, 10, seed=0, train=15)
    assert len(ood) == 10 and len(extra) == 15
    assert not {r.group.split(":")[1] for r in ood} & {r.group.split(":")[1] for r in extra}
    assert {r.source for r in extra} == {mdata.LFW_TRAIN} and all(r.label == mdata.NONE for r in extra)
    assert all(r.path.name.endswith("_0.jpg") for r in extra)
    # asking for more people than exist takes what is left, and none of the never-seen ones
    assert len(mdata.list_lfw(tmp_path, 10, seed=0, train=100)) == 20


def test_calibrate_command_refuses_a_bad_weight_file_before_touching_data(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"junk")
    res = runner.invoke(app, ["calibrate-maskcls", "--weights", str(bad), "--data", str(tmp_path / "nodata"),
                              "--cache", str(tmp_path / "c.npz")])
    assert res.exit_code == 2 and "w.pt" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "c.npz").exists() and bad.read_bytes() == b"junk"


# ----------------------------------------------------------------------------- label audit


def test_shipped_label_audit_is_well_formed_and_malformed_ones_are_refused(tmp_path):
    from occluface.errors import DatasetError
    from occluface.maskcheck.audit import AUDIT_FILE, load_audit

    audit = load_audit()
    assert audit and all(label in (-1, 0, 1, 2) and reason for label, reason in audit.values())
    assert all(p.startswith(("mask_cls/", "rwmfd_masked/")) for p in audit)  # paths under shared/data, no photos
    bad = tmp_path / "audit.tsv"
    bad.write_text(AUDIT_FILE.read_text().splitlines()[0] + "\nrwmfd_masked/x.jpg\tcorrect\tmaybe\ttest\tunsure\n")
    with pytest.raises(DatasetError, match=r"audit\.tsv:2"):
        load_audit(bad)
    twice = tmp_path / "twice.tsv"
    row = "rwmfd_masked/x.jpg\tcorrect\tnone\ttest\tbare face\n"
    twice.write_text(AUDIT_FILE.read_text().splitlines()[0] + "\n" + row + row)
    with pytest.raises(DatasetError, match="listed twice"):
        load_audit(twice)


def test_label_audit_relabels_drops_follows_copies_and_keeps_the_folder_labels():
    from occluface.maskcheck.audit import EXCLUDED, apply_audit, original_labels

    data = _fake_data(16)
    data["path"] = np.array([f"rwmfd_masked/{i:04d}.jpg" for i in range(16)])
    data["group"][5] = data["group"][4]  # 5 is a near-copy of 4
    data["synthetic"][7] = True
    data["group"][7] = data["group"][1]  # a synthetic face made from photo 1 keeps its own label
    audit = {"rwmfd_masked/0004.jpg": (0, "bare face"), "rwmfd_masked/0001.jpg": (2, "nose out"),
             "rwmfd_masked/0010.jpg": (-1, "no face"), "rwmfd_masked/9999.jpg": (0, "not in this build")}
    out = apply_audit(data, audit)
    assert out["label"][4] == 0 and out["label"][5] == 0 and out["label"][1] == 2
    assert out["label"][7] == data["label"][7]
    assert out["split"][10] == EXCLUDED and int(out["audited_faces"]) == 4
    untouched = [i for i in range(16) if i not in (1, 4, 5, 10)]
    np.testing.assert_array_equal(out["label"][untouched], data["label"][untouched])
    back = original_labels(out)
    np.testing.assert_array_equal(back["label"], data["label"])
    np.testing.assert_array_equal(back["split"], data["split"])
    assert data["split"][10] != EXCLUDED  # the input is not modified


def test_evaluation_on_audited_labels_also_reports_the_folder_labels(tmp_path):
    from occluface.maskcheck.audit import apply_audit
    from occluface.bench.maskcheck import evaluate
    from occluface.maskcheck.model import MaskNet

    data = _fake_data(48)
    data["path"] = np.array([f"p{i}" for i in range(48)])
    test = np.where(data["split"] == "test")[0]
    audited = apply_audit(data, {f"p{test[0]}": (-1, "no face")})
    torch.manual_seed(0)
    model = MaskNet(classes=2, width=8, input_size=48)
    res = evaluate(model, audited, tmp_path)
    folder = res["folder_labels"]
    n_two = lambda d: int(((d["split"] == "test") & (d["label"] != 2)).sum())  # noqa: E731
    assert np.array(res["all"]["confusion_matrix"]).sum() == n_two(audited)
    assert folder["all"]["n_samples"] == n_two(data) and folder["audited_faces"] == 1
    assert "before the label audit" in (tmp_path / "report.md").read_text()


def test_yale_training_people_are_never_the_held_out_or_routing_check_ones(tmp_path):
    from occluface.data.identities import list_identities
    from occluface.data.identities import heldout_identities

    for i in range(30):
        d = tmp_path / "yaleb" / f"yaleB{i:02d}"
        d.mkdir(parents=True)
        for k in range(5):
            cv2.imwrite(str(d / f"yaleB{i:02d}_P00A+{k:03d}E+00.png"), np.full((8, 8), 100, np.uint8))
    train, check = mdata.yaleb_training_people(tmp_path)
    ids = {n: f for n, f in list_identities(tmp_path / "yaleb").items() if len(f) >= 2}
    held = set(heldout_identities(ids, 10, 0, salt="yaleb"))  # the ones bench accuracy scores
    assert len(check) == mdata.YALEB_ROUTING_CHECK and len(train) == 30 - 10 - len(check)
    assert not (set(train) & held) and not (set(check) & held) and not (set(train) & set(check))
    recs = mdata.list_yaleb_train(tmp_path, 3, seed=0)
    assert len(recs) == 3 * len(train) and {r.source for r in recs} == {mdata.YALEB_TRAIN}
    assert {r.path.parent.name for r in recs} == set(train) and all(r.label == mdata.NONE for r in recs)
    assert recs == mdata.list_yaleb_train(tmp_path, 3, seed=0) and mdata.list_yaleb_train(tmp_path, 0, seed=0) == []


def test_maskcls_checks_command_reports_gradcam_and_skips_yale_without_check_people(tmp_path):
    from occluface.maskcheck.model import DEFAULT_WEIGHTS

    res = runner.invoke(app, ["bench", "maskcls-checks", "--weights", str(DEFAULT_WEIGHTS), "--data", str(DATA),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert [r["weights"] for r in rows] == ["maskcls_resnet18.pt"] and "harsh_light" not in rows[0]
    assert rows[0]["gradcam"]["faces"] == 30 and rows[0]["gradcam"]["share_on_mask"] > 0.5
    assert "| `maskcls_resnet18.pt` |" in (tmp_path / "o" / "report.md").read_text()
