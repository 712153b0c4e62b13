"""dlib's ResNet baseline: the registered embedder, dlib chips, FaceEmbedder, the plain mask and `bench baseline`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occluface.cli import app
from occluface.data.images import load_rgb
from occluface.errors import OccluFaceError
from occluface.bench.baseline import run_baseline
from occluface.data.identities import light_subset, split_identity
from occluface.data.occlusion.plain import PLAIN_GREY, apply_plain_mask, plain_mask_polygon
from occluface.faces.chips import dlib_chip, dlib_chips, full_image_box
from occluface.faces.embed import FaceEmbedder
from occluface.faces.landmarks import LEFT_EYE, MOUTH, RIGHT_EYE, landmarks68
from occluface.models import create, list_models, model_info

DATA = Path(__file__).parents[1] / "data"
YALEB = DATA / "yaleb"


def _face(subject: str, light: str = "P00A+000E+00") -> np.ndarray:
    return load_rgb(YALEB / subject / f"{subject}_{light}.png")


@pytest.fixture(scope="module")
def model():
    return create("dlib_resnet")


@pytest.fixture(scope="module")
def chips() -> list[np.ndarray]:
    """Chips of three faces: yaleB01 twice (two lights) and yaleB02."""
    out = []
    for subject, light in [("yaleB01", "P00A+000E+00"), ("yaleB01", "P00A+010E+00"), ("yaleB02", "P00A+000E+00")]:
        img = _face(subject, light)
        out.append(dlib_chip(img, full_image_box(img)))
    return out


def _as_batch(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0


# ----------------------------------------------------------------------------- model


def test_dlib_resnet_is_registered_and_frozen(model):
    assert "dlib_resnet" in list_models()
    assert model_info("dlib_resnet")["default_input_size"] == (150, 150)
    assert model.embedding_size == 128 and model.input_size == (150, 150)
    assert model.trainable is False and list(model.parameters()) == []
    copy.deepcopy(model)  # trainers/teachers copy models: the dlib object must not be held by the module
    with pytest.raises(OccluFaceError, match="128-d"):
        create("dlib_resnet", embedding_size=256)
    with pytest.raises(OccluFaceError, match="150x150"):
        create("dlib_resnet", input_size=112)


def test_forward_gives_128d_unit_ish_vectors(model, chips):
    y = model(_as_batch(chips[:1]))
    assert y.shape == (1, 128) and y.dtype == torch.float32
    assert 0.5 < float(y.norm()) < 2.5  # dlib descriptors are roughly unit length, not exactly
    with pytest.raises(OccluFaceError, match="150x150"):
        model(torch.rand(1, 3, 112, 112))
    with pytest.raises(OccluFaceError, match="B x 3 x H x W"):
        model(torch.rand(3, 150, 150))


def test_batch_of_three_equals_three_singles(model, chips):
    batch = model(_as_batch(chips))
    singles = torch.cat([model(_as_batch([c])) for c in chips])
    assert batch.shape == (3, 128)
    assert torch.allclose(batch, singles, atol=1e-5)
    # the float [0, 1] path and the direct uint8 path see the same pixels
    assert np.allclose(model.embed_chips(chips), batch.numpy(), atol=1e-6)


def test_same_person_closer_than_different_people(chips):
    emb = FaceEmbedder("dlib_resnet").embed_chips(chips)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    same, different = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert same > different + 0.05


def test_same_person_closer_on_lfw_colour_photos():
    """In-the-wild colour photos (250x250 LFW, face roughly centred): the chip + embedding still separate people."""
    embedder = FaceEmbedder()
    box = (70, 60, 180, 190)
    people = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:2]
    a1, a2 = (load_rgb(f) for f in sorted(people[0].glob("*.jpg"))[:2])
    b1 = load_rgb(sorted(people[1].glob("*.jpg"))[0])
    e = embedder.embed_images([a1, a2, b1], [box] * 3)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])


# ----------------------------------------------------------------------------- chips and embedder


def test_chips_are_150_and_batch_matches_single():
    img = _face("yaleB03")
    box = full_image_box(img)
    chip = dlib_chip(img, box)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    many = dlib_chips(img, [box, (10, 10, 150, 170)])
    assert len(many) == 2 and all(c.shape == (150, 150, 3) for c in many)
    assert np.array_equal(many[0], chip)
    grey = img[:, :, 0]
    assert np.array_equal(dlib_chip(grey, box), chip)  # grey images are accepted as 3 equal channels
    with pytest.raises(OccluFaceError, match="empty"):
        dlib_chip(img, (50, 50, 40, 90))
    with pytest.raises(OccluFaceError, match="uint8"):
        dlib_chip(img.astype(np.float32), box)


def test_face_embedder_embed_image_matches_chip_path(chips):
    embedder = FaceEmbedder()
    img = _face("yaleB01")
    v = embedder.embed_image(img, full_image_box(img))
    assert v.shape == (128,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert np.allclose(v, embedder.embed_chips(chips[:1])[0], atol=1e-6)
    assert embedder.embed_chips([]).shape == (0, 128)
    with pytest.raises(OccluFaceError, match="150x150"):
        embedder.embed_chips([np.zeros((112, 112, 3), np.uint8)])


# ----------------------------------------------------------------------------- plain mask and protocol


def test_plain_mask_covers_nose_and_mouth_not_eyes():
    img = _face("yaleB04")
    lm = landmarks68(img, full_image_box(img))
    masked = apply_plain_mask(img, lm)
    poly = plain_mask_polygon(lm).reshape(-1, 1, 2)

    def inside(i: int) -> bool:
        return cv2.pointPolygonTest(poly, (float(lm[i, 0]), float(lm[i, 1])), False) > 0

    covered = list(range(MOUTH.start, MOUTH.stop)) + [30, 31, 33, 35]  # mouth, nose tip and nostrils
    eyes = list(range(LEFT_EYE.start, LEFT_EYE.stop)) + list(range(RIGHT_EYE.start, RIGHT_EYE.stop))
    assert all(inside(i) for i in covered)
    assert not any(inside(i) for i in eyes)
    for i in (51, 57, 62, 33):  # pixels there are the flat grey, eyes untouched
        x, y = np.round(lm[i]).astype(int)
        assert tuple(masked[y, x]) == PLAIN_GREY
    for i in eyes:
        x, y = np.round(lm[i]).astype(int)
        assert np.array_equal(masked[y, x], img[y, x])


def test_split_uses_frontal_light_gallery_and_seeded_probes():
    files = sorted((YALEB / "yaleB05").glob("*.png"))
    gallery, probes = split_identity("yaleB05", files, 4, seed=0)
    assert gallery.name == "yaleB05_P00A+000E+00.png"
    assert len(probes) == 4 and gallery not in probes and len(set(probes)) == 4
    assert split_identity("yaleB05", files, 4, seed=0)[1] == probes
    assert split_identity("yaleB05", files, 4, seed=1)[1] != probes
    assert split_identity("yaleB05", files, 99, seed=0)[1] == [f for f in files if f != gallery]
    # Yale B lighting subsets by light-to-camera angle: 0 deg, 10, ~22, ~38, ~63, >77 (e.g. light from above)
    names = ["P00A+000E+00", "P00A+010E+00", "P00A+020E-10", "P00A+035E+15", "P00A+060E+20", "P00A-000E+90"]
    assert [light_subset(f"yaleB05_{n}.png") for n in names] == ["1", "1", "2", "3", "4", "5"]
    assert light_subset("photo.png") == "?"


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(OccluFaceError, match="not a folder"):
        run_baseline(tmp_path / "missing", occlusions=["plain"], progress=False)
    with pytest.raises(OccluFaceError, match="unknown occlusion|not available"):
        run_baseline(YALEB, occlusions=["plain", "no-such-mask"], progress=False)


def test_bench_baseline_cli_writes_table(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["bench", "baseline", "--data", str(YALEB), "--identities", "10", "--probes-per-identity", "2",
         "--occlusion", "plain", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    table = (out / "baseline.md").read_text()
    assert "| condition | rank-1 |" in table
    assert "| clean |" in table and "| plain |" in table and "whole image" in table
    data = json.loads((out / "baseline.json").read_text())
    assert data["n_identities"] == 10 and data["n_probes"] == 20
    assert [r["condition"] for r in data["conditions"]] == ["clean", "plain"]
    assert sum(v["n_probes"] for v in data["conditions"][0]["rank1_by_light_subset"].values()) == 20
    assert "lighting subset" in table
    clean, plain = data["conditions"]
    assert clean["ratio_to_clean"] == 1.0 and 0.0 <= plain["rank1"] <= 1.0
    assert clean["rank1"] >= 0.8  # dlib recognises the bundled (mild-light) Yale B probes
    assert (out / "baseline.png").stat().st_size > 1000

    bad = CliRunner().invoke(app, ["bench", "baseline", "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert bad.exit_code == 2 and "not a folder" in " ".join(bad.output.split())


def test_face_embedder_runs_trainable_backbones_on_their_chips():
    """Trainable backbones get [-1, 1] pixels at their own input size and the same unit-length output."""
    torch.manual_seed(0)
    embedder = FaceEmbedder("iresnet18", input_size=32, embedding_size=16)
    assert not embedder.is_dlib and embedder.input_size == (32, 32)
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    emb = embedder.embed_chips(chips)
    assert emb.shape == (3, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    x = (torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        ref = torch.nn.functional.normalize(embedder.model(x), dim=1).numpy()
    assert np.allclose(emb, ref, atol=1e-5)
    with pytest.raises(OccluFaceError, match="32x32"):
        embedder.embed_chips([np.zeros((150, 150, 3), np.uint8)])
    img = _face("yaleB01")
    chip = embedder.chip(img, full_image_box(img))  # 5-point ArcFace alignment at the model's input size
    assert chip.shape == (32, 32, 3) and chip.dtype == np.uint8
    v = embedder.embed_image(img, full_image_box(img))
    assert v.shape == (16,) and np.allclose(v, embedder.embed_chips([chip])[0], atol=1e-6)


def test_identities_with_one_image_are_skipped_not_fatal(tmp_path):
    import shutil

    for subject, n in [("yaleB01", 2), ("yaleB02", 2), ("yaleB03", 1)]:
        (tmp_path / subject).mkdir()
        for f in sorted((YALEB / subject).glob("*.png"))[:n]:
            shutil.copy(f, tmp_path / subject / f.name)
    result = run_baseline(tmp_path, probes_per_identity=5, occlusions=[], progress=False)
    assert result["identities"] == ["yaleB01", "yaleB02"] and result["skipped_identities"] == ["yaleB03"]
    assert [r["condition"] for r in result["conditions"]] == ["clean"] and result["n_probes"] == 2


def test_models_declaring_dlib_chip_get_dlib_chips_and_unit_interval_pixels():
    """A torch model with `chip = "dlib"` (like the dlib port) is fed dlib chips scaled to [0, 1], nothing else."""

    class MeanColour(torch.nn.Module):
        embedding_size, input_size, chip = 3, (150, 150), "dlib"

        def forward(self, x):
            self.seen = x
            return x.mean(dim=(2, 3))

    embedder = FaceEmbedder(model=MeanColour())
    img = _face("yaleB06")
    v = embedder.embed_image(img, full_image_box(img))
    x = embedder.model.seen
    assert x.shape == (1, 3, 150, 150) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    expected = dlib_chip(img, full_image_box(img)).reshape(-1, 3).mean(axis=0) / 255.0
    assert np.allclose(v, expected / np.linalg.norm(expected), atol=1e-5)


def test_flip_averages_each_chip_with_its_mirror_image():
    """`flip=True`: the vector is the normalised mean of the chip's and the mirror's unit embeddings, so a face
    and its mirror image get the same vector; without it they do not (the net is not mirror-symmetric)."""
    torch.manual_seed(0)
    plain = FaceEmbedder("iresnet18", input_size=32, embedding_size=16)
    flipped = FaceEmbedder(model=plain.model, flip=True)
    rng = np.random.default_rng(1)
    chips = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    mirrors = [np.ascontiguousarray(c[:, ::-1]) for c in chips]
    a, b = plain.embed_chips(chips), plain.embed_chips(mirrors)
    assert not np.allclose(a, b, atol=1e-3)
    want = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
    got = flipped.embed_chips(chips)
    assert np.allclose(got, want, atol=1e-5) and np.allclose(flipped.embed_chips(mirrors), got, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
