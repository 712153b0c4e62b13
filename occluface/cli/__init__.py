"""The `occluface` command: one entry point for operators and researchers.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from occluface.errors import OccluFaceError

app = typer.Typer(
    name="occluface",
    help="Occlusion-robust face recognition: train, evaluate and benchmark backbones; detect, align and occlude faces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: each writes a Markdown table, JSON and plots.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error line stays one line: paths in it can be copied


def _show_report(markdown: Path, *written: Path) -> None:
    """Print a benchmark's Markdown report, then the files it wrote (every bench command ends this way)."""
    console.print(Path(markdown).read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line and exit: users see the problem, not a traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# ----------------------------------------------------------------------------- commands
# (each command lives below; keep them thin: parse options, call the library, print)


@app.command("train")
def train_command(
    model: str = typer.Option(..., "--model", "-m", help="Backbone name (see `occluface models`), e.g. resnet18, cbam_resnet18, iresnet50."),
    data: Path = typer.Option(..., "--data", help="Dataset folder with one sub-folder of face images per identity."),
    out: Path = typer.Option(..., "--out", help="Run folder for log.jsonl, config.json, last.pt, best.pt, summary.json; an existing last.pt is resumed."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Training epochs."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per step (per process under torchrun)."),
    lr: float = typer.Option(0.1, "--lr", help="Initial SGD learning rate (coal-mine paper: 0.1; ArcFace/IResNet: 0.05)."),
    loss: str = typer.Option("softmax", "--loss", help="softmax | arcface | cosface."),
    margin_scale: float | None = typer.Option(None, "--s", help="Scale s of the arcface/cosface head (default 64)."),
    margin: float | None = typer.Option(None, "--m", help="Margin m (default: arcface 0.5, cosface 0.35)."),
    schedule: str = typer.Option("step", "--schedule", help="step (divide lr by 10 every --step-size epochs) | cosine."),
    step_size: int = typer.Option(10, "--step-size", min=1, help="Epochs between the /10 learning-rate decays."),
    milestones: str | None = typer.Option(None, "--milestones", help="Comma-separated epochs at which to divide the lr by 10 (overrides --step-size), e.g. 20,28."),
    split_by: str = typer.Option("image", "--split-by", help="image: each identity in train and test (closed set); identity: unseen test people."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share held out for testing, in [0, 1)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the split, initialisation, data order and augmentation."),
    input_size: int | None = typer.Option(112, "--input-size", min=0, help="Square input side in pixels (0 = the model's default)."),
    embedding_size: int = typer.Option(512, "--embedding-size", min=1, help="Embedding dimension."),
    dropout: float | None = typer.Option(None, "--dropout", help="Dropout before the embedding layer (default: the model's)."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", min=0.0, help="L2 weight decay of SGD."),
    l1: float = typer.Option(0.0, "--l1", min=0.0, help="L1 penalty weight on conv/linear weights (0 = off)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop after this many iterations (smoke tests, timing)."),
    eval_every: int = typer.Option(100, "--eval-every", min=0, help="Iterations between test evaluations (0 = only at epoch ends)."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Iterations between train records in log.jsonl."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Train without flips/affine jitter."),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading worker processes."),
    no_amp: bool = typer.Option(False, "--no-amp", help="Disable mixed precision on CUDA."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default; 1 is often fastest on a busy machine)."),
) -> None:
    """Train a backbone + softmax/ArcFace/CosFace head on an identity-per-folder dataset (DDP under torchrun)."""
    from rich.table import Table

    if threads:
        import torch

        torch.set_num_threads(threads)

    from occluface.models.config import TrainConfig
    from occluface.train.trainer import train

    try:
        steps_at = [int(v) for v in milestones.split(",") if v.strip()] if milestones else None
    except ValueError:
        fail(f"--milestones must be comma-separated epoch numbers, got {milestones!r}")
    config = TrainConfig(
        milestones=steps_at, model=model, data=str(data), out=str(out), epochs=epochs, batch_size=batch_size, lr=lr, loss=loss.lower(),
        s=margin_scale, m=margin, schedule=schedule.lower(), step_size=step_size, split_by=split_by.lower(),
        test_fraction=test_fraction, seed=seed, input_size=input_size or None, embedding_size=embedding_size,
        dropout=dropout, weight_decay=weight_decay, l1=l1, max_steps=max_steps, eval_every=eval_every,
        log_every=log_every, augment=not no_augment, num_workers=workers, amp=not no_amp,
    )
    try:
        summary = train(config.validate(), progress=True)
    except OccluFaceError as exc:
        fail(str(exc))
    if summary.get("world_size", 1) > 1 and not _is_rank0():
        return

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    test_name = "test accuracy" if config.split_by == "image" else "test 1-NN accuracy (unseen people)"
    table = Table(title=f"{summary['model']} + {summary['loss']}: {summary['num_classes']} identities, "
                  f"{summary['num_train']} train / {summary['num_test']} test images")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("epochs / steps", f"{summary['epochs_completed']} / {summary['steps']}" + (" (max-steps)" if summary["stopped_by_max_steps"] else ""))
    table.add_row("train accuracy (last epoch)", pct(summary["train_acc"]))
    table.add_row(test_name, pct(summary["test_acc"]))
    table.add_row(f"best {test_name}", pct(summary["best_test_acc"]) + (f" (epoch {summary['best_epoch']})" if summary["best_epoch"] else ""))
    table.add_row("time", f"{summary['seconds']:.1f} s on {summary['device']}")
    console.print(table)
    for name in ("checkpoint", "best_checkpoint", "log"):
        console.print(f"{name.replace('_', ' ')}: {summary[name]}", highlight=False, soft_wrap=True)


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    names: list[str] = typer.Option(None, "--name", "-n", help="Only these models (repeatable)."),
) -> None:
    """List every registered backbone with its parameters and GMACs next to the published figures."""
    import json

    from occluface.models import list_models
    from occluface.models.complexity import complexity_table, rich_table

    known = list_models()
    unknown = [n for n in names or [] if n.strip().lower() not in known]
    if unknown:
        fail(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")
    rows = complexity_table([n.strip().lower() for n in names] if names else None)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(rich_table(rows))


@bench_app.command("baseline")
def bench_baseline_command(
    data: Path = typer.Option(Path("../shared/data/yaleb"), "--data", help="Folder with one sub-folder of tight face crops per identity (Yale B layout)."),
    identities: int | None = typer.Option(None, "--identities", min=2, help="Use only the first N identities (sorted); default all."),
    probes_per_identity: int = typer.Option(20, "--probes-per-identity", min=1, help="Seeded sample of probe images per identity."),
    occlusion: str = typer.Option(",".join(("plain", "surgical", "kn95", "cloth", "dust", "lowlight")), "--occlusion", help="Comma-separated occlusion kinds; clean probes are always measured."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the probe sample and the occlusions."),
    box_padding: float = typer.Option(0.0, "--box-padding", help="Grow the whole-image face box by this fraction per side."),
    out: Path = typer.Option(Path("reports/baseline"), "--out", help="Folder for baseline.md, baseline.json and baseline.png."),
) -> None:
    """Rank-1 of dlib's ResNet (one clean frontal-light gallery image per identity) on clean vs occluded probes."""
    from occluface.bench.baseline import run_baseline, write_report

    kinds = [k.strip() for k in occlusion.split(",") if k.strip()]
    try:
        result = run_baseline(
            data,
            identities=identities,
            probes_per_identity=probes_per_identity,
            occlusions=kinds,
            seed=seed,
            box_padding=box_padding,
        )
        paths = write_report(result, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["md"], paths["md"], paths["json"], paths["png"])


@app.command("finetune")
def finetune_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder with yaleb/, lfw_dev/ and mask_cls/ (the shared data)."),
    out: Path = typer.Option(Path("runs/finetune"), "--out", help="Run folder: cache/ (chips + teacher embeddings), last.pt, log.jsonl, summary.json, occluface_resnet.pt; re-running resumes."),
    steps: int = typer.Option(4000, "--steps", min=1, help="Optimiser steps (the cosine schedule spans them)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Chips per step (clean and occluded mixed)."),
    lr: float = typer.Option(1e-4, "--lr", help="Peak Adam learning rate (warm-up, then cosine decay to 5%)."),
    variants: int = typer.Option(4, "--variants", min=1, help="Occluded variants precomputed per training face."),
    freeze_blocks: int = typer.Option(4, "--freeze-blocks", min=0, max=14, help="Residual blocks kept frozen after the frozen stem."),
    clean_fraction: float = typer.Option(0.25, "--clean-fraction", help="Share of clean chips in each batch (they keep clean embeddings in place)."),
    clean_weight: float = typer.Option(2.0, "--clean-weight", min=0.0, help="Loss weight of a clean chip relative to an occluded one."),
    yaleb_holdout: int = typer.Option(10, "--yaleb-holdout", min=0, help="Yale B identities held out for evaluation (seeded; never trained on)."),
    lfw_holdout: int = typer.Option(300, "--lfw-holdout", min=0, help="lfw_dev identities held out for evaluation (seeded; never trained on)."),
    max_faces: int | None = typer.Option(None, "--max-faces", min=1, help="Use a seeded subset of this many training faces (smoke runs)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the held-out split, occlusions, batches and init."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (a GPU run is this one option away)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.0, help="Save and stop after this long (re-run to resume)."),
    stop_step: int | None = typer.Option(None, "--stop-step", min=1, help="End (and export) at this step of the --steps schedule: reproduces a run that was cut short."),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="Only build the chip cache."),
    arcface_weight: float = typer.Option(0.0, "--arcface-weight", min=0.0, help="Weight of an ArcFace term on identity labels (Yale B, lfw_dev), added to the distillation loss; 0 = distillation only."),
    arcface_scale: float = typer.Option(32.0, "--arcface-scale", min=1.0, help="ArcFace scale s."),
    arcface_margin: float = typer.Option(0.2, "--arcface-margin", min=0.0, help="ArcFace angular margin m (radians)."),
    mirror: float = typer.Option(0.0, "--mirror", min=0.0, max=1.0, help="Probability of mirroring each training chip (its target: the teacher's embedding of the mirrored clean chip)."),
    val_people: int = typer.Option(0, "--val-people", min=0, help="Leave this many seeded lfw_dev training people out and log rank-1 on them: choose recipes there, never on the held-out identities."),
) -> None:
    """Fine-tune dlib's ResNet for occluded faces by self-distillation; writes the shippable fp16 delta."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from occluface.train.distill import DistillConfig, export_delta, plot_log, prepare, train_distill

    cfg = DistillConfig(
        seed=seed, yaleb_holdout=yaleb_holdout, lfw_holdout=lfw_holdout, variants=variants, max_faces=max_faces,
        steps=steps, batch_size=batch_size, lr=lr, freeze_blocks=freeze_blocks, clean_fraction=clean_fraction,
        clean_weight=clean_weight, device=device, arcface_weight=arcface_weight, arcface_scale=arcface_scale,
        arcface_margin=arcface_margin, mirror=mirror, val_people=val_people,
    )
    try:
        manifest = prepare(data, out / "cache", cfg)
        console.print(f"cache: {manifest['n_faces']} training faces, held out: "
                      + ", ".join(f"{k} {len(v)}" for k, v in manifest["heldout"].items()), highlight=False)
        if prepare_only:
            return
        summary = train_distill(out / "cache", out, cfg, max_minutes=max_minutes, stop_step=stop_step)
        if summary["stopped_early"]:
            console.print(f"stopped at step {summary['steps_done']} of {cfg.steps}; re-run the same command to resume")
            return
        info = export_delta(out / "last.pt", out / "occluface_resnet.pt")
        plot_log(out / "log.jsonl", out / "curves.png")
    except OccluFaceError as exc:
        fail(str(exc))
    import json

    console.print(json.dumps(summary.get("final_val", {}) | summary.get("final_val_people", {}), indent=1), highlight=False)
    console.print(f"wrote {out / 'occluface_resnet.pt'} ({info['tensors']} tensors, {info['bytes'] / 2**20:.1f} MiB); "
                  "ship it as occluface/models/weights/occluface_resnet.pt", highlight=False)


@bench_app.command("accuracy")
def bench_accuracy_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder with yaleb/ and lfw_dev/ (or the bundled data/ with lfw/)."),
    models: str = typer.Option("dlib_resnet,occluface_resnet", "--models", help="Comma-separated models; the first is the baseline. name@file uses another fine-tuned delta file; 'routed' is the mask-routed matcher (dlib for bare faces, occluface_resnet + masked templates for masked ones)."),
    occlusion: str = typer.Option("plain,surgical,kn95,dust,lowlight", "--occlusion", help="Comma-separated occlusion kinds; clean probes are always measured."),
    yaleb_holdout: int = typer.Option(10, "--yaleb-holdout", min=0, help="Held-out Yale B identities (same seeded set as occluface finetune)."),
    lfw_holdout: int = typer.Option(300, "--lfw-holdout", min=0, help="Held-out LFW identities (same seeded set as occluface finetune)."),
    probes_per_identity: int = typer.Option(20, "--probes-per-identity", min=1, help="Yale B probes per identity (seeded sample)."),
    lfw_people: int | None = typer.Option(None, "--lfw-people", min=2, help="Score only the first N of the LFW people (quick runs)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the held-out split, probe sample and occlusions."),
    identities: str = typer.Option("heldout", "--identities", help="heldout (the test) or training: as many of the fine-tuning's own training people, a ceiling check that is never a result."),
    exact_dlib: bool = typer.Option(False, "--exact-dlib", help="Run dlib_resnet with dlib's own code (slow) instead of its exact PyTorch port."),
    flip: bool = typer.Option(False, "--flip", help="Test-time augmentation: average each chip's embedding with its mirror image's (every model; 2x the work)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    out: Path = typer.Option(Path("reports/accuracy"), "--out", help="Folder for report.md, metrics.json and the plots."),
    cache: Path | None = typer.Option(None, "--cache", help="Keep the probes' dlib chips here, so re-running with other models skips the occlusion + chip work."),
) -> None:
    """dlib baseline vs occluface models on held-out identities, clean and occluded: rank-1, AUC, TAR@FAR=1e-3."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from occluface.bench.accuracy import run_accuracy, write_report

    names = [m.strip() for m in models.split(",") if m.strip()]
    kinds = [k.strip() for k in occlusion.split(",") if k.strip()]
    try:
        result = run_accuracy(
            data, models=names, occlusions=kinds, yaleb_holdout=yaleb_holdout, lfw_holdout=lfw_holdout,
            probes_per_identity=probes_per_identity, lfw_people=lfw_people, seed=seed, exact_dlib=exact_dlib,
            device=device, cache=cache, identities=identities, flip=flip,
        )
        paths = write_report(result, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["md"], *paths.values())


@bench_app.command("openset")
def bench_openset_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder with lfw_dev/, yaleb/ and lfw_single/ (distractors)."),
    matchers: str = typer.Option("dlib_resnet,routed,sface,sface-erase", "--matchers", help="Comma-separated matchers, each run as the product runs it."),
    split: str = typer.Option("heldout", "--split", help="heldout (the test: held-out people, held-out mask styles) or tuning (people and styles that thresholds may be chosen on)."),
    styles: str = typer.Option("", "--styles", help="Comma-separated mask styles of that split (default: all of them)."),
    lfw_people: int = typer.Option(300, "--lfw-people", min=0, help="LFW people (held-out: the first N of the 300 held-out ones)."),
    yaleb_people: int = typer.Option(10, "--yaleb-people", min=0, help="Yale B people (held-out: at most 10)."),
    probes_per_person: int = typer.Option(8, "--probes-per-person", min=1, help="Probe photos per person (Yale B: seeded sample)."),
    gallery_sizes: str = typer.Option("100,1000,5000", "--gallery-sizes", help="Open-set gallery sizes (enrolled people + distractors)."),
    same_mask_people: int = typer.Option(100, "--same-mask-people", min=0, help="People in the same-mask impostor check."),
    erase_rows: str = typer.Option("", "--erase-rows", help="Tuning only: chip rows to try erasing from (e.g. 56,64,72)."),
    erase_from: int | None = typer.Option(None, "--calibrate-erase-from", help="Tuning only: calibrate sface-erase's masked path for this erase row (one of --erase-rows)."),
    write_thresholds: Path | None = typer.Option(None, "--write-thresholds", help="Tuning only: write the SFace matchers' calibrated thresholds (named wrong <= 0.1 % of probes) into this folder."),
    seed: int = typer.Option(0, "--seed", min=0),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (one per core)."),
    detector: str = typer.Option("auto", "--detector", help="Face detector (the service's default: auto)."),
    out: Path = typer.Option(Path("reports/openset"), "--out"),
    cache: Path | None = typer.Option(None, "--cache", help="Keep every photo's vectors here: a re-run only re-scores."),
) -> None:
    """Matchers side by side, open set: rank-1, named-right and NAMED-WRONG rates at 100/1,000/5,000-person
    galleries, per mask style, and the same-mask impostor check."""
    import json

    from occluface.bench.openset import calibrate, run_openset, write_report
    from occluface.recognition.thresholds import Thresholds, save_thresholds

    def ints(text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            fail(f"expected comma-separated whole numbers, got {text!r}")

    try:
        result = run_openset(
            data, matchers=[m.strip() for m in matchers.split(",") if m.strip()], split=split,
            styles=[x.strip() for x in styles.split(",") if x.strip()] or None, lfw_people=lfw_people,
            yaleb_people=yaleb_people, probes_per_person=probes_per_person, gallery_sizes=ints(gallery_sizes),
            same_mask_people=same_mask_people, erase_rows=ints(erase_rows), seed=seed, workers=workers, cache=cache,
            keep_raw=write_thresholds is not None, detector=detector,
        )
        if write_thresholds is not None:
            for model_id, th in calibrate(result, erase_from=erase_from).items():
                path = save_thresholds(Thresholds.from_dict(th), Path(write_thresholds) / f"{model_id}.json")
                console.print(f"{model_id}: threshold {th['identify']:.4f} -> {path}")
            result.pop("_raw", None)
        paths = write_report(result, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["md"], *paths.values())


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Checkpoint written by `occluface train` (e.g. runs/train/best.pt)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder the model was trained on (one sub-folder per identity)."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: <run folder>/report)."),
    split: str = typer.Option("test", "--split", help="test: the held-out images recorded in the checkpoint; all: every image in --data."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    impostors: float = typer.Option(1.0, "--impostors-per-genuine", min=0.0, help="Impostor pairs drawn per genuine pair (1 = balanced, as on LFW)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Image-decoding worker processes (0 = decode in this process)."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda (default: cuda when available)."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json to stdout instead of a summary."),
) -> None:
    """Closed-set accuracy/P/R/F1, pair verification (ROC, TAR@FAR, 10-fold accuracy) and rank-1 of a checkpoint."""
    import json

    from occluface.bench.report import SPLITS, evaluate_checkpoint

    if split not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    try:
        m = evaluate_checkpoint(
            checkpoint,
            data,
            out,
            split=split,
            batch_size=batch_size,
            progress=not as_json,
            negatives_per_positive=impostors,
            num_workers=workers,
            device=device,
        )
    except OccluFaceError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    from rich.table import Table

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    table = Table(title=f"{m['model']} on {m['split']} split: {m['n_images']} images, {m['n_identities']} identities")
    table.add_column("metric")
    table.add_column("value", justify="right")
    c, v, r = m["closed_set"], m["verification"], m["identification"]
    if c:
        table.add_row("closed-set accuracy", pct(c["accuracy"]))
        table.add_row("macro F1", pct(c["macro_f1"]))
    if v:
        acc = "n/a" if v["accuracy_mean"] is None else f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} %"
        table.add_row(f"verification accuracy ({v['n_pairs']} pairs)", acc)
        table.add_row("ROC AUC", f"{v['auc']:.4f}")
        for far, tar in v["tar_at_far"].items():
            table.add_row(f"TAR @ FAR={far}", pct(tar))
    if r:
        table.add_row(f"rank-1 ({r['n_probes']} probes)", pct(r["rank1"]))
        table.add_row("rank-5", pct(r["rank5"]))
    console.print(table)
    for note in m["notes"]:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    console.print(f"report: {m['report']}", highlight=False)


@app.command("compare")
def compare_command(
    runs: list[Path] = typer.Argument(..., help="Training run folders (each with log.jsonl) to compare."),
    out: Path = typer.Option(..., "--out", help="Folder for curves.png, comparison.md and comparison.json."),
    labels: list[str] = typer.Option(None, "--label", help="Legend name per run, in order (repeat once per run)."),
) -> None:
    """Training curves of several runs on one figure plus a final/best test accuracy table."""
    from occluface.bench.report import compare_runs

    try:
        result = compare_runs(runs, out, labels=labels or None)
    except OccluFaceError as exc:
        fail(str(exc))
    md = Path(result["out_dir"]) / "comparison.md"
    _show_report(md, md, Path(result["out_dir"]) / "comparison.json", Path(result["out_dir"]) / result["figure"])


@bench_app.command("rollcall")
def bench_rollcall_command(
    data: Path = typer.Option(Path("../shared/data/lfw_dev"), "--data", help="Folder with one sub-folder of photos per identity (LFW layout)."),
    roster_size: int = typer.Option(20, "--roster-size", min=2, help="Students on the class roster (seeded choice)."),
    faces_per_image: int = typer.Option(8, "--faces-per-image", min=1, help="Faces in each composed group photo (students + strangers)."),
    images: int = typer.Option(50, "--images", min=1, help="Group photos to compose (each scored clean and masked)."),
    strangers: int = typer.Option(2, "--strangers", min=0, help="Faces per photo of people not on the roster."),
    masked_fraction: float = typer.Option(0.5, "--masked-fraction", min=0.0, max=1.0, help="Share of faces masked in the masked copy of each photo."),
    mask_kind: str = typer.Option("surgical", "--mask-kind", help="Occlusion kind for masked faces (occluface.data.occlusion: surgical, mask, ...)."),
    embedder: str = typer.Option("dlib_resnet", "--embedder", help="Registered model that embeds the faces."),
    min_images: int = typer.Option(4, "--min-images", min=2, help="Only identities with at least this many photos."),
    enrol_images: int = typer.Option(3, "--enrol-images", min=1, help="Enrolment photos per student (their first ones; one is always held out)."),
    threshold: float = typer.Option(0.6, "--threshold", min=0.0, max=0.999, help="Confidence a face needs to be marked present (paper: 0.6)."),
    confidence: str = typer.Option("svm,softmax", "--confidence", help="Comma-separated confidence models: svm (calibrated), softmax."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for roster, photos, masks and layout."),
    out: Path = typer.Option(Path("reports/rollcall"), "--out", help="Folder for rollcall.md, rollcall.json and the PNGs."),
) -> None:
    """Classroom roll-call: ER/UR of greedy per-face argmax vs global one-to-one assignment, clean vs masked."""
    from occluface.bench.rollcall import run_rollcall_bench, write_report

    models = [c.strip().lower() for c in confidence.split(",") if c.strip()]
    if masked_fraction > 0:
        from occluface.data.occlusion import KINDS

        if mask_kind not in KINDS:
            fail(f"unknown --mask-kind {mask_kind!r}; known: {', '.join(KINDS)}")
    command = "occluface bench rollcall " + " ".join(sys.argv[sys.argv.index("rollcall") + 1 :]) if "rollcall" in sys.argv else None
    try:
        result = run_rollcall_bench(
            data, roster_size=roster_size, faces_per_image=faces_per_image, images=images, strangers=strangers,
            masked_fraction=masked_fraction, mask_kind=mask_kind, embedder=embedder, min_images=min_images,
            enrol_images=enrol_images, threshold=threshold, confidences=models, seed=seed,
        )
        paths = write_report(result, out, command=command)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["md"], *paths.values())


@app.command("synth")
def synth_command(
    src: Path | None = typer.Argument(None, help="Source folder, one sub-folder of images per identity (optional with --preview)."),
    dst: Path | None = typer.Argument(None, help="Output folder: same layout, plus synth.csv (optional with --preview)."),
    kind: str = typer.Option("mask", "--kind", "-k", help="surgical, kn95, cloth, texture, mask (random type), dust, lowlight, partial, mixed, or learned (trained mask warp; SRC may be one image; -p weights=, -p texture=)."),
    fraction: float = typer.Option(1.0, "--fraction", min=0.0, max=1.0, help="Share of images occluded (seeded choice); the rest are copied unchanged."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: same seed, same files chosen and identical occlusions."),
    textures: Path | None = typer.Option(None, "--textures", help="Folder of RGBA mask pictures for kind texture/mask (default: bundled data/mask_textures if present)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    drop_skipped: bool = typer.Option(False, "--drop-skipped", help="Leave images without a detectable face out of DST (default: copy them unchanged)."),
    param: list[str] = typer.Option(None, "--param", "-p", help="KEY=VALUE parameter of the kind, repeatable (e.g. -p intensity=0.5, -p color=white); unset ones are drawn from the seed."),
    preview: Path | None = typer.Option(None, "--preview", help="Instead: write the docs grid PNG (rows = faces from SRC or the bundled samples, columns = kinds)."),
) -> None:
    """Occlude a dataset with synthetic masks, coal dust, low light or partial occlusion (or draw the preview grid)."""
    if preview is not None:
        from occluface.data.occlusion.preview import render_preview

        try:
            with console.status("drawing preview grid"):
                path = render_preview(preview, seed=seed, src=src, textures=textures)
        except OccluFaceError as exc:
            fail(str(exc))
        console.print(f"wrote {path}", highlight=False)
        return
    if src is None or dst is None:
        fail("give SRC and DST folders (or --preview OUT.png)")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from occluface.data.occlusion.synth import synthesize

    params: dict = {"textures": str(textures)} if textures is not None and kind in ("texture", "mask", "mixed", "learned") else {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--param must look like KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            params[key.strip()] = value.strip()
    if kind == "learned":  # issue 7: masks warped by a trained generator (occluface.data.masksynth)
        from occluface.data.masksynth.apply import synthesize_learned as synthesize
    try:
        with Progress(TextColumn(f"synth {kind}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("synth", total=None)
            result = synthesize(
                src, dst, kind, fraction=fraction, seed=seed, workers=workers, drop_skipped=drop_skipped,
                progress=lambda done, total: bar.update(task, completed=done, total=total), **params,
            )
    except OccluFaceError as exc:
        fail(str(exc))
    for row in result["problems"]:
        console.print(f"[yellow]{row['status']}[/]: {row['file']}: {row['reason']}", highlight=False)
    console.print(
        f"{result['occluded']} occluded, {result['copied']} copied, {result['skipped']} skipped (no face), "
        f"{result['error']} unreadable of {result['total']}; wrote {result['csv']}",
        highlight=False,
    )


@bench_app.command("search")
def bench_search_command(
    sizes: str = typer.Option("10000,100000,1000000", "--sizes", help="Comma-separated gallery sizes (synthetic vectors)."),
    dim: int = typer.Option(128, "--dim", min=2, help="Embedding dimension (128: dlib baseline, 512: trained backbones)."),
    queries: int = typer.Option(1000, "--queries", min=1, help="Queries per size, timed one at a time."),
    k: int = typer.Option(5, "--k", min=1, help="Neighbours returned per query."),
    approx: str = typer.Option("ivf", "--approx", help="Approximate FAISS indexes to include: ivf, hnsw or ivf,hnsw (HNSW builds slowly at 1M)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads per query for numpy and FAISS (0 = library default). 1 is fastest for one-at-a-time queries on a busy 2-core machine: OpenMP spin-waits cost more than they gain."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the synthetic gallery and queries."),
    query_noise: float = typer.Option(1.0, "--query-noise", min=0.0, help="Noise norm added to each query's source row (1.0: cosine ~0.71, like an occluded face)."),
    out: Path = typer.Option(Path("reports/search"), "--out", help="Folder for search.md, search.json and search.png."),
) -> None:
    """Query latency (p50/p95/p99), build time, memory and recall@1 of exact numpy, FAISS flat and FAISS approximate search."""
    import shlex

    from occluface.bench.search import run_search_bench, write_report

    try:
        size_list = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    except ValueError:
        fail(f"--sizes must be comma-separated integers, got {sizes!r}")
    if not size_list or min(size_list) < 1:
        fail(f"--sizes needs at least one positive size, got {sizes!r}")
    kinds = [a.strip().lower() for a in approx.split(",") if a.strip()]
    if any(a not in ("ivf", "hnsw") for a in kinds):
        fail(f"--approx takes ivf and/or hnsw, got {approx!r}")
    result = run_search_bench(
        size_list, dim=dim, n_queries=queries, k=k, seed=seed, approx=kinds, threads=threads or None, query_noise=query_noise
    )
    command = (
        f"occluface bench search --sizes {','.join(map(str, size_list))} --dim {dim} --queries {queries} --k {k} "
        f"--approx {','.join(kinds)} --threads {threads} --seed {seed} --query-noise {query_noise:g} --out {shlex.quote(str(out))}"
    )
    paths = write_report(result, out, command=command)
    _show_report(paths["md"], paths["md"], paths["json"], paths["png"])


# ----------------------------------------------------------------------------- recognition (gallery)
GalleryOpt = typer.Option(None, "--gallery", "-g", help="Gallery file (default: under the user's data directory).",
                          envvar="OCCLUFACE_GALLERY")
def _default_model() -> str:
    from occluface.recognition.service import DEFAULT_MODEL

    return DEFAULT_MODEL


ModelOpt = typer.Option(_default_model(), "--model", "-m", help="Matcher or embedding model: sface / sface-erase (SFace matchers), routed (dlib for bare faces, occluface_resnet for masked ones), a registry name such as dlib_resnet, or a checkpoint .pt. A gallery keeps each model's enrolments apart.")
DetectorOpt = typer.Option("auto", "--detector", help="Face detector (see `occluface bench detect`): auto (default), fast (YuNet first: 4x quicker, worse landmarks on masked faces), centerface, yunet, ...")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _recognizer(gallery, model, detector):
    from occluface.gallery.store import open_gallery
    from occluface.recognition.service import Recognizer

    return Recognizer(open_gallery(gallery), model=model, detector=detector)


def _print_json(data) -> None:
    import json

    console.print_json(json.dumps(data, default=str))


def _expand_images(paths: list[Path]) -> list[Path]:
    from occluface.data.images import is_image_file

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and is_image_file(q)))
        else:
            out.append(p)
    return out


@app.command("enroll")
def enroll_command(
    name: str = typer.Argument(..., help="Person's name, or a folder-per-identity roster with --roster."),
    images: list[Path] = typer.Argument(None, help="Photos of the person (files or folders)."),
    roster: bool = typer.Option(False, "--roster", help="NAME is a folder with one sub-folder of photos per person."),
    gallery: Path = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Enrol a person (or a whole roster) from photos; all-or-nothing per person."""
    from rich.progress import track

    rec = _recognizer(gallery, model, detector)
    if roster:
        root = Path(name)
        if not root.is_dir():
            fail(f"{root}: roster folder not found")
        people = sorted(p for p in root.iterdir() if p.is_dir())
        if not people:
            fail(f"{root}: no person folders inside")
        jobs = [(p.name, _expand_images([p])) for p in people]
    else:
        if not images:
            fail("give at least one photo of the person (or use --roster FOLDER)")
        jobs = [(name, _expand_images(images))]
    results = []
    for person, files in track(jobs, description="enrolling", console=err_console, disable=len(jobs) < 2):
        results.append(rec.enroll(person, files))
    if as_json:
        _print_json(results)
        return
    from rich.table import Table

    table = Table(title=f"Enrolled into {rec.gallery.path}")
    for col in ("name", "images", "new"):
        table.add_column(col)
    for r in results:
        table.add_row(r["name"], str(r["images"]), "yes" if r["created"] else "added")
    console.print(table)


@app.command("identify")
def identify_command(
    image: Path = typer.Argument(..., help="Photo with one or more faces."),
    top: int = typer.Option(3, "--top", "-k", min=1, help="Candidates per face."),
    gallery: Path = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    annotate_out: Path = typer.Option(None, "--annotate", help="Also write the photo with boxes and names here."),
    as_json: bool = JsonOpt,
) -> None:
    """Who is in the photo: every face with its best matches, "unknown" below the calibrated threshold."""
    rec = _recognizer(gallery, model, detector)
    from occluface.recognition.service import read_image

    img = read_image(image)
    matches = rec.identify(image, k=top, image=img)
    if annotate_out:
        _write_annotated(img, matches, annotate_out)
    if as_json:
        _print_json({"image": str(image), "threshold": rec.thresholds.identify, "faces": [m.to_dict() for m in matches]})
        return
    _print_matches(str(image), matches, rec.thresholds.identify)


def _print_matches(title: str, matches, threshold: float) -> None:
    from rich.table import Table

    table = Table(title=f"{title}: {len(matches)} face(s), threshold {threshold:.3f}")
    for col in ("#", "box", "name", "similarity", "mask", "next best"):
        table.add_column(col)
    for i, m in enumerate(matches, 1):
        nxt = ", ".join(f"{n} {s:.2f}" for n, s in m.candidates[1:3])
        style = "green" if m.name else "red"
        mask = f"{m.mask['label']} {m.mask['prob']:.2f}" if m.mask else "-"
        table.add_row(str(i), " ".join(f"{v:.0f}" for v in m.box), f"[{style}]{m.label}[/]", f"{m.similarity:.3f}",
                      mask, nxt)
    console.print(table)


def _write_annotated(img, matches, out: Path) -> None:
    from PIL import Image

    from occluface.recognition.service import annotate

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(annotate(img, matches)).save(out)
    err_console.print(f"annotated image written to {out}")


@app.command("annotate")
def annotate_command(
    image: Path = typer.Argument(..., help="Photo to annotate."),
    out: Path = typer.Option(None, "--out", "-o", help="Output image (default: <image>.annotated.png)."),
    gallery: Path = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
) -> None:
    """Write the photo with a box and a name on every face."""
    from occluface.recognition.service import read_image

    rec = _recognizer(gallery, model, detector)
    img = read_image(image)
    matches = rec.identify(image, image=img)
    _write_annotated(img, matches, out or image.with_name(image.stem + ".annotated.png"))
    _print_matches(str(image), matches, rec.thresholds.identify)


@app.command("verify")
def verify_command(
    a: Path = typer.Argument(..., help="First photo."),
    b: Path = typer.Argument(..., help="Second photo."),
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    gallery: Path = GalleryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Are the main faces of two photos the same person? Exit status 0 = same, 1 = different."""
    rec = _recognizer(gallery, model, detector)
    v = rec.verify(a, b)
    if as_json:
        _print_json(v.to_dict())
    else:
        verdict = "[green]same person[/]" if v.same else "[red]different people[/]"
        console.print(f"{verdict}: similarity {v.similarity:.3f} (threshold {v.threshold:.3f}, {rec.model_id})")
    raise typer.Exit(0 if v.same else 1)


@app.command("rollcall")
def rollcall_command(
    image: Path = typer.Argument(..., help="Group photo."),
    roster: Path = typer.Option(None, "--roster", "-r", help="Roster: a text file of names (one per line) already "
                                "enrolled, or a folder-per-identity of photos to enrol first. Default: everyone enrolled."),
    method: str = typer.Option("global", "--method", help="global (one face per identity) or greedy."),
    confidence: str = typer.Option("softmax", "--confidence", help="softmax (similarities) or svm (calibrated SVM)."),
    threshold: float = typer.Option(0.6, "--threshold", help="Minimum confidence to mark a person present."),
    gallery: Path = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Roll-call: who of the roster is present in a group photo, who is absent, who needs a look."""
    rec = _recognizer(gallery, model, detector)
    names = None
    if roster is not None:
        if roster.is_dir():
            names = []
            for person in sorted(p for p in roster.iterdir() if p.is_dir()):
                if person.name not in rec.gallery:
                    rec.enroll(person.name, _expand_images([person]))
                names.append(person.name)
        elif roster.is_file():
            names = [ln.strip() for ln in roster.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        else:
            fail(f"{roster}: roster not found")
    result = rec.rollcall(image, names, method=method, confidence=confidence, threshold=threshold)
    if as_json:
        _print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"Roll-call {image} ({method}, threshold {threshold})")
    for col in ("face", "box", "identity", "confidence", "status"):
        table.add_column(col)
    for f in result["faces"]:
        box = " ".join(f"{v:.0f}" for v in (f.get("box") or []))
        table.add_row(str(f["index"] + 1), box, f["identity"] or f"({f['candidate']}?)", f"{f['confidence']:.2f}", f["status"])
    console.print(table)
    console.print(f"[green]present[/]: {', '.join(result['present']) or '-'}")
    console.print(f"[red]absent[/]: {', '.join(result['absent']) or '-'}")
    console.print(f"[yellow]unresolved[/]: {', '.join(result['unresolved']) or '-'}")


gallery_app = typer.Typer(help="Inspect and edit the enrolment gallery.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")


@gallery_app.command("list")
def gallery_list_command(gallery: Path = GalleryOpt, as_json: bool = JsonOpt) -> None:
    """Everyone enrolled, with embeddings per model."""
    from occluface.gallery.store import open_gallery

    store = open_gallery(gallery)
    subjects = store.list_subjects()
    if as_json:
        _print_json([{"name": s.name, "embeddings": s.embeddings, "created": s.created} for s in subjects])
        return
    from rich.table import Table

    table = Table(title=f"{store.path}: {len(subjects)} subject(s)")
    for col in ("name", "embeddings", "enrolled"):
        table.add_column(col)
    for s in subjects:
        table.add_row(s.name, ", ".join(f"{m}: {n}" for m, n in s.embeddings.items()), s.created)
    console.print(table)


@gallery_app.command("remove")
def gallery_remove_command(
    names: list[str] = typer.Argument(..., help="Names to delete with every trace of their data."),
    gallery: Path = GalleryOpt,
) -> None:
    """Delete people and all their data (embeddings, thumbnails) from the gallery."""
    from occluface.gallery.store import UnknownSubjectError, open_gallery

    store = open_gallery(gallery)
    unknown = [n for n in names if n not in store]
    if unknown:
        raise UnknownSubjectError(", ".join(unknown), str(store.path))
    for n in names:
        store.remove_subject(n, strict=True)
        console.print(f"removed {n}")


@app.command("calibrate")
def calibrate_command(
    data: Path = typer.Option(..., "--data", help="Folder with one sub-folder of photos per person."),
    model: str = typer.Option("dlib_resnet", "--model", "-m", help="Embedding model: registry name or checkpoint .pt (the routed matcher: calibrate-routed)."),
    detector: str = DetectorOpt,
    target_far: float = typer.Option(1e-3, "--target-far", help="False-accept rate the threshold is chosen for."),
    max_identities: int = typer.Option(None, "--max-identities", help="Use a seeded subset of people."),
    save_default: bool = typer.Option(False, "--save-default", help="Write the calibration shipped with the package."),
    out: Path = typer.Option(None, "--out", help="Write the thresholds here instead of the user calibration."),
    exclude_heldout: bool = typer.Option(False, "--exclude-heldout", help="Leave out the identities the model's weights file keeps for evaluation (occluface_resnet)."),
    as_json: bool = JsonOpt,
) -> None:
    """Pick the similarity threshold from labelled photos and report its FAR/FRR there."""
    from occluface.bench.calibration import (
        calibrate_folder, save_thresholds, shipped_thresholds_path, user_thresholds_path,
    )

    if model == "routed":
        fail("the routed matcher has two thresholds, one per path: use `occluface calibrate-routed`")
    from occluface.recognition.matchers import is_matcher

    if is_matcher(model):
        fail(f"the {model} matcher is calibrated with masked impostors for the gate operating point: use "
             "`occluface bench openset --split tuning --write-thresholds DIR` (docs/results/openset-tuning/CHOICE.md)")
    exclude: set[str] = set()
    if exclude_heldout:
        if model != "occluface_resnet":
            fail(f"--exclude-heldout: {model} records no held-out identities (only occluface_resnet does)")
        from occluface.models.dlib_finetuned import weights_meta

        exclude = {name for names in weights_meta()["heldout"].values() for name in names}
    th, skipped = calibrate_folder(data, model=model, detector=detector, target_far=target_far,
                                   max_identities=max_identities, exclude=exclude)
    path = out or (shipped_thresholds_path(model) if save_default else user_thresholds_path(model))
    save_thresholds(th, path)
    if as_json:
        _print_json({**th.to_dict(), "path": str(path), "skipped": len(skipped)})
        return
    console.print(
        f"{model}: threshold {th.verify:.4f} at target FAR {th.target_far:g} -> FAR {th.far:.4%}, FRR {th.frr:.2%} "
        f"on {th.n_images} images of {th.n_identities} people ({th.n_genuine} genuine / {th.n_impostor} impostor "
        f"pairs; {len(skipped)} images skipped)\nsaved to {path}"
    )


@app.command("calibrate-routed")
def calibrate_routed_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Shared data folder (its lfw_dev/ is used)."),
    people: int = typer.Option(300, "--people", min=10, help="lfw_dev people outside the held-out ones (seeded)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the people sample and the synthetic masks."),
    target_far: float = typer.Option(1e-3, "--target-far", help="False-accept rate both thresholds are chosen for."),
    save_default: bool = typer.Option(False, "--save-default", help="Write the calibration shipped with the package."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    as_json: bool = JsonOpt,
) -> None:
    """Thresholds of the mask-routed matcher (`--model routed`), one per path, on training identities."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from occluface.bench.calibration import save_thresholds, shipped_thresholds_path, user_thresholds_path
    from occluface.bench.routing_calibration import calibrate_routed

    try:
        pair = calibrate_routed(data, people=people, seed=seed, target_far=target_far)
    except OccluFaceError as exc:
        fail(str(exc))
    rows = []
    for th in pair:
        path = shipped_thresholds_path(th.model_id) if save_default else user_thresholds_path(th.model_id)
        save_thresholds(th, path)
        rows.append({**th.to_dict(), "path": str(path)})
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        console.print(f"{r['model_id']}: threshold {r['verify']:.4f} at target FAR {r['target_far']:g} -> FAR {r['far']:.4%}, "
                      f"FRR {r['frr']:.2%} ({r['n_genuine']} genuine / {r['n_impostor']} impostor scores; {r['data']})\n"
                      f"saved to {r['path']}")


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    gallery: Path = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    keys_file: Path = typer.Option(None, "--keys", help="API keys file (hashes) made by `occluface apikey`.",
                                   envvar="OCCLUFACE_KEYS"),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest accepted photo."),
) -> None:
    """REST API + web page (OpenAPI docs at /docs). Enrol/delete need an API key (X-API-Key header)."""
    import os

    import uvicorn

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore

    keys = KeyStore.load(keys_file, [os.environ.get("OCCLUFACE_API_KEY", "")])
    if not keys:
        err_console.print("[yellow]no API keys configured: enrolment and deletion are disabled[/]")
    settings = ApiSettings(gallery=gallery, model=model, detector=detector, keys=keys,
                           max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command("apikey")
def apikey_command(
    name: str = typer.Argument(..., help="A label for the key (who or what uses it)."),
    keys_file: Path = typer.Option(..., "--keys", help="Keys file to add the key's hash to.", envvar="OCCLUFACE_KEYS"),
) -> None:
    """Create an API key: prints it once; only its SHA-256 is stored."""
    from occluface.api.keys import KeyStore

    key = KeyStore.load(keys_file).add(name)
    console.print(f"API key for {name} (shown once, stored hashed in {keys_file}):\n{key}")


@app.command("align")
def align_command(
    src: Path = typer.Argument(..., help="Dataset folder: one sub-folder of images per identity."),
    dst: Path = typer.Argument(..., help="Output folder: same layout, one aligned PNG per image, plus skipped.csv."),
    detector: str = typer.Option("auto", "--detector", "-d", help="Face detector: auto, centerface, mtcnn, cnn, hog, ..."),
    size: int = typer.Option(112, "--size", min=16, help="Side of the square aligned face (the ArcFace template is scaled)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Parallel worker processes."),
    retry_skipped: bool = typer.Option(False, "--retry-skipped", help="Try again the images listed in DST/skipped.csv."),
) -> None:
    """Detect and align every face image of a folder-per-identity dataset (resumable; skips are listed)."""
    from occluface.faces.align_folder import SKIPPED_CSV, align_folder

    try:
        summary = align_folder(src, dst, detector=detector, size=size, workers=workers, retry_skipped=retry_skipped)
    except OccluFaceError as exc:
        fail(str(exc))
    console.print(
        f"{summary.total} images: {summary.aligned} aligned, {summary.existing} already done, "
        f"{len(summary.skipped)} skipped (listed in {dst / SKIPPED_CSV})",
        highlight=False,
    )


@bench_app.command("detect")
def bench_detect_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Shared data folder (yaleb/, mask_cls/, rwmfd_masked/)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images per subset (default: 200 Yale B, 150 per mask_cls class, 150 RWMFD)."),
    detectors: str = typer.Option("hog,cnn,centerface,mtcnn,auto", "--detectors", help="Comma-separated detector names."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the image samples and synthetic masks."),
    out: Path = typer.Option(Path("reports/detection"), "--out", help="Folder for detection.md, detection.json, detection.png."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Parallel single-threaded worker processes."),
) -> None:
    """Detection rate of each face detector on clean, synthetically masked and real masked faces."""
    from occluface.bench.detection import run_detection_benchmark

    names = [d.strip().lower() for d in detectors.split(",") if d.strip()]
    if not names:
        fail("--detectors is empty")
    try:
        run_detection_benchmark(
            data, out, names,
            n_yaleb=min(200, limit or 200), n_mask_cls=min(150, limit or 150), n_rwmfd=min(150, limit or 150), seed=seed,
            workers=workers,
        )
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(out / "detection.md", out / "detection.md", out / "detection.json", out / "detection.png")


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Where the demo writes its gallery and images."),
    train: bool = typer.Option(False, "--train", help="Run the training demo (plain vs CBAM ResNet) instead."),
    epochs: int = typer.Option(6, "--epochs", help="Epochs of the training demo."),
) -> None:
    """The main job on the bundled sample data (what `make demo` runs)."""
    from rich.table import Table

    if train:
        from occluface.cli.demo import run_training_demo

        results = run_training_demo(out / "training", epochs=epochs)
        table = Table(title="Training demo: bundled Yale B sample, split by image")
        for col in ("model", "test accuracy", "report"):
            table.add_column(col)
        for model, r in results.items():
            acc = r["metrics"].get("closed_set", {}).get("accuracy")
            table.add_row(model, "n/a" if acc is None else f"{acc:.1%}", str(Path(r["run"]) / "report" / "report.md"))
        console.print(table)
        console.print(f"curves of both models: {out / 'training' / 'comparison' / 'curves.png'}")
        return

    from occluface.cli.demo import run_recognition_demo

    with console.status("enrolling the bundled roster and identifying its probes..."):
        res = run_recognition_demo(out)
    label = {"routed": "routed matcher", "dlib_resnet": "dlib baseline", "sface": "SFace matcher",
             "sface-erase": "SFace matcher, masked faces erased below the eyes"}.get(res.get("model", ""), res.get("model", ""))
    table = Table(title=f"Identification of held-out photos ({label}, threshold {res['threshold']:.3f})")
    for col in ("person", "clean probe", "sim", "surgical mask", "sim"):
        table.add_column(col)
    for r in res["rows"]:
        cells = [r["person"]]
        for cond in ("clean", "masked"):
            c = r[cond]
            if c is None:
                cells += ["(not masked: no landmarks)", ""]
            else:
                style = "green" if c["name"] == r["person"] else "red"
                cells += [f"[{style}]{c['name']}[/]", f"{c['similarity']:.2f}"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"correctly named (above the threshold): clean {res['correct']['clean']}/{res['probes']}, "
        f"masked {res['correct']['masked']}/{res['masked_probes']}; named as someone else: clean "
        f"{res['wrong']['clean']}, masked {res['wrong']['masked']}"
    )
    roll = res["rollcall"]
    console.print(
        f"roll-call on a composed group photo of {len(res['group_truth'])} people (every other one masked): "
        f"{len(roll['faces'])} faces found; [green]present[/] {len(roll['present'])}: {', '.join(roll['present']) or '-'}; "
        f"[red]absent[/] {len(roll['absent'])}: {', '.join(roll['absent']) or '-'}; "
        f"[yellow]to check[/]: {', '.join(roll['unresolved']) or '-'}"
    )
    console.print(f"real photo data/samples/fr_two_people_obama_biden.jpg: {', '.join(res['real_photo'])}")
    console.print("annotated images: " + ", ".join(res["files"]))


@app.command("export")
def export_command(
    out: Path = typer.Option(..., "--out", help="Path of the .onnx file to write."),
    model: str = typer.Option("dlib_resnet_torch", "--model", help="Registry model to export (see `occluface models`)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Export the backbone of this training checkpoint instead of --model."),
    batch: str = typer.Option("dynamic", "--batch", help="'dynamic' (free batch axis) or a fixed batch size."),
    opset: int = typer.Option(17, "--opset", min=7, help="ONNX opset version."),
) -> None:
    """Export a backbone to ONNX and check it against PyTorch with ONNX Runtime (max abs difference)."""
    from occluface.export import export_onnx

    try:
        with console.status(f"exporting {checkpoint or model} to {out} ..."):
            res = export_onnx(out, model, checkpoint=checkpoint, batch=batch, opset=opset)
    except OccluFaceError as exc:
        fail(str(exc))
    console.print(
        f"wrote {res.path} ({res.size_bytes / 2**20:.1f} MiB, input {res.input_shape}, opset {res.opset}); "
        f"ONNX Runtime vs PyTorch on a batch of {res.check_batch}: max abs diff {res.max_abs_diff:.2e}, "
        f"min cosine {res.min_cosine:.6f}",
        highlight=False,
    )


@bench_app.command("speed")
def bench_speed_command(
    faces: int = typer.Option(64, "--faces", min=1, help="Number of face chips each backend embeds per timed pass."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for every backend (torch, ONNX Runtime, BLAS)."),
    batch: int = typer.Option(32, "--batch", min=1, help="Batch size of the batched backends."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed passes per backend (the median is reported)."),
    backends: str | None = typer.Option(None, "--backends", help="Comma-separated backend ids (default: dlib-single, dlib-batch, port-eager, port-fast, port-onnx, plus port-compile with --compile and CUDA ones when a GPU is present)."),
    model: list[str] = typer.Option([], "--model", help="Also time this registry model (untrained weights; repeatable)."),
    checkpoint: list[Path] = typer.Option([], "--checkpoint", help="Also time this fine-tuned checkpoint (repeatable)."),
    use_compile: bool = typer.Option(False, "--compile/--no-compile", help="Add torch.compile to the default backends (its compile takes minutes on 2 cores and did not beat eager here)."),
    data: Path | None = typer.Option(None, "--data", help="Folder with samples/, lfw/, yaleb/ images to take the face chips from (default: the bundled data/)."),
    out: Path = typer.Option(Path("reports/speed"), "--out", help="Folder for speed.md, speed.json and speed.png."),
) -> None:
    """Faces/s and peak memory: dlib vs the PyTorch port (eager, channels-last, compile, ONNX Runtime, CUDA)."""
    from occluface.bench.speed import default_backends, run_speed, write_report

    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else default_backends(compile=use_compile)
    names += [f"model:{m}" for m in model] + [f"checkpoint:{c.resolve()}" for c in checkpoint]
    missing = [str(c) for c in checkpoint if not c.is_file()]
    if missing:
        fail(f"checkpoint file(s) not found: {', '.join(missing)}")
    try:
        result = run_speed(
            faces=faces, threads=threads, batch=batch, repeats=repeats, backends=names,
            **({"data_dir": data} if data is not None else {}),
            progress=lambda b: console.print(f"timing {b} ...", highlight=False),
        )
        paths = write_report(result, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["markdown"], paths["markdown"], paths["json"], paths["plot"])


@bench_app.command("papers")
def bench_papers_command(
    data: Path = typer.Option(Path("../shared/data/yaleb"), "--data", help="Dataset folder, one sub-folder of face crops per identity (Yale B layout)."),
    scale: str = typer.Option("smoke", "--scale", help="smoke: from scratch, few people, small inputs, minutes on one CPU core; real: the papers' networks and settings (for a GPU)."),
    experiments: str = typer.Option("coal,mask", "--experiments", help="Comma-separated: coal (ResNet vs CBAM ResNet on dust), mask (IResNet-50 vs ResSaNet-50, masked vs unmasked)."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Training iterations per model (overrides the scale preset)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Train for this many epochs instead of --iterations."),
    input_size: int | None = typer.Option(None, "--input-size", min=16, help="Square input side in pixels (overrides the preset)."),
    max_identities: int | None = typer.Option(None, "--max-identities", min=2, help="Use only the first N identities (sorted)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=2, help="Images per iteration."),
    eval_every: int | None = typer.Option(None, "--eval-every", min=1, help="Iterations between held-out evaluations (curve points)."),
    lr: float | None = typer.Option(None, "--lr", help="Initial SGD learning rate for both experiments (default: the preset's)."),
    margin_scale: float | None = typer.Option(None, "--margin-scale", help="ArcFace scale s of the mask experiment (default 64)."),
    margin: float | None = typer.Option(None, "--margin", help="ArcFace margin m of the mask experiment (default 0.5)."),
    coal_models: str | None = typer.Option(None, "--coal-models", help="Two comma-separated registry names (default smoke: resnet18,cbam_resnet18; real: resnet50,cbam_resnet50)."),
    mask_models: str | None = typer.Option(None, "--mask-models", help="Two comma-separated registry names (default: iresnet50,ressanet50)."),
    coal_occlusion: str | None = typer.Option(None, "--coal-occlusion", help="Occlusion kinds applied in turn for the coal-mine scene, e.g. dust or dust,lowlight (default: dust)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for occlusions, split, initialisation and data order."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Data-loading worker processes."),
    work: Path = typer.Option(Path("runs/papers"), "--work", help="Folder for the occlusion caches and training runs (a rerun resumes them)."),
    out: Path = typer.Option(Path("reports/papers"), "--out", help="Folder for papers.md, papers.json and the PNG figures."),
) -> None:
    """The papers' comparisons re-run here: coal-mine ResNet vs CBAM ResNet on dust, IResNet-50 vs ResSaNet-50 on masks."""
    import shlex

    if threads:
        import torch

        torch.set_num_threads(threads)
    from occluface.bench.papers import run_papers, write_report

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    overrides = {
        "iterations": iterations, "epochs": epochs, "input_size": input_size, "max_identities": max_identities,
        "batch_size": batch_size, "eval_every": eval_every, "lr": lr, "margin_scale": margin_scale,
        "margin": margin, "coal_models": names(coal_models),
        "mask_models": names(mask_models), "coal_occlusion": names(coal_occlusion),
    }
    parts = ["occluface", "bench", "papers", "--scale", scale, "--data", str(data)]
    if experiments != "coal,mask":
        parts += ["--experiments", experiments]
    for opt, value in overrides.items():
        if value is not None:
            parts += [f"--{opt.replace('_', '-')}", ",".join(value) if isinstance(value, list) else str(value)]
    parts += ["--seed", str(seed)] + (["--device", device] if device else [])
    parts += (["--threads", str(threads)] if threads else []) + ["--work", str(work), "--out", str(out)]
    try:
        result = run_papers(
            data, work, scale=scale.lower(), experiments=names(experiments) or [], seed=seed, device=device,
            num_workers=workers, progress=True, log=lambda m: console.print(m, highlight=False), **overrides,
        )
        paths = write_report(result, out, command=shlex.join(parts))
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(paths["md"], paths["md"], paths["json"], *paths["figures"])


# ----------------------------------------------------------------------------- mask classifier (issue 6)


@app.command("mask-check")
def mask_check_command(
    image: Path = typer.Argument(..., help="Photo to check: every face in it is classified."),
    cam: Path | None = typer.Option(None, "--cam", help="Write the photo with each face's box, label and Grad-CAM heat map (PNG)."),
    weights: Path | None = typer.Option(None, "--weights", help="Mask-classifier weights (default: the shipped ones)."),
    detector: str = typer.Option("auto", "--detector", "-d", help="Face detector: auto, centerface, mtcnn, cnn, hog, ..."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Is each face in IMAGE wearing a mask? Label, probability and (with --cam) where the model looked."""
    import json

    from occluface.maskcheck.predict import mask_check

    if not image.is_file():
        fail(f"{image}: no such image file")
    try:
        results, annotated = mask_check(image, weights=weights, detector=detector, cam=cam is not None)
    except OccluFaceError as exc:
        fail(str(exc))
    if cam is not None and annotated is not None:
        from PIL import Image

        cam.parent.mkdir(parents=True, exist_ok=True)
        try:
            Image.fromarray(annotated).save(cam, format="PNG")
        except OSError as exc:
            fail(f"{cam}: cannot write the heat-map image ({exc})")
    if as_json:
        console.print_json(json.dumps({"image": str(image), "faces": results, "cam": str(cam) if cam else None}))
        return
    if not results:
        console.print(f"{image}: no face found", highlight=False)
    for i, r in enumerate(results, 1):
        box = ", ".join(f"{v:.0f}" for v in r["box"])
        console.print(f"face {i} [{box}]: [bold]{r['label']}[/] {r['prob']:.3f}", highlight=False)
    if cam is not None:
        console.print(f"heat map: {cam}", highlight=False)


@app.command("train-maskcls")
def train_maskcls_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Shared data folder (mask_cls/, rwmfd_masked/, lfw_dev/)."),
    out: Path = typer.Option(Path("runs/maskcls2/run"), "--out", help="Run folder: config.json, log.jsonl, best.pt, weights.pt, report/."),
    cache: Path = typer.Option(Path("runs/maskcls2/data.npz"), "--cache", help="Cropped-face cache (built on first use)."),
    classes: int = typer.Option(2, "--classes", min=2, max=3, help="2: unmasked/masked; 3: none/correct/incorrect."),
    width: int = typer.Option(16, "--width", min=4, help="ResNet-18 base width (64 = standard)."),
    input_size: int = typer.Option(112, "--input-size", min=32, help="Side of the aligned face crop fed to the network."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="SGD learning rate (paper: 1e-3)."),
    momentum: float = typer.Option(0.9, "--momentum"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or constant (the paper's)."),
    augment: str = typer.Option("basic", "--augment", help="basic (mirror, shift, brightness) or strong (+ scale/rotation, blur, low resolution, colour swaps)."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", min=0.0, max=0.5, help="Cross-entropy label smoothing."),
    balance: bool = typer.Option(True, "--balance/--no-balance", help="Weight the loss by inverse class frequency."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split, synthetic masks and training."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: torch's default)."),
    max_unmasked: int = typer.Option(0, "--max-unmasked", min=0, help="Unmasked mask_cls photos used (each may get synthetic masks); 0: all."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5, help="Share of the non-test faces used for validation (epoch choice)."),
    synth_fraction: float = typer.Option(0.5, "--synth-fraction", min=0.0, max=1.0, help="Share of unmasked faces given synthetic masks."),
    lfw: int = typer.Option(150, "--lfw", min=0, help="lfw_dev photos kept as a never-seen unmasked set."),
    lfw_train: int = typer.Option(0, "--lfw-train", min=0,
                                  help="Further lfw_dev people (one photo each, plus a synthetic correct and incorrect mask) "
                                       "added to the training split only."),
    yaleb_train: int = typer.Option(0, "--yaleb-train", min=0,
                                    help="Photos per Yale B training person (bare faces in harsh light, plus synthetic "
                                         "masks) added to the training split only; never the held-out Yale B people."),
    ship: Path | None = typer.Option(None, "--ship", help="Also copy the fp16 best weights here (e.g. occluface/models/weights/...)."),
    test_report: bool = typer.Option(True, "--test-report/--no-test-report",
                                     help="Score the held-out test split at the end (off while comparing recipes: choose on validation only)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Choose the masked-logit bias on validation and store it in weights.pt."),
) -> None:
    """Train the mask classifier (grouped seeded 9:1 split; epoch and masked-logit bias chosen on validation) and
    report on the test split."""
    import shutil

    from occluface.maskcheck.calibrate import calibrate_weights
    from occluface.maskcheck.data import build_dataset
    from occluface.bench.maskcheck import evaluate
    from occluface.maskcheck.model import load_weights
    from occluface.train.maskcheck import MaskTrainConfig, train

    cfg = MaskTrainConfig(classes=classes, width=width, input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                          weight_decay=weight_decay, schedule=schedule, augment=augment, label_smoothing=label_smoothing, balance=balance,
                          seed=seed, threads=threads)
    try:
        ds = build_dataset(data, cache, seed=seed, max_unmasked=max_unmasked or None, val_fraction=val_fraction,
                           synth_fraction=synth_fraction, lfw=lfw, lfw_train=lfw_train, yaleb_train=yaleb_train)
        summary = train(ds, out, cfg)
        chosen = calibrate_weights(out / "weights.pt", ds) if calibrate else None
        if test_report:
            evaluate(load_weights(out / "weights.pt"), ds, out / "report")
    except OccluFaceError as exc:
        fail(str(exc))
    if chosen is not None:
        _print_mask_bias(chosen)
    if ship is not None:
        ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "weights.pt", ship)
    if test_report:
        console.print((out / "report" / "report.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"best epoch {summary['best_epoch']} (val macro F1 {summary['best_val_macro_f1']:.4f}); "
                  f"weights {out / 'weights.pt'}" + (f", shipped to {ship}" if ship else ""), highlight=False)


def _print_mask_bias(chosen: dict) -> None:
    before, after = chosen["val_errors_before"], chosen["val_errors_after"]
    console.print(f"masked-logit bias {chosen['bias']:+.3f} (best range {chosen['best_range'][0]:+.2f} .. "
                  f"{chosen['best_range'][1]:+.2f}) chosen on {chosen['val_faces']} validation faces: macro F1 "
                  f"{chosen['val_macro_f1_before']:.4f} -> {chosen['val_macro_f1_after']:.4f}; masked called unmasked "
                  f"{before['false_unmasked']} -> {after['false_unmasked']}, unmasked called masked "
                  f"{before['false_masked']} -> {after['false_masked']}", highlight=False)


# The crop cache a trained mask classifier is scored or calibrated on: every option must match its training run.
MaskDataOpt = typer.Option(Path("../shared/data"), "--data", help="Shared data folder.")
MaskCacheOpt = typer.Option(Path("runs/maskcls2/data.npz"), "--cache", help="Cropped-face cache (built on first use).")
MaskSeedOpt = typer.Option(0, "--seed", min=0, help="Seed of the split (must match the one trained with).")
MaskMaxUnmaskedOpt = typer.Option(0, "--max-unmasked", min=0, help="Unmasked mask_cls photos used (as trained with); 0: all.")
MaskValFractionOpt = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5, help="Validation share (as trained with).")
MaskLfwTrainOpt = typer.Option(0, "--lfw-train", min=0, help="Extra lfw_dev training people (as trained with).")
MaskYalebTrainOpt = typer.Option(0, "--yaleb-train", min=0, help="Yale B training photos per person (as trained with).")


@app.command("calibrate-maskcls")
def calibrate_maskcls_command(
    weights: Path = typer.Option(..., "--weights", help="Mask-classifier weight file to calibrate (rewritten unless --out)."),
    out: Path | None = typer.Option(None, "--out", help="Write the calibrated weights here instead."),
    data: Path = MaskDataOpt,
    cache: Path = MaskCacheOpt,
    seed: int = MaskSeedOpt,
    max_unmasked: int = MaskMaxUnmaskedOpt,
    val_fraction: float = MaskValFractionOpt,
    lfw_train: int = MaskLfwTrainOpt,
    yaleb_train: int = MaskYalebTrainOpt,
) -> None:
    """Choose a trained mask classifier's masked-logit bias on the validation split (never the test split)."""
    from occluface.maskcheck.calibrate import calibrate_weights
    from occluface.maskcheck.data import build_dataset
    from occluface.maskcheck.model import load_weights

    try:
        load_weights(weights)  # a bad file fails before the (possibly long) crop cache is built
        ds = build_dataset(data, cache, seed=seed, max_unmasked=max_unmasked or None, val_fraction=val_fraction,
                           lfw_train=lfw_train, yaleb_train=yaleb_train)
        chosen = calibrate_weights(weights, ds, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _print_mask_bias(chosen)
    console.print(f"wrote {out or weights}", highlight=False)


@bench_app.command("maskcls")
def bench_maskcls_command(
    weights: Path | None = typer.Option(None, "--weights", help="Weights to score (default: the shipped ones)."),
    data: Path = MaskDataOpt,
    cache: Path = MaskCacheOpt,
    seed: int = MaskSeedOpt,
    max_unmasked: int = MaskMaxUnmaskedOpt,
    val_fraction: float = MaskValFractionOpt,
    lfw_train: int = MaskLfwTrainOpt,
    yaleb_train: int = MaskYalebTrainOpt,
    out: Path = typer.Option(Path("reports/maskcls"), "--out", help="Folder for report.md, metrics.json, confusion PNGs."),
) -> None:
    """Confusion matrix, precision/recall/F1/accuracy on the held-out split and accuracy on never-seen sets."""
    from occluface.maskcheck.data import build_dataset
    from occluface.bench.maskcheck import evaluate
    from occluface.maskcheck.model import load_weights

    try:
        with console.status("building / loading the cropped-face cache..."):
            ds = build_dataset(data, cache, seed=seed, max_unmasked=max_unmasked or None, val_fraction=val_fraction,
                               lfw_train=lfw_train, yaleb_train=yaleb_train, progress=False)
        evaluate(load_weights(weights), ds, out)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(out / "report.md", out / "report.md", out / "metrics.json", out / "confusion.png")


@bench_app.command("maskcls-checks")
def bench_maskcls_checks_command(
    weights: list[Path] = typer.Option(None, "--weights", help="Weight files to check (repeatable; default: the shipped classifier and the routing classifier)."),
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Shared data folder (its yaleb/ for the harsh-light check; skipped when missing)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    out: Path = typer.Option(Path("reports/maskcls-checks"), "--out", help="Folder for report.md and metrics.json."),
) -> None:
    """Grad-CAM share on synthetic masks (bundled faces) and bare harsh-light Yale B faces called masked."""
    import json

    if threads:
        import torch

        torch.set_num_threads(threads)
    from occluface.recognition.routed import ROUTING_CLASSIFIER
    from occluface.bench.maskcheck_checks import gradcam_on_mask, harsh_light, render
    from occluface.maskcheck.data import yaleb_training_people
    from occluface.maskcheck.model import DEFAULT_WEIGHTS, load_weights

    rows = []
    try:
        for w in weights or [DEFAULT_WEIGHTS, ROUTING_CLASSIFIER]:
            model = load_weights(w)
            row = {"weights": Path(w).name, "gradcam": gradcam_on_mask(model)}
            if (data / "yaleb").is_dir() and yaleb_training_people(data)[1]:  # else: no Yale B people to check
                row["harsh_light"] = harsh_light(model, data)
            rows.append(row)
        out.mkdir(parents=True, exist_ok=True)
    except (OccluFaceError, OSError) as exc:
        fail(str(exc))
    (out / "metrics.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "report.md").write_text(render(rows))
    _show_report(out / "report.md", out / "report.md", out / "metrics.json")


# ----------------------------------------------------------------------------- reliability (issue 9)


@bench_app.command("fuzz")
def bench_fuzz_command(
    target: list[str] = typer.Option(["decode", "api"], "--target", "-t",
                                     help="decode (load_rgb on bytes) and/or api (uploads via TestClient)."),
    engine: str = typer.Option("atheris", "--engine", help="atheris (coverage-guided) or random (seeded mutations)."),
    runs: int = typer.Option(None, "--runs", min=1, help="Stop after this many inputs per target."),
    seconds: float = typer.Option(None, "--seconds", min=1, help="Stop after this many seconds per target."),
    detector: str = DetectorOpt,
    seed: int = typer.Option(0, "--seed", help="Fuzzer seed."),
    instrument: bool = typer.Option(True, "--instrument/--no-instrument",
                                    help="atheris: coverage-instrument Pillow and the API stack (slower start)."),
    out: Path = typer.Option(Path("reports/fuzz"), "--out", help="Report folder (fuzz.md, fuzz.json, crash inputs)."),
) -> None:
    """Fuzz image decoding and the API upload path for a bounded time; exit 1 if anything crashed."""
    import shlex

    from occluface.bench.fuzz import run_fuzz, write_report

    if runs is None and seconds is None:
        fail("give a bound: --runs N and/or --seconds S")
    results = []
    try:
        for t in target:
            console.print(f"fuzzing {t} with {engine} ...", highlight=False)
            r = run_fuzz(t, engine=engine, runs=runs, seconds=seconds, artifacts=out, seed=seed, detector=detector,
                         instrument=instrument)
            parts = ["occluface", "bench", "fuzz", *[a for x in target for a in ("-t", x)], "--engine", engine,
                     "--detector", detector, "--seed", str(seed), "--out", str(out)]
            parts += [] if instrument else ["--no-instrument"]
            parts += (["--runs", str(runs)] if runs else []) + (["--seconds", f"{seconds:g}"] if seconds else [])
            r.command = " ".join(shlex.quote(p) for p in parts)
            results.append(r)
            console.print(f"{t}: {r.inputs} inputs in {r.seconds} s, {len(r.crashes)} crash(es); {r.outcomes}",
                          highlight=False)
    except OccluFaceError as exc:
        fail(str(exc))
    md, js = write_report(results, out)
    console.print(f"wrote {md}, {js}", highlight=False)
    if any(r.crashes for r in results):
        for r in results:
            for c in r.crashes:
                err_console.print(f"[bold red]crash[/] in {r.target}: input {c['input'] or '-'}\n{c['error']}",
                                  highlight=False, markup=False)
        raise typer.Exit(1)


@bench_app.command("load")
def bench_load_command(
    requests: int = typer.Option(200, "--requests", "-n", min=1, help="Identify requests to send."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Requests in flight at once."),
    seconds: float = typer.Option(None, "--seconds", min=1, help="Also stop after this many seconds."),
    detector: str = DetectorOpt,
    model: str = ModelOpt,
    image: Path = typer.Option(None, "--image", help="Probe photo (default: the Obama + Biden sample)."),
    out: Path = typer.Option(Path("reports/load"), "--out", help="Report folder (load.md, load.json)."),
) -> None:
    """Start `occluface serve` on 127.0.0.1, enrol two people, fire concurrent identify requests, report."""
    import shlex

    from occluface.bench.loadtest import run_load, write_report

    try:
        result = run_load(requests=requests, seconds=seconds, concurrency=concurrency, detector=detector,
                          model=model, image=image)
    except OccluFaceError as exc:
        fail(str(exc))
    parts = ["occluface", "bench", "load", "-n", str(requests), "-c", str(concurrency), "--detector", detector,
             "--model", model, "--out", str(out)]
    parts += (["--seconds", f"{seconds:g}"] if seconds else []) + (["--image", str(image)] if image else [])
    result.command = " ".join(shlex.quote(p) for p in parts)
    md, js = write_report(result, out)
    _show_report(md, md, js)
    if result.errors or not result.health_after_ok:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- learned mask synthesis (issue 7)


@app.command("train-masksynth")
def train_masksynth_command(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder (mask_cls/, rwmfd_masked/, lfw_dev/, mask_textures/; the bundled data/ works too)."),
    cache: Path = typer.Option(Path("runs/masksynth/data.npz"), "--cache", help="144x144 face-crop cache (built on first use)."),
    out: Path = typer.Option(Path("runs/masksynth/wgan-div"), "--out", help="Run folder: config.json, log.jsonl, last.pt (resume), generator.pt."),
    loss: str = typer.Option("wgan-div", "--loss", help="gan, dcgan, wgan (weight clipping) or wgan-div (Wasserstein divergence)."),
    pyconv: bool = typer.Option(True, "--pyconv/--no-pyconv", help="Pyramid convolutions in the generator (the paper's Py-) or plain 3x3."),
    width: int = typer.Option(64, "--width", min=4, help="Generator base width (64 = full size; 16 for CPU smoke runs)."),
    gen_size: int = typer.Option(144, "--gen-size", min=32, help="Side the generator looks at (144 = the paper)."),
    critic_width: int = typer.Option(64, "--critic-width", min=1, help="Critic base width."),
    steps: int = typer.Option(2, "--steps", min=1, help="Iterative refinement steps (p <- p o dp)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    iters: int = typer.Option(20000, "--iters", min=1, help="Generator updates in total (a resumed run continues to this count)."),
    n_critic: int = typer.Option(0, "--n-critic", min=0, help="Critic updates per generator update (0: 5 for WGAN losses, 1 otherwise)."),
    lr: float = typer.Option(0.0, "--lr", min=0.0, help="Learning rate (0: 2e-4 Adam; 5e-5 RMSprop for wgan)."),
    k: float = typer.Option(2.0, "--k", help="WGAN-div k."),
    p: float = typer.Option(6.0, "--p", help="WGAN-div p."),
    clip: float = typer.Option(0.01, "--clip", help="WGAN weight-clipping bound."),
    init_jitter: float = typer.Option(0.12, "--init-jitter", min=0.0, help="Size of the random initial warp the generator must correct."),
    update_penalty: float = typer.Option(1.0, "--update-penalty", min=0.0, help="Weight of the penalty on the squared warp updates (ST-GAN)."),
    drawn_masks: int = typer.Option(12, "--drawn-masks", min=0, help="Masks drawn by the occlusion pipeline, added to the mask pictures."),
    textures: Path | None = typer.Option(None, "--textures", help="RGBA mask pictures (default: DATA/mask_textures)."),
    lfw: int = typer.Option(600, "--lfw", min=0, help="lfw_dev photos cropped as unmasked faces."),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: torch's default)."),
    max_minutes: float = typer.Option(0.0, "--max-minutes", min=0.0, help="Stop (and checkpoint) after this much wall time (0: no limit)."),
    max_cpu_minutes: float = typer.Option(0.0, "--max-cpu-minutes", min=0.0, help="Stop after this much CPU time of this process (0: no limit)."),
    ship: Path | None = typer.Option(None, "--ship", help="Also copy generator.pt (fp16) here, e.g. occluface/models/weights/masksynth_pywgandiv.pt."),
) -> None:
    """Train the mask-warping generator (Py-WGAN-div or a baseline loss); resumes from OUT/last.pt."""
    import shutil

    from occluface.data.masksynth.data import build_cache, mask_pictures
    from occluface.train.masksynth import MaskSynthConfig, train

    cfg = MaskSynthConfig(loss=loss, pyconv=pyconv, width=width, gen_size=gen_size, critic_width=critic_width, steps=steps,
                          batch_size=batch_size, iters=iters, n_critic=n_critic or None, lr=lr or None, k=k, p=p, clip=clip,
                          init_jitter=init_jitter, update_penalty=update_penalty, drawn_masks=drawn_masks, seed=seed, device=device, threads=threads,
                          max_minutes=max_minutes or None, max_cpu_minutes=max_cpu_minutes or None)
    try:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        with console.status("building / loading the 144x144 face-crop cache..."):
            ds = build_cache(data, cache, seed=seed, lfw=lfw, progress=False)
        pics, _ = mask_pictures(textures if textures is not None else data / "mask_textures", drawn_masks, seed)
        summary = train(ds, pics, out, cfg)
    except OccluFaceError as exc:
        fail(str(exc))
    if ship is not None:
        ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "generator.pt", ship)
    console.print(f"{summary['label']}: {summary['iterations']} steps"
                  + (" (stopped by the time limit; run again to continue)" if summary["stopped_by_time"] else "")
                  + f"; generator {out / 'generator.pt'}" + (f", shipped to {ship}" if ship else ""), highlight=False)


@app.command("synth-eval")
def synth_eval_command(
    checkpoints: list[Path] = typer.Option(..., "--checkpoints", "-c", help="Generator files or run folders (a folder of run folders works), repeatable."),
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder (as for train-masksynth)."),
    cache: Path = typer.Option(Path("runs/masksynth/data.npz"), "--cache", help="Face-crop cache (held-out split is scored)."),
    out: Path = typer.Option(Path("reports/masksynth"), "--out", help="Folder for report.md, metrics.json, grid.png."),
    textures: Path | None = typer.Option(None, "--textures", help="RGBA mask pictures put on the faces (default: DATA/mask_textures)."),
    max_faces: int = typer.Option(200, "--max-faces", min=1, help="Held-out unmasked faces scored."),
    max_refs: int = typer.Option(300, "--max-refs", min=2, help="Held-out real masked faces used as references."),
    rows: int = typer.Option(6, "--rows", min=1, help="Faces in the grid (half frontal, half the most turned)."),
    lfw: int = typer.Option(600, "--lfw", min=0, help="lfw_dev photos cropped (must match the cache)."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Landmark overlay vs learned mask warps: SSIM, placement IoU, backbone stand-ins for LPIPS/IS, grid PNG."""
    from occluface.data.masksynth.data import build_cache
    from occluface.bench.masksynth import evaluate

    try:
        with console.status("building / loading the 144x144 face-crop cache..."):
            ds = build_cache(data, cache, seed=seed, lfw=lfw, progress=False)
        evaluate(ds, checkpoints, out, textures=textures if textures is not None else data / "mask_textures",
                 max_faces=max_faces, max_refs=max_refs, rows=rows, seed=seed)
    except OccluFaceError as exc:
        fail(str(exc))
    _show_report(out / "report.md", out / "report.md", out / "metrics.json", out / "grid.png")


def main() -> None:
    """Console-script entry: turn occluface errors into one line and exit status 2."""
    try:
        app()
    except OccluFaceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
