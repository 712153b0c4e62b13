"""Training loop, checkpoints, resume, DDP and the `occluface train` command, on tiny generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from occluface.errors import CheckpointError, ImageError, OccluFaceError
from occluface.models import registry
from occluface.models.checkpoint import CHECKPOINT_KEYS, load_checkpoint, load_model, save_checkpoint
from occluface.models.config import TrainConfig
from occluface.train.trainer import train

REPO = Path(__file__).parents[1]

TINY_MODEL_SOURCE = '''
from torch import nn
from occluface.models import register

@register("test_tiny", default_input_size=32)
def test_tiny(embedding_size, input_size, dropout=0.0):
    """Two conv layers: enough to learn colour blobs in a second, fast enough for CI."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, embedding_size),
    )
'''


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions are slower with several threads on a busy machine; restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def tiny_model():
    """Register `test_tiny` for one test, then remove it so other tests see the real registry only."""
    registry.list_models()  # load the built-ins first so ours is not overwritten
    exec(compile(TINY_MODEL_SOURCE, "<test_tiny>", "exec"), {})
    yield "test_tiny"
    registry._REGISTRY.pop("test_tiny", None)


def make_faces(root: Path, identities: int = 4, per_identity: int = 10, seed: int = 0) -> Path:
    """Identities are distinct colour patterns plus noise (separable by a tiny CNN); some are greyscale."""
    rng = np.random.default_rng(seed)
    for c in range(identities):
        folder = root / f"person{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (6, 6, 3)).astype(np.float64)
        for i in range(per_identity):
            img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            pil = Image.fromarray(img).resize((36, 40), Image.NEAREST)
            if c == 0:
                pil = pil.convert("L")  # the loader must turn grey into RGB
            pil.save(folder / f"{i:02d}.png")
    return root


def tiny_config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        model="test_tiny",
        data=str(data),
        out=str(out),
        epochs=2,
        batch_size=8,
        lr=0.1,
        input_size=32,
        embedding_size=16,
        num_workers=0,
        eval_every=3,
        log_every=2,
        step_size=1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_lowers_loss_and_writes_every_output(tmp_path):
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "run"
    summary = train(tiny_config(data, out, epochs=6, step_size=4, log_every=4), progress=False)

    log = read_log(out)
    train_recs = [r for r in log if r["split"] == "train"]
    test_recs = [r for r in log if r["split"] == "test"]
    assert set(train_recs[0]) == {"step", "epoch", "split", "loss", "acc", "lr"}
    assert set(test_recs[0]) == {"step", "epoch", "split", "loss", "acc"}
    assert train_recs[-1]["loss"] < 0.7 * train_recs[0]["loss"], "training must lower the loss"
    assert test_recs[-1]["loss"] < test_recs[0]["loss"]
    assert summary["steps"] == 24 and summary["epochs_completed"] == 6  # 32 train images, batch 8
    test_steps = [r["step"] for r in test_recs]
    assert {3, 6, 9, 12}.issubset(test_steps) and {4, 8, 16, 24}.issubset(test_steps), (
        "every eval_every and each epoch end"
    )
    assert train_recs[-1]["lr"] == pytest.approx(0.01), "lr divided by 10 after step_size epochs"

    assert json.loads((out / "config.json").read_text())["model"] == "test_tiny"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["test_acc"] == summary["test_acc"] and summary["num_classes"] == 4
    assert summary["best_test_acc"] >= summary["test_acc"] and summary["test_acc"] >= 0.5

    ckpt = load_checkpoint(out / "last.pt")
    assert set(CHECKPOINT_KEYS) <= set(ckpt)  # every documented key is written
    assert ckpt["epoch"] == 6 and ckpt["classes"] == [f"person{i}" for i in range(4)]
    assert len(ckpt["split"]["train"]) == 32 and len(ckpt["split"]["test"]) == 8
    assert all(not Path(p).is_absolute() and p.startswith("person") for p in ckpt["split"]["test"])

    loaded = load_model(out / "best.pt")
    assert not loaded.backbone.training and loaded.config.model == "test_tiny" and loaded.classes == ckpt["classes"]
    x = torch.randn(2, 3, 32, 32)
    assert loaded.backbone(x).shape == (2, 16)
    assert loaded.head.predict_logits(loaded.backbone(x)).shape == (2, 4)


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    data = make_faces(tmp_path / "faces")
    kw = dict(loss="arcface", s=16.0, dropout=0.2, l1=1e-4, eval_every=0)
    full = train(tiny_config(data, tmp_path / "full", epochs=3, **kw), progress=False)
    train(tiny_config(data, tmp_path / "split", epochs=1, **kw), progress=False)
    resumed = train(tiny_config(data, tmp_path / "split", epochs=3, **kw), progress=False)
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == full["steps"] == 12
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for part in ("backbone", "head"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs after resume"
    assert read_log(tmp_path / "full") == read_log(tmp_path / "split")
    again = train(tiny_config(data, tmp_path / "split", epochs=3, **kw), progress=False)  # finished: no more steps
    assert again["steps"] == 12 and again["resumed_from_step"] == 12


def test_resume_refuses_a_checkpoint_from_other_settings(tmp_path):
    data = make_faces(tmp_path / "faces", identities=2, per_identity=5)
    out = tmp_path / "run"
    train(tiny_config(data, out, epochs=1), progress=False)
    with pytest.raises(CheckpointError, match=r"last\.pt: written by a run with different settings \(lr: 0.1 -> 0.5\)"):
        train(tiny_config(data, out, epochs=2, lr=0.5), progress=False)


def test_max_steps_and_identity_split(tmp_path):
    data = make_faces(tmp_path / "faces", identities=5, per_identity=4)
    out = tmp_path / "run"
    summary = train(
        tiny_config(data, out, split_by="identity", test_fraction=0.4, max_steps=2, epochs=5), progress=False
    )
    assert summary["steps"] == 2 and summary["stopped_by_max_steps"] and summary["num_classes"] == 3
    test_recs = [r for r in read_log(out) if r["split"] == "test"]
    assert test_recs and test_recs[-1]["loss"] is None and 0.0 <= test_recs[-1]["acc"] <= 1.0
    ckpt = load_checkpoint(out / "last.pt")
    assert {Path(p).parts[0] for p in ckpt["split"]["train"]}.isdisjoint(
        {Path(p).parts[0] for p in ckpt["split"]["test"]}
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_image_during_training_names_the_file(tmp_path, workers):
    data = make_faces(tmp_path / "faces", identities=2, per_identity=4)
    (data / "person1" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageError, match=r"zz_broken\.png: "):
        train(tiny_config(data, tmp_path / "run", epochs=1, test_fraction=0.0, num_workers=workers), progress=False)


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"backbone": {"w": torch.ones(3)}, "epoch": 1})
    real_save = torch.save

    def failing_save(obj, fh, *a, **k):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match=r"last\.pt: could not write checkpoint .*No space left"):
        save_checkpoint(path, {"backbone": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)
    kept = load_checkpoint(path)
    assert kept["epoch"] == 1 and torch.equal(kept["backbone"]["w"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"], "no temporary file left behind"


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", {"backbone": {"w": torch.randn(100)}})
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pt: truncated or not a checkpoint"):
        load_checkpoint(truncated)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pt"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: not an occluface checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"good\.pt: not an occluface training checkpoint"):
        load_model(good)


def test_config_round_trip_and_validation():
    cfg = TrainConfig(model="resnet18", input_size=(112, 96), milestones=[5, 8], loss="cosface", m=0.3)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict({**d, "future_option": 1}) == cfg
    with pytest.raises(OccluFaceError, match="future_option"):
        TrainConfig.from_dict({**d, "future_option": 1}, strict=True)
    defaults = TrainConfig()
    assert (defaults.lr, defaults.momentum, defaults.weight_decay, defaults.gamma) == (0.1, 0.9, 5e-4, 0.1)
    for bad, msg in (
        ({"lr": 0}, "lr"),
        ({"loss": "triplet"}, "loss"),
        ({"schedule": "poly"}, "schedule"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"epochs": 0}, "epochs"),
        ({"split_by": "x"}, "split_by"),
    ):
        with pytest.raises(OccluFaceError, match=msg):
            TrainConfig(**bad).validate()


def test_cli_train_prints_summary_and_fails_cleanly(tmp_path):
    from occluface.cli import app

    data = make_faces(tmp_path / "faces", identities=3, per_identity=4)
    out = tmp_path / "run"
    runner = CliRunner()
    args = [
        "train",
        "--model",
        "test_tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--input-size",
        "32",
        "--embedding-size",
        "8",
        "--workers",
        "0",
        "--max-steps",
        "2",
        "--loss",
        "cosface",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "last.pt" in result.output and "log.jsonl" in result.output
    assert load_checkpoint(out / "last.pt")["config"]["loss"] == "cosface"
    bad = runner.invoke(
        app, ["train", "--model", "test_tiny", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    )
    assert bad.exit_code == 2 and "does not exist" in bad.output
    bad_milestones = runner.invoke(app, args + ["--milestones", "3,x"])
    assert bad_milestones.exit_code == 2 and "--milestones" in bad_milestones.output
    bad_loss = runner.invoke(app, args[:-1] + ["triplet"])
    assert bad_loss.exit_code == 2 and "loss must be one of" in bad_loss.output


def test_ddp_two_processes_end_with_identical_weights(tmp_path):
    data = make_faces(tmp_path / "faces", identities=2, per_identity=8)
    script = tmp_path / "ddp_run.py"
    script.write_text(
        TINY_MODEL_SOURCE
        + textwrap.dedent(f"""
        import hashlib, json, sys
        from pathlib import Path
        from occluface.train import distributed
        from occluface.models.config import TrainConfig
        from occluface.train.trainer import Trainer

        info = distributed.setup()
        cfg = TrainConfig(model="test_tiny", data={str(data)!r}, out={str(tmp_path / "out")!r}, epochs=2, batch_size=3,
                          input_size=32, embedding_size=8, num_workers=0, eval_every=0, log_every=1, dropout=0.2)
        trainer = Trainer(cfg, progress=False, dist=info)
        summary = trainer.fit()
        h = hashlib.sha256()
        for name, t in sorted(trainer.net.state_dict().items()):
            h.update(name.encode()); h.update(t.detach().cpu().contiguous().numpy().tobytes())
        Path({str(tmp_path)!r}, f"rank{{info.rank}}.json").write_text(json.dumps(
            {{"hash": h.hexdigest(), "world": info.world_size, "steps": summary["steps"]}}))
        distributed.cleanup(info)
    """)
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4  # 12 train images / 2 ranks / batch 3, two epochs
    assert ranks[0]["hash"] == ranks[1]["hash"], "DDP ranks diverged"
    log = read_log(tmp_path / "out")
    assert [r["step"] for r in log if r["split"] == "train"] == [1, 2, 3, 4], "only rank 0 writes the log"
    assert load_checkpoint(tmp_path / "out" / "last.pt")["step"] == 4


@pytest.mark.parametrize("schedule,expected", [("milestones", [0.1, 0.1, 0.01]), ("cosine", [0.1, 0.075, 0.025])])
def test_learning_rate_schedules_per_epoch(tmp_path, schedule, expected):
    data = make_faces(tmp_path / "faces", identities=2, per_identity=5)
    kw = {"milestones": [2]} if schedule == "milestones" else {"schedule": "cosine"}
    train(tiny_config(data, tmp_path / "run", epochs=3, log_every=1, eval_every=0, **kw), progress=False)
    lrs = {r["epoch"]: r["lr"] for r in read_log(tmp_path / "run") if r["split"] == "train"}
    assert [lrs[e] for e in (1, 2, 3)] == pytest.approx(expected)


def test_run_log_resumed_drops_records_past_the_checkpoint_and_fresh_starts_empty(tmp_path):
    """Every training loop's log.jsonl: a resumed run never logs a step twice; a fresh run starts a new log."""
    import json as _json

    from occluface.train.runs import JsonLog

    path = tmp_path / "log.jsonl"
    log = JsonLog(path, key="iter")
    for i in (10, 20, 30):
        log.write({"iter": i})
    JsonLog(path, resume_step=20, key="iter").write({"iter": 30, "again": True})
    assert [_json.loads(line) for line in path.read_text().splitlines()] == [{"iter": 10}, {"iter": 20}, {"iter": 30, "again": True}]
    JsonLog(path, key="iter")
    assert path.read_text() == ""
    JsonLog(tmp_path / "rank1.jsonl", enabled=False).write({"step": 1})
    assert not (tmp_path / "rank1.jsonl").exists()
