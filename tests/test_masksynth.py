"""Learned mask synthesis (issue 7): spatial transformer, generator, critic, losses, training, synth-eval, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occluface.cli import app
from occluface.data.masksynth.critic import Critic
from occluface.data.masksynth.generator import WarpGenerator
from occluface.data.masksynth.losses import LOSSES, critic_loss, div_penalty
from occluface.data.masksynth.stn import compose, composite, homography, warp
from occluface.data.masksynth.generator import load_generator
from occluface.train.masksynth import MaskSynthConfig, train
from occluface.errors import CheckpointError

DATA = Path(__file__).parents[1] / "data"
runner = CliRunner()


def _smooth_rgba(b: int = 1, size: int = 64) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    alpha = ((xs - 0.5) ** 2 + (ys - 0.6) ** 2 < 0.08).float()
    rgba = torch.stack([xs, ys, 0.5 * (xs + ys), alpha])[None]
    return rgba.repeat(b, 1, 1, 1)


def test_identity_warp_and_alpha_composite():
    rgba = _smooth_rgba(2)
    out = warp(rgba, torch.zeros(2, 8))
    inside = rgba[:, 3] > 0.99
    assert torch.allclose(out[:, 3], rgba[:, 3], atol=1e-5)
    assert torch.allclose(out[:, :3][inside.unsqueeze(1).expand(-1, 3, -1, -1)], rgba[:, :3][inside.unsqueeze(1).expand(-1, 3, -1, -1)], atol=1e-4)
    face = torch.full((2, 3, 64, 64), 0.25)
    comp = composite(face, out)
    assert torch.allclose(comp[:, :, 0, 0], face[:, :, 0, 0])  # transparent corner: the face shows
    y, x = 38, 32  # centre of the opaque disc: the mask shows
    assert torch.allclose(comp[:, :, y, x], rgba[:, :3, y, x], atol=1e-4)


def test_shift_and_composition_match_warping_twice():
    rgba = _smooth_rgba(1)
    shift = torch.zeros(1, 8)
    shift[0, 2] = 0.25  # sample 0.25 to the right: the picture moves left by 1/8 of the width
    moved = warp(rgba, shift)
    assert moved[0, 3].sum() == pytest.approx(rgba[0, 3].sum().item(), rel=0.02)
    cols = lambda a: (a[0, 3].sum(0) * torch.arange(64)).sum() / a[0, 3].sum()  # noqa: E731
    assert cols(rgba) - cols(moved) == pytest.approx(8.0, abs=0.6)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    blob = torch.stack([xs, ys, xs, torch.exp(-((xs - 0.45) ** 2 + (ys - 0.55) ** 2) / 0.03)])[None]
    p = torch.tensor([[0.15, 0.1, 0.2, -0.05, -0.1, 0.1, 0.1, 0.0]])
    dp = torch.tensor([[0.0, 0.2, -0.15, 0.0, 0.1, 0.0, 0.0, 0.1]])
    twice = warp(warp(blob, p), dp)[:, 3, 8:-8, 8:-8]
    assert (twice - warp(blob, compose(p, dp))[:, 3, 8:-8, 8:-8]).abs().max() < 0.02  # refine = sample again
    assert (twice - warp(blob, compose(dp, p))[:, 3, 8:-8, 8:-8]).abs().max() > 0.1  # the order matters
    assert torch.allclose(homography(compose(torch.zeros(1, 8), p)), homography(p), atol=1e-6)


def test_generator_shape_and_starts_near_identity():
    gen = WarpGenerator(width=8, pyconv=True)
    x = torch.rand(3, 7, 144, 144)
    out = gen(x)
    assert out.shape == (3, 8)
    assert out.abs().max() < 0.05
    kernels = sorted(c.kernel_size[0] for c in gen.stages[0][0].levels)
    assert kernels == [3, 5, 7, 9]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gen.modules())
    plain = WarpGenerator(width=8, pyconv=False)
    assert isinstance(plain.stages[0][0], torch.nn.Conv2d)
    p, comps = gen.refine(torch.rand(2, 3, 144, 144), torch.rand(2, 4, 144, 144), steps=3)
    assert p.shape == (2, 8) and len(comps) == 3 and comps[-1].shape == (2, 3, 144, 144)


def test_critic_gives_5x5_score_map():
    for bn in (False, True):
        critic = Critic(width=4, batchnorm=bn)
        out = critic(torch.rand(2, 3, 144, 144))
        assert out.shape == (2, 1, 5, 5)
        last = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        assert last.kernel_size == (3, 3) and last.out_channels == 1
        assert not any(isinstance(m, torch.nn.Linear) for m in critic.modules())


def test_wgan_div_penalty_is_finite_and_positive():
    torch.manual_seed(0)
    critic = Critic(width=4)
    real, fake = torch.rand(3, 3, 144, 144), torch.rand(3, 3, 144, 144)
    gp = div_penalty(critic, real, fake, k=2, p=6, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(gp) and gp.item() > 0
    gp.backward()  # differentiable w.r.t. the critic
    assert any(prm.grad is not None and prm.grad.abs().sum() > 0 for prm in critic.parameters())
    loss, info = critic_loss("wgan-div", critic, real, fake)
    assert "gp" in info and np.isfinite(info["wdist"])


def _tiny_data(n: int = 6) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(0)
    data = {
        "unmasked_images": rng.integers(0, 256, (n, 144, 144, 3), dtype=np.uint8),
        "unmasked_split": np.array(["train"] * n),
        "masked_images": rng.integers(0, 256, (n, 144, 144, 3), dtype=np.uint8),
        "masked_split": np.array(["train"] * n),
    }
    pics = _smooth_rgba(2, 144).permute(0, 2, 3, 1).numpy().astype(np.float32)
    return data, pics


def _cfg(loss: str, iters: int = 1) -> MaskSynthConfig:
    return MaskSynthConfig(loss=loss, width=4, gen_size=48, critic_width=2, batch_size=2, iters=iters, n_critic=1,
                           log_every=1, ckpt_every=1000, threads=1, drawn_masks=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_one_training_step_changes_the_weights(loss, tmp_path):
    data, pics = _tiny_data()
    torch.manual_seed(0)
    before = WarpGenerator(4, True, 48).state_dict()
    summary = train(data, pics, tmp_path, _cfg(loss), progress=False)
    assert summary["iterations"] == 1
    gen = load_generator(tmp_path / "generator.pt")
    changed = [k for k, v in gen.state_dict().items() if not torch.allclose(v, before[k].float(), atol=1e-6)]
    assert changed, "the generator did not move"
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["config"]["loss"] == loss and ck["iteration"] == 1
    row = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert row["iter"] == 1 and np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"])
    if loss == "wgan":
        assert max(float(v.abs().max()) for v in ck["critic"].values()) <= 0.01 + 1e-7  # weights clipped


def test_checkpoint_resume_equals_one_straight_run(tmp_path):
    data, pics = _tiny_data()
    train(data, pics, tmp_path / "a", _cfg("wgan-div", 1), progress=False)
    s = train(data, pics, tmp_path / "a", _cfg("wgan-div", 2), progress=False)
    assert s["resumed_from"] == 1 and s["iterations"] == 2
    train(data, pics, tmp_path / "b", _cfg("wgan-div", 2), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["backbone"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "a" / "log.jsonl").read_text().splitlines()) == 2
    with pytest.raises(CheckpointError, match="trained with loss"):
        train(data, pics, tmp_path / "a", _cfg("gan", 3), progress=False)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """A crop cache of the bundled sample data (a few faces per source) and a 1-step generator."""
    from occluface.data.masksynth.data import build_cache, mask_pictures

    root = tmp_path_factory.mktemp("masksynth")
    data = build_cache(DATA, root / "cache.npz", max_per_source=4, progress=False)
    pics, _ = mask_pictures(DATA / "mask_textures", drawn=1)
    cfg = _cfg("wgan-div")
    cfg.width, cfg.gen_size = 4, 64
    train(data, pics, root / "run", cfg, progress=False)
    return root, data


def test_sample_cache_has_faces_with_landmarks(sample_run):
    _, data = sample_run
    assert data["unmasked_images"].shape[1:] == (144, 144, 3) and len(data["masked_images"]) >= 2
    lm = data["unmasked_lm68"]
    assert np.isfinite(lm).all() and ((lm > 0) & (lm < 144)).mean() > 0.9  # landmarks lie in the crop


def test_synth_eval_on_sample_data_writes_report(sample_run, tmp_path):
    root, _ = sample_run
    out = tmp_path / "eval"
    res = runner.invoke(app, ["synth-eval", "--data", str(DATA), "--cache", str(root / "cache.npz"), "-c", str(root / "run"),
                              "--out", str(out), "--max-faces", "3", "--max-refs", "4", "--rows", "2"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    names = [m["method"] for m in metrics["methods"]]
    assert names == ["clean (no mask)", "landmark overlay", "identity warp (start)", "Py-WGAN-div"]
    overlay = metrics["methods"][1]
    assert 0.5 < overlay["iou"] <= 1.0 and 0 < overlay["ssim_nn"] <= 1
    assert metrics["methods"][0]["identity_cos"] == pytest.approx(1.0, abs=1e-5)
    assert (out / "grid.png").stat().st_size > 1000 and "placement IoU" in (out / "report.md").read_text()
    # the independent 5-point score is there for every masking method, on the faces YuNet found points on
    assert 1 <= metrics["n_points"] <= 3
    for m in metrics["methods"][1:]:
        assert m["cover_n"] == metrics["n_points"] and len(m["cover_pass"]) == m["cover_n"]
        assert 0.0 <= m["cover_all"] <= 1.0
    assert overlay["cover_all"] > 0.5  # a landmark-fitted surgical mask covers nose and mouth, not the eyes
    assert "5-point cover" in (out / "report.md").read_text()


def test_five_point_cover_reads_nose_mouth_and_eyes():
    from occluface.bench.masksynth import coverage, coverage_rates

    pts = np.array([[50, 55], [94, 55], [72, 80], [56, 100], [88, 100]], np.float32)  # eyes, nose, mouth corners
    alpha = np.zeros((144, 144), np.float32)
    alpha[70:] = 1.0  # a mask from just above the nose tip down: right
    assert coverage(alpha, pts) == {"nose": True, "mouth": True, "eyes_free": True, "all": True}
    low = np.zeros_like(alpha)
    low[90:] = 1.0  # below the nose
    assert coverage(low, pts)["nose"] is False and coverage(low, pts)["all"] is False
    assert coverage(np.ones_like(alpha), pts)["eyes_free"] is False  # over the eyes too
    assert coverage(alpha, np.full((5, 2), np.nan, np.float32)) is None
    rates = coverage_rates(np.stack([alpha, low, alpha]), np.stack([pts, pts, np.full((5, 2), np.nan)]),
                           np.array([False, True, False]))
    assert rates["cover_n"] == 2 and rates["cover_pass"] == "10" and rates["cover_all"] == 0.5
    assert rates["cover_frontal"] == 1.0 and rates["cover_turned"] == 0.0


def test_synth_learned_masks_a_photo_and_rejects_non_images(sample_run, tmp_path):
    from occluface.data.images import load_rgb

    root, _ = sample_run
    weights = root / "run" / "generator.pt"
    src = DATA / "samples" / "fr_obama.jpg"
    res = runner.invoke(app, ["synth", str(src), str(tmp_path / "o.png"), "--kind", "learned", "-p", f"weights={weights}",
                              "--textures", str(DATA / "mask_textures")])
    assert res.exit_code == 0, res.output
    a, b = load_rgb(src), load_rgb(tmp_path / "o.png")
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    res = runner.invoke(app, ["synth", str(bad), str(tmp_path / "x.png"), "--kind", "learned", "-p", f"weights={weights}"])
    assert res.exit_code == 2
    assert "notes.jpg" in res.output and "image" in res.output and "Traceback" not in res.output


def test_synth_learned_single_photo_into_a_folder(sample_run, tmp_path):
    """DST without an image suffix is a folder: the photo keeps its name there (was a PIL 'unknown extension')."""
    root, _ = sample_run
    weights = root / "run" / "generator.pt"
    src = DATA / "samples" / "fr_obama.jpg"
    res = runner.invoke(app, ["synth", str(src), str(tmp_path / "out"), "--kind", "learned", "-p", f"weights={weights}",
                              "--textures", str(DATA / "mask_textures")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "fr_obama.jpg").is_file()
