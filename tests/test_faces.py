"""Face detection, padding of tight crops, ArcFace alignment, `occluface align` and `bench detect`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occluface.cli import app
from occluface.data.images import load_rgb
from occluface.errors import OccluFaceError
from occluface.faces import ARCFACE_TEMPLATE, Face, align_face, create_detector, detect_and_align, list_detectors
from occluface.faces.align import similarity_matrix, template
from occluface.faces.detect import pick_main_face

DATA = Path(__file__).parents[1] / "data"
OBAMA = DATA / "samples" / "fr_obama.jpg"
TWO = DATA / "samples" / "fr_two_people_obama_biden.jpg"
TIGHT = DATA / "yaleb" / "yaleB02" / "yaleB02_P00A+000E+00.png"  # 168x192 crop: found only with a border
DETECTORS = ["hog", "cnn", "centerface", "mtcnn", "auto", "yunet", "fast"]


@pytest.fixture(scope="module")
def obama() -> np.ndarray:
    return load_rgb(OBAMA)


@pytest.fixture(scope="module")
def two_people() -> np.ndarray:
    return load_rgb(TWO)


def _sane(face: Face, shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    lm = face.landmarks
    assert lm.shape == (5, 2) and np.isfinite(lm).all()
    # ArcFace order: image-left eye left of image-right eye, eyes above nose above mouth corners.
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
    # Landmarks lie inside the (slightly grown) box.
    margin = 0.15 * face.width
    assert (lm[:, 0] > x1 - margin).all() and (lm[:, 0] < x2 + margin).all()
    assert (lm[:, 1] > y1 - margin).all() and (lm[:, 1] < y2 + margin).all()


def test_registry_lists_every_detector_with_the_default_first():
    from occluface.faces.detect import DEFAULT_DETECTOR

    names = list(list_detectors())
    assert names[0] == DEFAULT_DETECTOR == "auto-roi"
    assert set(DETECTORS) <= set(names)
    assert create_detector("CenterFace") is create_detector("centerface")  # loaded once, shared


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_obama(name, obama):
    faces = create_detector(name).detect(obama)
    assert len(faces) == 1
    face = faces[0]
    _sane(face, obama.shape)
    cx, cy = face.center
    # The face is at about (495, 265) and 240 px wide in this 910x1137 photo.
    assert abs(cx - 495) < 40 and abs(cy - 265) < 60
    assert 170 < face.width < 320
    assert face.detector


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_two_people(name, two_people):
    faces = create_detector(name).detect(two_people)
    assert len(faces) == 2
    for f in faces:
        _sane(f, two_people.shape)
    xs = sorted(f.center[0] for f in faces)
    w = two_people.shape[1]
    assert xs[0] < w / 2 < xs[1]  # one face on each side
    assert faces[0].score >= faces[1].score  # sorted by score


def test_tight_crop_needs_the_border_and_maps_back():
    image = load_rgb(TIGHT)
    det = create_detector("centerface")
    faces = det.detect(image)
    assert len(faces) == 1
    _sane(faces[0], image.shape)
    assert faces[0].width > 0.6 * image.shape[1]  # the crop is the face

    from occluface.faces.centerface import CenterFaceDetector

    unpadded = CenterFaceDetector()
    unpadded.pad_below = 0
    assert unpadded.detect(image) == []  # same model without the border misses this crop

    work, pad, scale = det.prepare(image)
    assert pad > 0 and scale >= 1 and max(work.shape[:2]) >= det.min_side


def test_boxes_and_landmarks_are_in_original_coordinates(obama):
    det = create_detector("centerface")
    small = cv2.resize(obama, (455, 568), interpolation=cv2.INTER_AREA)  # half size: padded + rescaled
    canvas = np.full((700, 800, 3), 90, np.uint8)
    canvas[50:618, 200:655] = small
    a = det.detect(small)[0]
    b = det.detect(canvas)[0]
    assert np.abs((b.box - [200, 50, 200, 50]) - a.box).max() < 8
    assert np.abs((b.landmarks - [200, 50]) - a.landmarks).max() < 5
    full = det.detect(obama)[0]
    assert np.abs(full.landmarks / 2 - a.landmarks).max() < 6


def test_grey_and_float_images_are_accepted(obama):
    grey = cv2.cvtColor(obama, cv2.COLOR_RGB2GRAY)
    assert len(create_detector("centerface").detect(grey)) == 1
    assert len(create_detector("centerface").detect(obama.astype(np.float32) / 255)) == 1


def test_blank_image_has_no_face():
    assert create_detector("auto").detect(np.full((200, 200, 3), 128, np.uint8)) == []


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10,), np.uint8), np.zeros((50, 50, 2), np.uint8), "not an array"],  # tiny images: no face, see below
)
def test_bad_detector_input_raises_clear_error(bad):
    with pytest.raises(OccluFaceError):
        create_detector("centerface").detect(bad)


def test_unknown_detector_names_the_choices():
    with pytest.raises(OccluFaceError, match="centerface"):
        create_detector("haar")


def test_pick_main_face_prefers_large_central():
    small_center = Face([90, 90, 110, 110], 0.99, np.zeros((5, 2)))
    big_corner = Face([0, 0, 20, 20], 0.5, np.zeros((5, 2)))
    big_center = Face([60, 60, 140, 140], 0.6, np.zeros((5, 2)))
    assert pick_main_face([small_center, big_corner, big_center], (200, 200)) is big_center
    assert pick_main_face([], (200, 200)) is None


# ----------------------------------------------------------------------------- alignment


def test_alignment_matches_a_known_similarity():
    """Dots drawn at a rotated, scaled, shifted template come out on the template itself."""
    angle, scale, shift = np.deg2rad(25), 2.7, np.array([160.0, 90.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rot.T * scale + shift
    for size in (112, 224):
        for k, (x, y) in enumerate(template(size)):
            image = np.zeros((600, 600, 3), np.uint8)  # one dot per image: no colour mixing at the edges
            cv2.circle(image, (int(round(points[k, 0])), int(round(points[k, 1]))), 6, (255, 255, 255), -1)
            out = align_face(image, points, size=size)
            assert out.shape == (size, size, 3)
            ys, xs = np.nonzero(out[:, :, 0] > 128)
            assert len(xs) > 0
            assert abs(xs.mean() - x) < 1.0 and abs(ys.mean() - y) < 1.0


def test_detected_landmarks_land_on_the_template(obama):
    face, crop = detect_and_align(obama, "centerface")[0]
    assert crop.shape == (112, 112, 3)
    matrix = similarity_matrix(face.landmarks)
    moved = np.c_[face.landmarks, np.ones(5)] @ matrix.T
    assert np.abs(moved - ARCFACE_TEMPLATE).max() < 5
    # An independent detector sees the aligned face's landmarks on the template too.
    again = create_detector("mtcnn").detect(crop)
    assert len(again) == 1
    assert np.abs(again[0].landmarks - ARCFACE_TEMPLATE).max() < 6


@pytest.mark.parametrize(
    "landmarks",
    [np.zeros((4, 2)), np.full((5, 2), np.nan), np.ones((5, 2)), "x"],
)
def test_bad_landmarks_raise_clear_error(obama, landmarks):
    with pytest.raises(OccluFaceError):
        align_face(obama, landmarks)


def test_bad_size_raises(obama):
    with pytest.raises(OccluFaceError, match="size"):
        align_face(obama, ARCFACE_TEMPLATE, size=4)


# ----------------------------------------------------------------------------- `occluface align`


@pytest.fixture()
def tiny_yale(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for subject in ("yaleB01", "yaleB02"):
        files = sorted((DATA / "yaleb" / subject).glob("*.png"))[:2]
        (src / subject).mkdir(parents=True)
        for f in files:
            shutil.copy(f, src / subject / f.name)
    (src / "yaleB02" / "broken.jpg").write_bytes(b"not a jpeg at all")
    cv2.imwrite(str(src / "yaleB02" / "blank.png"), np.full((150, 150), 200, np.uint8))
    return src


def _skipped(dst: Path) -> dict[str, str]:
    with (dst / "skipped.csv").open(newline="") as fh:
        return {row["path"]: row["reason"] for row in csv.DictReader(fh)}


def test_align_cli_aligns_skips_and_resumes(tiny_yale: Path, tmp_path: Path):
    dst = tmp_path / "aligned"
    runner = CliRunner()
    result = runner.invoke(app, ["align", str(tiny_yale), str(dst), "--detector", "centerface", "--size", "96"])
    assert result.exit_code == 0, result.output
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert len(outputs) == 4 and all(o.startswith(("yaleB01/", "yaleB02/")) for o in outputs)
    for p in dst.rglob("*.png"):
        assert load_rgb(p).shape == (96, 96, 3)
    skipped = _skipped(dst)
    assert set(skipped) == {"yaleB02/broken.jpg", "yaleB02/blank.png"}
    assert skipped["yaleB02/blank.png"] == "no face"
    assert skipped["yaleB02/broken.jpg"].startswith("unreadable image:") and "not a recognised" in skipped["yaleB02/broken.jpg"]
    assert not list(dst.rglob("*.tmp"))

    # Resume: existing outputs are left alone, a deleted one is redone, skips are carried over.
    kept = dst / outputs[0]
    stamp = kept.stat().st_mtime_ns
    (dst / outputs[1]).unlink()
    result = runner.invoke(app, ["align", str(tiny_yale), str(dst), "--detector", "centerface", "--size", "96"])
    assert result.exit_code == 0, result.output
    assert "1 aligned, 3 already done, 2 skipped" in " ".join(result.output.split())
    assert kept.stat().st_mtime_ns == stamp
    assert (dst / outputs[1]).is_file()
    assert set(_skipped(dst)) == {"yaleB02/broken.jpg", "yaleB02/blank.png"}


def test_align_parallel_workers_match_serial(tiny_yale: Path, tmp_path: Path):
    from occluface.faces.align_folder import align_folder

    (tiny_yale / "yaleB02" / "broken.jpg").unlink()
    (tiny_yale / "yaleB02" / "blank.png").unlink()
    serial = align_folder(tiny_yale, tmp_path / "a", detector="centerface", workers=1, progress=False)
    parallel = align_folder(tiny_yale, tmp_path / "b", detector="centerface", workers=2, progress=False)
    assert serial.aligned == parallel.aligned == 4
    for p in (tmp_path / "a").rglob("*.png"):
        q = tmp_path / "b" / p.relative_to(tmp_path / "a")
        assert np.abs(load_rgb(p).astype(int) - load_rgb(q).astype(int)).max() <= 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["align", "{missing}", "{dst}"], "source folder not found"),
        (["align", "{src}", "{dst}", "--detector", "haar"], "unknown face detector"),
        (["align", "{empty}", "{dst}"], "no images found"),
    ],
)
def test_align_cli_bad_input(tiny_yale: Path, tmp_path: Path, args, message):
    (tmp_path / "empty" / "x").mkdir(parents=True)
    paths = {"missing": tmp_path / "nope", "dst": tmp_path / "out", "src": tiny_yale, "empty": tmp_path / "empty"}
    result = CliRunner().invoke(app, [a.format(**paths) for a in args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


# ----------------------------------------------------------------------------- benchmark


def test_plain_mask_covers_nose_and_mouth():
    from occluface.bench.detection import plain_mask
    from occluface.faces.landmarks import landmarks68

    image = load_rgb(TIGHT)
    lm = landmarks68(image, (0, 0, image.shape[1] - 1, image.shape[0] - 1))
    masked = plain_mask(image, lm)
    for idx in (30, 33, 51, 57, 62):  # nose tip, nostrils, lips
        x, y = lm[idx].round().astype(int)
        assert tuple(masked[y, x]) == (200, 210, 225)
    for idx in (37, 44):  # eyes stay visible
        x, y = lm[idx].round().astype(int)
        assert (masked[y, x] == image[y, x]).all()


def test_bench_detect_on_a_tiny_data_folder(tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(DATA / "yaleb" / "yaleB01", data / "yaleb" / "yaleB01")
    shutil.copytree(DATA / "yaleb" / "yaleB03", data / "yaleb" / "yaleB03")
    for cls in ("with_mask", "without_mask"):
        shutil.copytree(DATA / "mask_cls" / cls, data / "mask_cls" / cls)
    rw = data / "rwmfd_masked" / "0000"
    rw.mkdir(parents=True)
    real = sorted((DATA / "real_masked").glob("*.jpg"))[:3]
    for f in real:
        shutil.copy(f, rw / f.name)
    shutil.copy(real[0], rw / "copy.jpg")
    (data / "rwmfd_masked_duplicates.tsv").write_text(
        "group\tsha256\tfile\n1\tx\trwmfd_masked/0000/" + real[0].name + "\n1\tx\trwmfd_masked/0000/copy.jpg\n"
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["bench", "detect", "--data", str(data), "--limit", "3", "--detectors", "hog,centerface", "--out", str(out), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "detection.json").read_text())
    assert report["detectors"] == ["hog", "centerface"]
    assert report["counts"]["yaleb_clean"]["centerface"][1] == 3
    assert report["counts"]["yaleb_plain"]["hog"][1] == 3
    assert report["counts"]["rwmfd"]["centerface"][1] == 3  # the duplicate copy is left out
    assert report["counts"]["yaleb_clean"]["centerface"][0] == 3  # clean crops are found
    assert report["rates"]["yaleb_plain"]["hog"] == 0.0  # HOG loses a face under a plain mask
    assert (out / "detection.png").stat().st_size > 0
    md = (out / "detection.md").read_text()
    assert "| Yale B, clean | 3 |" in md


def test_bench_detect_rejects_missing_data(tmp_path: Path):
    result = CliRunner().invoke(app, ["bench", "detect", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "data folder not found" in " ".join(result.output.split())


def test_auto_finds_faces_in_near_black_photos():
    """A face lit only at a grazing angle (mean brightness ~10) is found after equalisation."""
    from occluface.faces.detect import DarkImageDetector, create_detector

    image = load_rgb(DATA / "yaleb" / "yaleB01" / "yaleB01_P00A+000E+00.png")
    dark = (image.astype(np.float32) * 0.05).astype(np.uint8)
    assert dark.mean() < 15
    faces = create_detector("auto").detect(dark)
    assert len(faces) == 1
    h, w = dark.shape[:2]
    cx, cy = faces[0].center
    assert 0.3 * w < cx < 0.7 * w and 0.3 * h < cy < 0.8 * h
    dark_only = DarkImageDetector("t", create_detector("centerface"))
    assert image.mean() > dark_only.max_mean and dark_only.detect(image) == []  # ordinary photos: untouched
    assert len(dark_only.detect(dark)) == 1


def test_images_too_small_for_a_face_have_none():
    """A 1x1 or 5x7 image is valid input with no face in it, not an error (found by hypothesis)."""
    for shape in ((1, 1, 3), (5, 7, 3), (7, 200, 3)):
        assert create_detector("auto").detect(np.full(shape, 90, np.uint8)) == []
        assert create_detector("centerface").detect(np.full(shape, 90, np.uint8)) == []


def test_centerface_opencv_and_onnxruntime_backends_find_the_same_faces(obama, two_people):
    import onnx

    from occluface.faces.centerface import INPUT, CenterFaceDetector, _model_bytes

    ort, ocv = CenterFaceDetector(), CenterFaceDetector(backend="opencv")
    assert ort.backend == "onnxruntime"
    # the weights are constants, not graph inputs (else ORT may not fold BatchNorm into the convolutions)
    graph = onnx.load_from_string(_model_bytes()).graph
    assert [i.name for i in graph.input] == [INPUT]
    used = {name for node in graph.node for name in node.input}
    assert all(init.name in used for init in graph.initializer)
    for image in (obama, two_people, load_rgb(TIGHT)):
        a, b = ocv.detect(image), ort.detect(image)
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            assert np.abs(fa.box - fb.box).max() < 0.05 and np.abs(fa.landmarks - fb.landmarks).max() < 0.05
            assert abs(fa.score - fb.score) < 1e-4
    with pytest.raises(OccluFaceError, match="backend"):
        CenterFaceDetector(backend="tensorrt")
