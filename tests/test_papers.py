"""`occluface bench papers`: a tiny end-to-end run on the bundled Yale B sample, presets and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from occluface.cli import app
from occluface.errors import DatasetError, OccluFaceError
from occluface.bench.papers import experiment_specs, occlusion_cache, run_papers, write_report
from occluface.models import registry

YALEB = Path(__file__).parents[1] / "data" / "yaleb"

TINY_MODELS = '''
from torch import nn
from occluface.models import register

def _tiny(width, attention):
    class Tiny(nn.Module):
        """Two strided convs (optionally a sigmoid spatial gate, a stand-in for the attention variant)."""

        def __init__(self, embedding_size, input_size, dropout=0.0):
            super().__init__()
            self.input_size, self.embedding_size = tuple(input_size), embedding_size
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
            self.gate = nn.Sequential(nn.Conv2d(width, 1, 3, 1, 1), nn.Sigmoid()) if attention else None
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                    nn.Linear(width, embedding_size))

        def forward(self, x):
            x = self.body(x)
            if self.gate is not None:
                x = x * self.gate(x)
            return self.fc(x)

    return Tiny

register("papers_tiny_plain", default_input_size=32)(_tiny(8, False))
register("papers_tiny_attn", default_input_size=32)(_tiny(8, True))
'''

TINY = ["papers_tiny_plain", "papers_tiny_attn"]


@pytest.fixture(autouse=True)
def tiny_models():
    """Register two tiny backbones for the test, one thread; restore both afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry.list_models()
    exec(compile(TINY_MODELS, "<papers_tiny>", "exec"), {})
    yield
    for name in TINY:
        registry._REGISTRY.pop(name, None)
    torch.set_num_threads(before)


TINY_SETTINGS = dict(iterations=3, input_size=32, max_identities=2, batch_size=8, eval_every=1,
                     coal_models=TINY, mask_models=TINY)


def _tiny_papers(root: Path, scale: str, **kwargs):
    """run_papers with the tiny models registered and one thread, and its report: (root, result, paths)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry.list_models()
    exec(compile(TINY_MODELS, "<papers_tiny>", "exec"), {})
    try:
        result = run_papers(YALEB, root / "work", scale=scale, device="cpu", progress=False, **TINY_SETTINGS, **kwargs)
        paths = write_report(result, root / "report", command=f"occluface bench papers --scale {scale}")
    finally:
        torch.set_num_threads(before)
    return root, result, paths


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of both experiments, shared by the tests that read its outputs."""
    return _tiny_papers(tmp_path_factory.mktemp("papers"), "smoke")


def test_tiny_run_writes_table_json_and_curves(tiny_run):
    root, result, paths = tiny_run
    md = paths["markdown"].read_text(encoding="utf-8")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert [e["key"] for e in data["experiments"]] == ["coal", "mask"]
    mask = data["experiments"][1]
    # the masked-face table names both models and has both masked and unmasked columns
    assert "| model |" in md and "masked test acc" in md and "unmasked test acc" in md
    assert "dust test acc" in md and "clean test acc" in md
    for exp in data["experiments"]:
        assert [m["model"] for m in exp["models"]] == TINY
        for m in exp["models"]:
            assert m["steps"] == 3
            assert m["model"] in md
            for split in ("occluded", "clean"):
                acc = m[split]["accuracy"]
                assert acc is not None and 0.0 <= acc <= 1.0
                assert m[split]["n_images"] == exp["n_test"]
    # same held-out images, occluded vs clean; 2 identities x 10 images, 90/10 split for the mask paper
    assert mask["n_identities"] == 2 and mask["n_test"] == 2 and mask["n_train"] == 18
    assert data["experiments"][0]["n_test"] == 4  # 80/20 for the coal-mine paper
    for name in ("coal_curves.png", "mask_curves.png", "accuracy.png"):
        png = paths["markdown"].parent / name
        assert png.is_file() and Image.open(png).size[0] > 300
        assert f"]({name})" in md
    assert "No GPU was lent" in md and "occluface bench papers --scale smoke" in md
    # every curve point of the log is a held-out evaluation (eval_every=1)
    log = Path(mask["models"][0]["log"]).read_text(encoding="utf-8").splitlines()
    tests = [json.loads(line) for line in log if json.loads(line)["split"] == "test"]
    assert [r["step"] for r in tests] == [1, 2, 3]


def test_cache_occludes_every_image_and_is_reused(tiny_run):
    root, result, _ = tiny_run
    coal = result["experiments"][0]
    cache = Path(coal["cache"]["dir"])
    assert coal["cache"]["occluded"] == 20 and coal["cache"]["unchanged"] == 0
    files = sorted(p.relative_to(cache) for p in cache.rglob("*.png"))
    assert len(files) == 20 and all(f.parts[0] in {"yaleB01", "yaleB02"} for f in files)
    a = np.asarray(Image.open(cache / files[0]).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(YALEB / files[0]).convert("L"), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1.0  # dust really changed the face
    again = occlusion_cache(YALEB, root / "work" / "cache", ("dust",), seed=0, max_identities=2, progress=False)
    assert again["reused"] and again["dir"] == str(cache)
    other = occlusion_cache(YALEB, root / "work" / "cache", ("dust",), seed=1, max_identities=2, progress=False)
    assert other["dir"] != str(cache) and other["total"] == 20 and not other["reused"]
    c = np.asarray(Image.open(Path(other["dir"]) / files[0]).convert("L"), dtype=np.int16)
    assert np.abs(c - a).mean() > 0.5  # another seed draws other dust


def test_rerun_reuses_finished_training_runs(tiny_run):
    root, result, _ = tiny_run
    again = run_papers(YALEB, root / "work", scale="smoke", experiments=["mask"], device="cpu", progress=False,
                       **TINY_SETTINGS)
    first = result["experiments"][1]["models"]
    second = again["experiments"][0]["models"]
    assert all(m["reused_finished_run"] for m in second)
    assert [m["occluded"]["accuracy"] for m in second] == [m["occluded"]["accuracy"] for m in first]


def test_two_processes_on_one_seed_share_its_models(tiny_run):
    """A model another process is training (its run lock held) is skipped, then waited for and reused."""
    import fcntl
    import threading

    root, result, _ = tiny_run
    runs_dir = Path(result["experiments"][0]["runs_dir"])
    said: list[str] = []
    out: dict = {}
    with open(runs_dir / TINY[0] / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is training the first model
        worker = threading.Thread(target=lambda: out.update(run_papers(
            YALEB, root / "work", scale="smoke", experiments=["coal"], device="cpu", progress=False,
            log=said.append, **TINY_SETTINGS)))
        worker.start()
        for _ in range(600):
            if any(f"training {TINY[1]}" in line for line in said):
                break
            worker.join(0.05)
        worker.join(2.0)
        assert worker.is_alive()  # the second model is done; it waits for the first instead of training it too
        assert any(f"{TINY[0]} is being trained by another process" in line for line in said)
        assert not any(f"training {TINY[0]}" in line for line in said)
        fcntl.flock(held, fcntl.LOCK_UN)
        worker.join(60)
    assert not worker.is_alive()
    models = out["experiments"][0]["models"]
    assert [m["model"] for m in models] == TINY  # the report keeps the spec's order
    assert all(m["reused_finished_run"] for m in models)


def test_presets_follow_the_papers():
    smoke = {s.key: s for s in experiment_specs("smoke")}
    real = {s.key: s for s in experiment_specs("real")}
    assert real["coal"].models == ("resnet50", "cbam_resnet50") and real["coal"].lr == 0.1
    assert smoke["coal"].models == ("resnet18", "cbam_resnet18") and smoke["coal"].occlusion == ("dust",)
    for spec in (smoke["mask"], real["mask"]):
        assert spec.models == ("iresnet50", "ressanet50") and spec.loss == "arcface" and spec.lr == 0.05
        assert spec.test_fraction == 0.1 and spec.occlusion == ("mask",)
    assert real["mask"].input_size == 112 and real["coal"].input_size == 224
    assert real["coal"].max_identities is None and smoke["coal"].max_identities == 10
    tuned = experiment_specs("smoke", ["coal"], epochs=4, input_size=40, coal_occlusion=["dust", "lowlight"])
    assert len(tuned) == 1 and tuned[0].epochs == 4 and tuned[0].iterations is None
    assert tuned[0].input_size == 40 and tuned[0].occluded_label == "dust+lowlight"
    soft = experiment_specs("smoke", ["mask"], margin_scale=16.0, margin=0.2)[0]
    assert (soft.s, soft.m) == (16.0, 0.2) and (smoke["mask"].s, smoke["mask"].m) == (None, None)
    assert soft.key_settings() != smoke["mask"].key_settings()  # another run folder, never a clash
    assert "s" not in smoke["mask"].key_settings()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale="huge"), "scale must be one of"),
        (dict(experiments=["coal", "faces"]), "experiments must be chosen"),
        (dict(iterations=5, epochs=2), "either iterations or epochs"),
        (dict(coal_models=["resnet18"]), "two different model names"),
        (dict(mask_models=["iresnet50", "nosuchnet"]), "unknown model(s) nosuchnet"),
        (dict(coal_occlusion=["soot"]), "coal occlusion kinds"),
        (dict(device="tpu"), "device"),
        (dict(margin_scale=0.0), "margin_scale must be a positive number"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(OccluFaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_papers(YALEB, tmp_path / "work", progress=False, **kwargs)
    assert not (tmp_path / "work").exists()  # nothing is written before the settings are checked


def test_bad_data_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DatasetError, match="does not exist"):
        run_papers(missing, tmp_path / "work", progress=False)
    result = CliRunner().invoke(app, ["bench", "papers", "--data", str(missing), "--work", str(tmp_path / "w"),
                                      "--out", str(tmp_path / "r")])
    text = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2
    assert "no_such_folder" in text and "does not exist" in text
    assert "Traceback" not in text
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(flat / "a.png")
    result = CliRunner().invoke(app, ["bench", "papers", "--data", str(flat), "--work", str(tmp_path / "w"),
                                      "--out", str(tmp_path / "r"), "--device", "cpu"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "flat: no identity sub-folders" in text and "occluding" not in text


# ----------------------------------------------------------------------------- decide scale (issue 22)


def test_decide_preset_is_the_cpu_verdict_scale():
    decide = {s.key: s for s in experiment_specs("decide")}
    coal, mask = decide["coal"], decide["mask"]
    assert coal.models == ("resnet18", "cbam_resnet18") and coal.max_identities == 38 and coal.epochs == 30
    assert mask.models == ("iresnet18", "ressanet18") and mask.max_identities is None and mask.align == 112
    assert mask.input_size // 16 >= 3  # the IResNet skeleton strides 16: a map of at least 3x3 is left
    # the same settings given as overrides to the smoke preset name the same run folders (no rerun)
    manual = experiment_specs("smoke", ["coal"], max_identities=38, input_size=64, epochs=30, eval_every=61)[0]
    assert manual.key_settings() == coal.key_settings()
    assert "align" not in coal.key_settings() and mask.key_settings()["align"] == 112


def test_paired_stats_and_the_verdict_rule():
    from occluface.bench.papers_seeds import paired_stats, verdict

    def bits(n_right, n=100):
        return "1" * n_right + "0" * (n - n_right)

    # B right on every image A gets right, plus 6 more, at each of 3 seeds: reproduced
    st = paired_stats([0.80, 0.81, 0.79], [0.86, 0.87, 0.85], [bits(80), bits(81), bits(79)],
                      [bits(86), bits(87), bits(85)])
    assert st["mean_diff"] == pytest.approx(6.0) and st["sd_diff"] == pytest.approx(0.0, abs=1e-9)
    assert st["b_only"] == 18 and st["a_only"] == 0 and st["paired_images"] == 300 and st["p_mcnemar"] < 1e-4
    assert verdict(st, 5.0, chance=0.02, occluded_means=(80, 86))["verdict"] == "reproduced"
    # the same, the other way round: the baseline is ahead
    st = paired_stats([0.86, 0.87, 0.85], [0.80, 0.81, 0.79], [bits(86), bits(87), bits(85)],
                      [bits(80), bits(81), bits(79)])
    ruling = verdict(st, 5.0, chance=0.02, occluded_means=(86, 80))
    assert ruling["verdict"] == "not reproduced" and "baseline is ahead" in ruling["why"]
    # noisy seeds around zero: the interval holds 0 and the paper's +5
    st = paired_stats([0.80, 0.85, 0.78], [0.84, 0.80, 0.83], [bits(80), bits(85), bits(78)],
                      [bits(84), bits(80), bits(83)])
    assert st["ci95"][0] < 0 < 5 < st["ci95"][1]
    assert verdict(st, 5.0, chance=0.02, occluded_means=(81, 82.3))["verdict"] == "not decidable here"
    # small and unsure, but surely below the paper's +5: not reproduced
    st = paired_stats([0.800, 0.800, 0.800], [0.801, 0.795, 0.806])
    assert st["ci95"][1] < 5 and "p_mcnemar" not in st
    ruling = verdict(st, 5.0, chance=0.02, occluded_means=(80, 80.1))
    assert ruling["verdict"] == "not reproduced" and "below the paper" in ruling["why"]
    # both at chance: never a verdict, whatever the tests say
    assert verdict(paired_stats([0.02, 0.02, 0.03], [0.03, 0.03, 0.04]), 0.28, chance=0.02,
                   occluded_means=(2.3, 3.3))["verdict"] == "not decidable here"
    with pytest.raises(OccluFaceError, match="same >= 2 seeds"):
        paired_stats([0.8], [0.9])


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """Decide scale with two seeds, shrunk to the tiny models and two people (both experiments on Yale B)."""
    return _tiny_papers(tmp_path_factory.mktemp("papers-seeds"), "decide", seeds=[0, 1], mask_data=YALEB)


def test_seeds_are_paired_tested_and_ruled(seeds_run):
    root, result, paths = seeds_run
    assert result["seeds"] == [0, 1]
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "Decide scale" in md and md.count("**Verdict: ") == 2 and "RULE.txt" in md
    for exp in result["experiments"]:
        assert [run["seed"] for run in exp["per_seed"]] == [0, 1]
        assert [m["model"] for m in exp["models"]] == TINY
        for part in ("occluded", "clean"):
            st = exp["stats"][part]
            accs = [[run["models"][i][part]["accuracy"] for run in exp["per_seed"]] for i in (0, 1)]
            assert st["diff_points"] == pytest.approx([100 * (b - a) for a, b in zip(*accs)])
            assert st["paired_images"] == sum(run["n_test"] for run in exp["per_seed"])
            assert 0.0 <= st["p_mcnemar"] <= 1.0 and 0.0 <= st["p_t"] <= 1.0
            assert exp["models"][0][part]["accuracy"] == pytest.approx(np.mean(accs[0]))
        assert exp["verdict"]["verdict"] in {"reproduced", "not reproduced", "not decidable here"}
        png = paths["markdown"].parent / f"{exp['key']}_curves.png"
        assert png.is_file() and Image.open(png).size[0] > 300
    # the per-seed runs differ (another split and initialisation), and a rerun reuses every one
    coal = result["experiments"][0]
    assert coal["per_seed"][0]["runs_dir"] != coal["per_seed"][1]["runs_dir"]


def test_mask_margin_is_chosen_on_seed0_training_images_only(seeds_run):
    from occluface.data.folder import scan_folder, split_samples

    root, result, paths = seeds_run
    mask = result["experiments"][1]
    choice = mask["margin_choice"]
    assert len(choice["candidates"]) == 3 and (choice["s"], choice["m"]) in {(16.0, 0.2), (32.0, 0.3), (64.0, 0.5)}
    assert choice["model"] == TINY[0]  # the baseline: the choice cannot favour the proposed model
    best = max(c["val_acc"] for c in choice["candidates"])
    assert [c for c in choice["candidates"] if (c["s"], c["m"]) == (choice["s"], choice["m"])][0]["val_acc"] == best
    # the pilot's images are links to seed 0's training images: none of seed 0's test images is among them
    cache = Path(mask["per_seed"][0]["cache"]["dir"])
    train, test = split_samples(scan_folder(cache), by="image", test_fraction=0.1, seed=0)
    linked = {p.resolve() for p in (Path(choice["pilot_dir"]) / "data").rglob("*") if p.is_symlink()}
    assert linked == {s.path.resolve() for s in train} and not linked & {s.path.resolve() for s in test}
    # every seed's runs used the chosen head, and the report states the choice
    assert all(run["settings"]["s"] == choice["s"] for run in mask["per_seed"])
    assert "chosen on validation" in paths["markdown"].read_text(encoding="utf-8")
    # aligned crops: occluded and clean copies share relative paths and the template size
    clean = Path(mask["per_seed"][0]["cache"]["clean_dir"])
    some = sorted(p.relative_to(cache) for p in cache.rglob("*.png"))[0]
    assert Image.open(cache / some).size == Image.open(clean / some).size == (112, 112)


def test_seeds_rerun_reuses_every_run(seeds_run):
    root, result, _ = seeds_run
    again = run_papers(YALEB, root / "work", scale="decide", experiments=["coal"], seeds=[0, 1], device="cpu",
                       progress=False, **TINY_SETTINGS)
    runs = [m for run in again["experiments"][0]["per_seed"] for m in run["models"]]
    assert all(m["reused_finished_run"] for m in runs)
    assert again["experiments"][0]["stats"] == result["experiments"][0]["stats"]


def test_synth_comparison_rules_on_paired_faces_and_resumes(tmp_path):
    """Py-WGAN-div vs plain GAN and WGAN at two seeds, tiny budget, on the bundled data."""
    data_root = Path(__file__).parents[1] / "data"
    tiny = dict(iters=2, max_faces=3, max_refs=4, lfw=2, max_per_source=4)
    result = run_papers(None, tmp_path / "work", scale="decide", experiments=["synth"], seeds=[0, 1],
                        synth_data=data_root, synth_overrides=tiny, device="cpu", progress=False)
    (synth,) = result["experiments"]
    assert synth["key"] == "synth" and synth["seeds"] == [0, 1]
    for s in synth["per_seed"]:
        assert [r["label"] for r in s["runs"].values()] == ["plain GAN", "WGAN", "Py-WGAN-div"]
        assert all(r["iterations"] == 2 for r in s["runs"].values())
        passes = {len(r["scores"]["cover_pass"]) for r in s["runs"].values()}
        assert passes == {s["n_points"]}  # every method judged on the same faces
    for base in ("gan", "wgan"):
        c = synth["comparisons"][base]
        assert c["verdict"] in {"reproduced", "not reproduced", "not decidable here"}
        assert c["stats"]["paired_images"] == 2 * synth["per_seed"][0]["n_points"]
    paths = write_report(result, tmp_path / "report", command="occluface bench papers --scale decide")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "5-point cover" in md and "**Verdict: " in md and "landmark overlay (not ruled on)" in md
    # a rerun trains and scores nothing again: every run and every seed's scoring is reused
    mtimes = {p: p.stat().st_mtime for name in ("last.pt", "scored.json") for p in (tmp_path / "work" / "runs").rglob(name)}
    assert len([p for p in mtimes if p.name == "scored.json"]) == 2
    again = run_papers(None, tmp_path / "work", scale="decide", experiments=["synth"], seeds=[0, 1],
                       synth_data=data_root, synth_overrides=tiny, device="cpu", progress=False)
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert again["experiments"][0]["comparisons"] == synth["comparisons"]
    one = run_papers(None, tmp_path / "work", scale="decide", experiments=["synth"], seed=1, synth_data=data_root,
                     synth_overrides=tiny, device="cpu", progress=False)["experiments"][0]
    assert one["comparisons"] == {} and one["verdict"]["verdict"] == "not decidable here: one seed"
    same = lambda d: {k: v for k, v in d.items() if k != "ms_per_face"}  # noqa: E731 - timings differ
    assert same(one["per_seed"][0]["runs"]["gan"]["scores"]) == same(synth["per_seed"][1]["runs"]["gan"]["scores"])
    with pytest.raises(OccluFaceError, match="synthesis comparison runs at the decide scale"):
        run_papers(None, tmp_path / "w2", scale="smoke", experiments=["synth"], synth_data=data_root)


def test_critic_settling_reads_both_kinds_of_log(tmp_path):
    from occluface.bench.papers_synth import critic_settling

    flat = tmp_path / "wgan.jsonl"
    flat.write_text("".join(json.dumps({"iter": i, "wdist": -0.4 + 0.01 * (-1) ** i}) + "\n" for i in range(40)))
    st = critic_settling(flat)
    assert st["settled"] and st["last_window_mean"] == pytest.approx(-0.4, abs=0.01)
    rising = tmp_path / "gan.jsonl"
    rising.write_text("".join(json.dumps({"iter": i, "d_real": 0.1 * i, "d_fake": 0.0}) + "\n" for i in range(40)))
    st = critic_settling(rising)
    assert not st["settled"] and st["last_window_mean"] > st["previous_window_mean"]
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"iter": 1, "wdist": 1.0}) + "\n")
    assert critic_settling(short)["settled"] is False


def test_report_reuses_an_earlier_reports_comparisons(seeds_run, tmp_path):
    """A call that runs one comparison takes the others from an earlier papers.json, figures included."""
    from occluface.bench.papers import reuse_report

    root, result, paths = seeds_run
    old_dir = paths["markdown"].parent
    again = run_papers(YALEB, root / "work", scale="decide", experiments=["mask"], seeds=[0, 1], device="cpu",
                       mask_data=YALEB, progress=False, **TINY_SETTINGS)
    merged = reuse_report(again, old_dir / "papers.json")
    assert [e["key"] for e in merged["experiments"]] == ["coal", "mask"]  # the report's order, not the call's
    coal, mask = merged["experiments"]
    assert coal["reused_from"]["report"] == str(old_dir / "papers.json") and "reused_from" not in mask
    old_coal = json.loads((old_dir / "papers.json").read_text(encoding="utf-8"))["experiments"][0]
    assert coal["stats"] == old_coal["stats"] and coal["verdict"] == old_coal["verdict"]
    # the runs behind the reused comparison are gone: its figure is copied, not redrawn from their logs
    import shutil

    moved = [(Path(run["runs_dir"]), tmp_path / f"gone-{i}") for i, run in enumerate(coal["per_seed"])]
    for src, dst in moved:
        shutil.move(src, dst)
    try:
        new = write_report(merged, tmp_path / "report", command="occluface bench papers --scale decide")
    finally:  # the module's other tests share these runs
        for src, dst in moved:
            shutil.move(dst, src)
    out = new["markdown"].parent
    assert (out / "coal_curves.png").read_bytes() == (old_dir / "coal_curves.png").read_bytes()
    assert (out / "mask_curves.png").is_file() and (out / "accuracy.png").is_file()
    md = new["markdown"].read_text(encoding="utf-8")
    assert md.count("**Verdict: ") == 2 and md.count("Taken unchanged from the earlier report") == 1
    # what this call ran wins over the earlier report's copy of the same comparison
    assert reuse_report(again, old_dir)["experiments"][1]["per_seed"] == again["experiments"][0]["per_seed"]


@pytest.mark.parametrize("content, message", [
    (None, "no earlier report there"),
    ("{not json", "not a papers.json"),
    ('{"scale": "smoke", "experiments": []}', "a smoke-scale report"),
])
def test_reuse_of_a_bad_report_is_a_clear_error(tmp_path, content, message):
    from occluface.bench.papers import reuse_report

    path = tmp_path / "papers.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(OccluFaceError, match=message) as err:
        reuse_report({"scale": "decide", "experiments": []}, path)
    assert str(path) in str(err.value)


def test_cli_checks_the_reused_report_before_training(tmp_path):
    bad = tmp_path / "papers.json"
    bad.write_text('{"scale": "smoke", "experiments": []}', encoding="utf-8")
    res = CliRunner().invoke(app, ["bench", "papers", "--scale", "decide", "--experiments", "mask", "--reuse",
                                   str(bad), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "smoke-scale report" in res.output
    assert not (tmp_path / "work").exists()  # nothing trained, nothing written
