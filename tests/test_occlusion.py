"""Occlusion synthesis: determinism, geometry of the masks, each kind's effect, transform and CLI."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occluface.data.images import load_rgb
from occluface.data.occlusion import KINDS, Occlude, apply, apply_with_info, find_landmarks, mask_region
from occluface.errors import OccluFaceError

DATA = Path(__file__).parents[1] / "data"
YALE = DATA / "yaleb" / "yaleB01" / "yaleB01_P00A+000E+00.png"
LFW = DATA / "lfw" / "Adam_Sandler" / "Adam_Sandler_0001.jpg"
NOSE_MOUTH = list(range(30, 36)) + list(range(48, 68))
EYES = list(range(36, 48))


@pytest.fixture(scope="module")
def faces():
    """(image, 68 landmarks) for a grey Yale B tight crop and a colour LFW photo."""
    out = []
    for path in (YALE, LFW):
        image = load_rgb(path)
        out.append((image, find_landmarks(image)[0]))
    return out


def _at(image: np.ndarray, pts: np.ndarray) -> np.ndarray:
    xy = np.round(pts).astype(int)
    return image[xy[:, 1], xy[:, 0]].astype(int)


def test_landmarks_land_on_the_face(faces):
    for image, lm in faces:
        h, w = image.shape[:2]
        assert lm.shape == (68, 2)
        assert (lm[:, 0] > -0.05 * w).all() and (lm[:, 0] < 1.05 * w).all()
        eyes_y = lm[EYES, 1].mean()
        assert eyes_y < lm[30, 1] < lm[51, 1] < lm[8, 1]  # eyes above nose tip above mouth above chin
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_keeps_shape_and_dtype_and_changes_the_image(faces, kind):
    image, lm = faces[1]
    out = apply(image, kind, seed=3, landmarks=lm)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 0.5


@pytest.mark.parametrize("kind", ["mixed", "mask", "surgical", "cloth", "dust", "lowlight", "partial"])
def test_same_seed_same_bytes_other_seed_differs(faces, kind):
    image, lm = faces[1]
    a = apply(image, kind, seed=11, landmarks=lm)
    b = apply(image, kind, seed=11, landmarks=lm)
    c = apply(image, kind, seed=12, landmarks=lm)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("kind,light,dark", [
    ("surgical", {"color": "white"}, {"color": "black"}),
    ("kn95", {"color": "white"}, {"color": "black"}),
    ("cloth", {"color": "beige", "pattern": "plain"}, {"color": "black", "pattern": "plain"}),
    ("texture", {"texture": "white"}, {"texture": "black"}),
])
def test_mask_covers_nose_and_mouth_never_the_eyes(faces, kind, light, dark, tmp_path):
    """A light and a dark mask differ wherever the mask lies; both leave the eyes' pixels untouched."""
    if kind == "texture":  # plain RGBA pictures: a body with rounded corners and thin ear loops
        for name, value in (("white", 240), ("black", 15)):
            rgba = Image.new("RGBA", (240, 140), (0, 0, 0, 0))
            from PIL import ImageDraw

            draw = ImageDraw.Draw(rgba)
            draw.rounded_rectangle((30, 10, 210, 130), radius=30, fill=(value, value, value, 255))
            draw.arc((0, 20, 60, 120), 90, 270, fill=(200, 200, 200, 255), width=3)
            rgba.save(tmp_path / f"{name}.png")
        light, dark = ({"texture": str(tmp_path / f"{n}.png")} for n in ("white", "black"))
    for image, lm in faces:
        a = apply(image, kind, seed=0, landmarks=lm, **light)
        b = apply(image, kind, seed=0, landmarks=lm, **dark)
        contrast = np.abs(a.astype(int) - b).max(axis=2)
        covered = _at(contrast, lm[NOSE_MOUTH]) > 20
        assert covered.mean() >= 0.95, f"{kind}: only {covered.mean():.0%} of nose/mouth points covered"
        for out in (a, b):
            assert (_at(out, lm[EYES]) == _at(image, lm[EYES])).all(), f"{kind} touched the eyes"


def test_mask_region_is_nose_mouth_chin(faces):
    for image, lm in faces:
        region = mask_region(image.shape, lm)
        assert region.shape == image.shape[:2] and region.dtype == bool
        xy = np.round(lm).astype(int)
        assert region[xy[NOSE_MOUTH, 1], xy[NOSE_MOUTH, 0]].all()
        assert not region[xy[EYES, 1], xy[EYES, 0]].any()
        assert region[int(lm[8, 1]) - 2, int(lm[8, 0])]  # just above the chin point
        assert 0.05 < region.mean() < 0.6
        out = apply(image, "surgical", seed=1, landmarks=lm)
        changed = np.abs(out.astype(int) - image).max(axis=2) > 6
        assert (changed & region).sum() / region.sum() > 0.9  # the drawn mask fills the region


def test_tight_crop_fallback_when_no_detector_finds_the_face(faces, monkeypatch):
    """Yale B crops defeat some detectors: the crop itself is then the face, and the fit stays close."""
    from occluface.data.occlusion import faces as face_module

    image, lm = faces[0]
    monkeypatch.setattr(face_module, "_detect_boxes", lambda img: [])
    monkeypatch.setattr(face_module, "_CACHE", type(face_module._CACHE)())
    fallback = find_landmarks(image)[0]
    inter_ocular = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    assert np.linalg.norm(fallback - lm, axis=1).mean() < 0.1 * inter_ocular
    with pytest.raises(OccluFaceError, match="no face"):
        find_landmarks(np.random.default_rng(0).integers(0, 255, (60, 400, 3), dtype=np.uint8))  # not crop-shaped


def test_grey_input_stays_grey_and_2d_input_works(faces):
    image, lm = faces[0]
    out = apply(image, "cloth", seed=0, landmarks=lm, color="red")
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    flat = apply(image[..., 0], "lowlight", seed=0)
    assert flat.shape == image.shape[:2]


def test_dust_intensity_zero_is_identity_and_more_dust_is_darker(faces):
    for image, lm in faces:
        assert apply(image, "dust", seed=5, landmarks=lm, intensity=0.0).tobytes() == image.tobytes()
        region = (slice(int(lm[19, 1]), int(lm[8, 1])), slice(int(lm[1, 0]), int(lm[15, 0])))
        means = [apply(image, "dust", seed=5, landmarks=lm, intensity=v)[region].mean() for v in (0.2, 0.5, 0.9)]
        assert image[region].mean() > means[0] > means[1] > means[2]


def test_lowlight_darkens_and_each_parameter_acts(faces):
    image, _ = faces[1]
    base = dict(gamma=2.0, gain=0.6, noise=0.0, gradient=0.0, glare=0.0, warmth=0.0, angle=0.0)
    dark = apply(image, "lowlight", seed=0, **base)
    assert dark.mean() < 0.7 * image.mean()
    assert apply(image, "lowlight", seed=0, **{**base, "gamma": 3.0}).mean() < dark.mean()
    noisy = apply(image, "lowlight", seed=0, **{**base, "noise": 0.05})
    assert np.abs(noisy.astype(int) - dark).mean() > 2
    lit_left = apply(image, "lowlight", seed=0, **{**base, "gradient": 0.9, "angle": 180.0})
    w = image.shape[1]
    assert lit_left[:, : w // 4].mean() > lit_left[:, -w // 4 :].mean()
    glare = apply(image, "lowlight", seed=0, **{**base, "glare": 0.8, "glare_x": 0.5, "glare_y": 0.5})
    assert glare[110:140, 110:140].mean() > dark[110:140, 110:140].mean() + 40


def test_no_face_raises_clearly_except_lowlight_and_patch():
    blank = np.full((120, 100, 3), 128, np.uint8)
    with pytest.raises(OccluFaceError, match="no face"):
        apply(blank, "surgical")
    with pytest.raises(OccluFaceError, match="no face"):
        apply(blank, "dust")
    assert apply(blank, "lowlight", seed=1).mean() < 128
    patched = apply(blank, "partial", seed=1, shape="patch")
    assert (patched != blank).any(axis=2).mean() > 0.05


def test_partial_shapes(faces):
    image, lm = faces[1]
    brim = apply(image, "partial", seed=2, landmarks=lm, shape="brim", drop=0.5)
    diff = np.abs(brim.astype(int) - image).max(axis=2)
    assert diff[: int(lm[19, 1]) - 5, int(lm[27, 0])].mean() > 20  # forehead above the brows covered
    assert diff[int(lm[51, 1]):, :].mean() < 1  # mouth and below untouched
    hand = apply(image, "partial", seed=2, landmarks=lm, shape="hand", position="mouth")
    assert (np.abs(hand.astype(int) - image).max(axis=2) > 10).mean() > 0.03


def test_bad_kind_and_parameter_are_clear_errors(faces):
    image, lm = faces[1]
    with pytest.raises(OccluFaceError, match="unknown occlusion kind"):
        apply(image, "balaclava")
    scarf = apply(image, "scarf", seed=1, landmarks=lm, color="purple", pattern="stripes")  # a kind since the style family
    assert (np.abs(scarf.astype(int) - image).max(axis=2) > 10).mean() > 0.05
    with pytest.raises(OccluFaceError, match="intensty"):
        apply(image, "dust", landmarks=lm, intensty=0.5)
    with pytest.raises(OccluFaceError, match="intensity"):
        apply(image, "dust", landmarks=lm, intensity=2)
    _, info = apply_with_info(image, "mask", seed=4, landmarks=lm)
    assert info["kind"] in ("surgical", "kn95", "cloth", "texture")


def test_transform_in_torchvision_compose():
    import torch
    from torchvision import transforms

    pil = Image.open(LFW).convert("RGB")
    fixed = Occlude("surgical", seed=0)
    out = fixed(pil)
    assert isinstance(out, Image.Image) and out.size == pil.size and out.mode == "RGB"
    assert np.asarray(fixed(pil)).tobytes() == np.asarray(out).tobytes()  # int seed: same image, same mask
    assert Occlude("surgical", p=0.0)(pil) is pil
    arr = np.asarray(pil)
    assert isinstance(Occlude("lowlight", seed=1)(arr), np.ndarray)
    grey = Image.open(YALE)
    assert Occlude("dust", seed=0)(grey).mode == "L"
    pipe = transforms.Compose([Occlude("lowlight"), transforms.Resize(64), transforms.ToTensor()])
    torch.manual_seed(0)
    a = pipe(pil)
    torch.manual_seed(0)
    b = pipe(pil)
    torch.manual_seed(1)
    c = pipe(pil)
    assert a.shape == (3, 64, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)  # seed=None follows torch's RNG
    blank = Image.new("RGB", (80, 80), (90, 90, 90))
    keep = Occlude("surgical", seed=0)
    assert keep(blank) is blank and keep.skipped == 1
    with pytest.raises(OccluFaceError):
        Occlude("surgical", seed=0, on_no_face="raise")(blank)


@pytest.fixture
def tiny_dataset(tmp_path):
    src = tmp_path / "src"
    for person in ("yaleB01", "yaleB02"):
        (src / person).mkdir(parents=True)
        for f in sorted((DATA / "yaleb" / person).glob("*.png"))[:2]:
            shutil.copy(f, src / person / f.name)
    Image.new("L", (96, 96), 120).save(src / "yaleB02" / "blank.png")
    (src / "yaleB02" / "broken.jpg").write_bytes(b"not a jpeg")
    return src


def test_cli_synth_writes_layout_and_csv(tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    dst = tmp_path / "dst"
    result = CliRunner().invoke(app, ["synth", str(tiny_dataset), str(dst), "--kind", "surgical", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = {r["file"]: r for r in csv.DictReader(open(dst / "synth.csv", encoding="utf-8"))}
    assert len(rows) == 6
    assert rows["yaleB02/blank.png"]["status"] == "skipped" and "no face" in rows["yaleB02/blank.png"]["reason"]
    assert (dst / "yaleB02" / "blank.png").exists()  # skipped images are copied unchanged
    assert rows["yaleB02/broken.jpg"]["status"] == "error" and not (dst / "yaleB02" / "broken.jpg").exists()
    occluded = [f for f, r in rows.items() if r["status"] == "occluded"]
    assert len(occluded) == 4 and all(rows[f]["kind"] == "surgical" and '"color"' in rows[f]["params"] for f in occluded)
    for f in occluded:
        src_img, out_img = load_rgb(tiny_dataset / f), load_rgb(dst / f)
        assert src_img.shape == out_img.shape and (src_img != out_img).any()
    assert "skipped" in result.output and "blank.png" in result.output

    half = tmp_path / "half"
    result = CliRunner().invoke(app, ["synth", str(tiny_dataset), str(half), "--kind", "lowlight", "--fraction", "0.5"])
    assert result.exit_code == 0, result.output
    statuses = [r["status"] for r in csv.DictReader(open(half / "synth.csv", encoding="utf-8"))]
    assert statuses.count("copied") == 3 and statuses.count("occluded") + statuses.count("error") == 3

    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "nope"), str(tmp_path / "x"), "--kind", "dust"])
    assert bad.exit_code != 0 and "does not exist" in bad.output


def test_cli_preview_writes_grid_png(tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    out = tmp_path / "preview.png"
    result = CliRunner().invoke(app, ["synth", str(tiny_dataset), "--preview", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    grid = Image.open(out)
    assert grid.width == 160 * 11 and grid.height > 2 * 160  # 11 columns (textures bundled), 2 rows of faces
