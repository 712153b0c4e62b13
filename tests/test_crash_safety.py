"""Crash safety under SIGKILL: enrolment batches and training runs killed at arbitrary points.

A gate PC loses power, or the OOM killer strikes: no cleanup code runs. The gallery must stay consistent
(every subject has all or none of the embeddings of its enrolment, ``PRAGMA integrity_check`` is ok, nothing
acknowledged is lost) and a killed training run must resume from its last checkpoint to exactly the weights
of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from occluface.gallery.connect import open_gallery
from occluface.models.checkpoint import load_checkpoint
from occluface.train.trainer import train

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from test_train import TINY_MODEL_SOURCE, make_faces, tiny_config  # noqa: E402  (reuse, do not duplicate)

PER_SUBJECT = 5
DIM = 64


def check_consistent(path: Path, expected_rows: dict[str, int] | None = None) -> dict[str, int]:
    """Integrity check plus all-or-nothing per subject; returns name -> embedding count."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = dict(db.execute(
            "SELECT s.name, COUNT(e.id) FROM subjects s LEFT JOIN embeddings e ON e.subject_id = s.id GROUP BY s.id"
        ).fetchall())
        orphans = db.execute("SELECT COUNT(*) FROM thumbnails t LEFT JOIN embeddings e ON e.id = t.embedding_id "
                             "WHERE e.id IS NULL").fetchone()[0]
        unthumbed = db.execute("SELECT COUNT(*) FROM embeddings e LEFT JOIN thumbnails t ON e.id = t.embedding_id "
                               "WHERE t.embedding_id IS NULL").fetchone()[0]
    finally:
        db.close()
    assert orphans == 0 and unthumbed == 0, "every embedding keeps its thumbnail and no thumbnail is orphaned"
    for name, n in counts.items():
        want = PER_SUBJECT if expected_rows is None else expected_rows[name]
        assert n == want, f"{name} has {n} embeddings, expected all {want} or none"
    return counts


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"child exited ({proc.returncode}) before {what}: {out[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------- gallery
ENROLLER = textwrap.dedent(
    """
    import sys, numpy as np
    from occluface.gallery import open_gallery
    g = open_gallery(sys.argv[1])
    start, n, d = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(start)
    for i in range(start, start + 100000):
        g.enroll(f"person{i:05d}", rng.normal(size=(n, d)).astype(np.float32), model_id="m", model_version="1",
                 sources=[f"p{i}_{j}.jpg" for j in range(n)], thumbnails=[rng.bytes(2000) for _ in range(n)])
        print(f"committed person{i:05d}", flush=True)
    """
)


def test_sigkill_mid_enrolment_batch_leaves_a_consistent_gallery(tmp_path):
    """Three batches killed at random moments; each leaves whole subjects only and loses no acknowledged one."""
    path = tmp_path / "gallery.sqlite3"
    open_gallery(path).close()
    acknowledged: list[str] = []
    landed_unreported: set[str] = set()
    start = 0
    for round_no in range(3):
        proc = subprocess.Popen([sys.executable, "-c", ENROLLER, str(path), str(start), str(PER_SUBJECT), str(DIM)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO)
        lines: list[str] = []
        target = 10 + 7 * round_no  # kill after a different number of commits each round
        while len(lines) < target:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"enroller died: {proc.wait()} {''.join(lines)[-1000:]}")
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: most of its time is spent inside an enrolment transaction
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        this_round = [ln.split()[1] for ln in lines + rest.splitlines() if ln.startswith("committed")]
        acknowledged += this_round
        counts = check_consistent(path)
        assert set(acknowledged) <= set(counts), "an enrolment reported as committed was lost"
        # the kill can fall between a commit and its print, so the one in-flight subject may have landed unreported
        unreported = set(counts) - set(acknowledged) - landed_unreported
        in_flight = f"person{start + len(this_round):05d}"
        assert unreported <= {in_flight}, f"round {round_no}: only {in_flight} may land unreported, got {sorted(unreported)}"
        landed_unreported |= unreported
        start += 1000
    with open_gallery(path) as g:  # the store still works normally after the crashes
        matrix, names = g.embeddings("m")
        assert matrix.shape == (len(names), DIM) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
        g.enroll("after", np.ones((PER_SUBJECT, DIM), np.float32), model_id="m", model_version="1",
                 thumbnails=[b"t"] * PER_SUBJECT)
    check_consistent(path)


def test_sigkill_during_cli_roster_enrolment(tmp_path):
    """`occluface enroll --roster` killed while enrolling: each person has all their photos or is absent."""
    roster = REPO / "data" / "lfw"
    photos = {p.name: len(list(p.glob("*.jpg"))) for p in roster.iterdir() if p.is_dir()}
    path = tmp_path / "gallery.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "occluface.cli", "enroll", str(roster), "--roster", "-g", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )

    def enrolled() -> int:
        if not path.exists():
            return 0
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            try:
                return int(db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    wait_for(lambda: enrolled() >= 2, proc, 240, "two people enrolled")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    counts = check_consistent(path, photos)
    assert 2 <= len(counts) < len(photos), "killed mid-batch: some but not all of the roster"


# ----------------------------------------------------------------------------- training
TRAINER = textwrap.dedent(
    """
    import os, sys, signal, json
    import torch
    sys.path.insert(0, {tests!r})
    from test_train import TINY_MODEL_SOURCE, tiny_config
    from occluface.models import registry
    from occluface.train.trainer import train
    registry.list_models()
    exec(compile(TINY_MODEL_SOURCE, "<test_tiny>", "exec"), {{}})
    torch.set_num_threads(1)
    kw = json.loads(sys.argv[3])
    if sys.argv[4] == "mid-write":  # die while the 2nd checkpoint is half written: no cleanup code runs
        real_save = torch.save
        def dying_save(obj, fh, *a, **k):
            if isinstance(obj, dict) and obj.get("epoch") == 2:  # epoch 2's last.pt (written before best.pt)
                fh.write(b"PK\\x03\\x04 half a checkpoint")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, fh, *a, **k)
        torch.save = dying_save
    else:  # a slower step (same arithmetic) so the parent's kill lands while the run is still going
        import time
        real_step = torch.optim.SGD.step
        def slow_step(self, *a, **k):
            time.sleep(0.1)
            return real_step(self, *a, **k)
        torch.optim.SGD.step = slow_step
    train(tiny_config(sys.argv[1], sys.argv[2], **kw), progress=False)
    print("finished", flush=True)
    """
).format(tests=str(TESTS))

TRAIN_KW = dict(epochs=3, loss="arcface", s=16.0, dropout=0.2, eval_every=0, step_size=2)


@pytest.fixture(scope="module")
def tiny_registered():
    from occluface.models import registry

    registry.list_models()
    exec(compile(TINY_MODEL_SOURCE, "<test_tiny>", "exec"), {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    registry._REGISTRY.pop("test_tiny", None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_registered):
    root = tmp_path_factory.mktemp("train")
    data = make_faces(root / "faces", identities=3, per_identity=8)
    train(tiny_config(data, root / "full", **TRAIN_KW), progress=False)
    return data, root / "full"


def assert_same_run(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert ca["step"] == cb["step"] and ca["epoch"] == cb["epoch"] == TRAIN_KW["epochs"]
    for part in ("backbone", "head"):
        for name in ca[part]:
            assert torch.equal(ca[part][name], cb[part][name]), f"{part}.{name} differs from the uninterrupted run"
    log = lambda p: [json.loads(x) for x in (p / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert log(a) == log(b), "the resumed log must read as one uninterrupted run"


def run_trainer(data: Path, out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAINER, str(data), str(out), json.dumps(TRAIN_KW), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def test_training_killed_while_writing_a_checkpoint_resumes_to_identical_weights(uninterrupted, tmp_path):
    data, full = uninterrupted
    out = tmp_path / "run"
    proc = run_trainer(data, out, "mid-write")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, output[-2000:]
    survivor = load_checkpoint(out / "last.pt")  # the previous checkpoint is intact, not the half-written one
    assert survivor["epoch"] == 1
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "the kill left its temporary file behind"
    summary = train(tiny_config(data, out, **TRAIN_KW), progress=False)
    assert summary["resumed_from_step"] == survivor["step"]
    assert_same_run(full, out)


def test_training_killed_at_a_random_moment_resumes_to_identical_weights(uninterrupted, tmp_path):
    data, full = uninterrupted
    out = tmp_path / "run"
    proc = run_trainer(data, out, "plain")

    def has_checkpoint() -> bool:
        try:
            return load_checkpoint(out / "last.pt")["epoch"] >= 1
        except Exception:  # noqa: BLE001 - not written yet
            return False

    wait_for(has_checkpoint, proc, 300, "the first checkpoint")
    time.sleep(float(np.random.default_rng().uniform(0, 0.25)))  # somewhere inside the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "finished" not in output
    killed_at = load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= killed_at < TRAIN_KW["epochs"]
    summary = train(tiny_config(data, out, **TRAIN_KW), progress=False)
    steps_per_epoch = load_checkpoint(full / "last.pt")["step"] // TRAIN_KW["epochs"]
    assert summary["resumed_from_step"] == steps_per_epoch * killed_at
    assert_same_run(full, out)
