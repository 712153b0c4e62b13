"""The researcher's training commands: train, finetune, train-maskcls, calibrate-maskcls, train-masksynth.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from occluface.cli.common import (
    MaskSplit, mask_split_options,
    app, console, data_option, int_list, set_threads,
)


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

    set_threads(threads)

    from occluface.models.config import TrainConfig
    from occluface.train.trainer import train

    steps_at = int_list(milestones, f"--milestones must be comma-separated epoch numbers, got {milestones!r}") if milestones else None
    config = TrainConfig(
        milestones=steps_at, model=model, data=str(data), out=str(out), epochs=epochs, batch_size=batch_size, lr=lr, loss=loss.lower(),
        s=margin_scale, m=margin, schedule=schedule.lower(), step_size=step_size, split_by=split_by.lower(),
        test_fraction=test_fraction, seed=seed, input_size=input_size or None, embedding_size=embedding_size,
        dropout=dropout, weight_decay=weight_decay, l1=l1, max_steps=max_steps, eval_every=eval_every,
        log_every=log_every, augment=not no_augment, num_workers=workers, amp=not no_amp,
    )
    summary = train(config.validate(), progress=True)
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


@app.command("finetune")
def finetune_command(
    data: Path = data_option("Data folder with yaleb/, lfw_dev/ and mask_cls/: the shared data"),
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
    set_threads(threads)
    from occluface.train.distill import DistillConfig, export_delta, plot_log, prepare, train_distill

    cfg = DistillConfig(
        seed=seed, yaleb_holdout=yaleb_holdout, lfw_holdout=lfw_holdout, variants=variants, max_faces=max_faces,
        steps=steps, batch_size=batch_size, lr=lr, freeze_blocks=freeze_blocks, clean_fraction=clean_fraction,
        clean_weight=clean_weight, device=device, arcface_weight=arcface_weight, arcface_scale=arcface_scale,
        arcface_margin=arcface_margin, mirror=mirror, val_people=val_people,
    )
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
    import json

    console.print(json.dumps(summary.get("final_val", {}) | summary.get("final_val_people", {}), indent=1), highlight=False)
    console.print(f"wrote {out / 'occluface_resnet.pt'} ({info['tensors']} tensors, {info['bytes'] / 2**20:.1f} MiB); "
                  "ship it as occluface/models/weights/occluface_resnet.pt", highlight=False)


@app.command("train-maskcls")
def train_maskcls_command(
    data: Path = data_option("Shared data folder with mask_cls/, rwmfd_masked/, lfw_dev/"),
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
    ds = build_dataset(data, cache, seed=seed, max_unmasked=max_unmasked or None, val_fraction=val_fraction,
                       synth_fraction=synth_fraction, lfw=lfw, lfw_train=lfw_train, yaleb_train=yaleb_train)
    summary = train(ds, out, cfg)
    chosen = calibrate_weights(out / "weights.pt", ds) if calibrate else None
    if test_report:
        evaluate(load_weights(out / "weights.pt"), ds, out / "report")
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


@app.command("calibrate-maskcls")
@mask_split_options
def calibrate_maskcls_command(
    split: MaskSplit,
    weights: Path = typer.Option(..., "--weights", help="Mask-classifier weight file to calibrate (rewritten unless --out)."),
    out: Path | None = typer.Option(None, "--out", help="Write the calibrated weights here instead."),
) -> None:
    """Choose a trained mask classifier's masked-logit bias on the validation split (never the test split)."""
    from occluface.maskcheck.calibrate import calibrate_weights
    from occluface.maskcheck.model import load_weights

    load_weights(weights)  # a bad file fails before the (possibly long) crop cache is built
    ds = split.build()
    chosen = calibrate_weights(weights, ds, out)
    _print_mask_bias(chosen)
    console.print(f"wrote {out or weights}", highlight=False)


@app.command("train-masksynth")
def train_masksynth_command(
    data: Path = data_option("Data folder with mask_cls/, rwmfd_masked/, lfw_dev/, mask_textures/; the bundled data/ works too"),
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
    set_threads(threads)
    with console.status("building / loading the 144x144 face-crop cache..."):
        ds = build_cache(data, cache, seed=seed, lfw=lfw, progress=False)
    pics, _ = mask_pictures(textures if textures is not None else data / "mask_textures", drawn_masks, seed)
    summary = train(ds, pics, out, cfg)
    if ship is not None:
        ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "generator.pt", ship)
    console.print(f"{summary['label']}: {summary['iterations']} steps"
                  + (" (stopped by the time limit; run again to continue)" if summary["stopped_by_time"] else "")
                  + f"; generator {out / 'generator.pt'}" + (f", shipped to {ship}" if ship else ""), highlight=False)
