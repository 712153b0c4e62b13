"""The researcher's evaluation and data commands: evaluate, compare, synth, calibrate, calibrate-routed, export,
synth-eval (the training commands are in :mod:`occluface.cli.training`).

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from occluface.cli.common import DetectorOpt, JsonOpt, app, console, data_option, fail, print_json, set_threads, show_report


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

    result = compare_runs(runs, out, labels=labels or None)
    done = Path(result["out_dir"])
    show_report([done / "comparison.md", done / "comparison.json", done / result["figure"]])


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

        with console.status("drawing preview grid"):
            path = render_preview(preview, seed=seed, src=src, textures=textures)
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
    with Progress(TextColumn(f"synth {kind}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("synth", total=None)
        result = synthesize(
            src, dst, kind, fraction=fraction, seed=seed, workers=workers, drop_skipped=drop_skipped,
            progress=lambda done, total: bar.update(task, completed=done, total=total), **params,
        )
    for row in result["problems"]:
        console.print(f"[yellow]{row['status']}[/]: {row['file']}: {row['reason']}", highlight=False)
    console.print(
        f"{result['occluded']} occluded, {result['copied']} copied, {result['skipped']} skipped (no face), "
        f"{result['error']} unreadable of {result['total']}; wrote {result['csv']}",
        highlight=False,
    )


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
        print_json({**th.to_dict(), "path": str(path), "skipped": len(skipped)})
        return
    console.print(
        f"{model}: threshold {th.verify:.4f} at target FAR {th.target_far:g} -> FAR {th.far:.4%}, FRR {th.frr:.2%} "
        f"on {th.n_images} images of {th.n_identities} people ({th.n_genuine} genuine / {th.n_impostor} impostor "
        f"pairs; {len(skipped)} images skipped)\nsaved to {path}"
    )


@app.command("calibrate-routed")
def calibrate_routed_command(
    data: Path = data_option("Shared data folder: its lfw_dev/ is used"),
    people: int = typer.Option(300, "--people", min=10, help="lfw_dev people outside the held-out ones (seeded)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the people sample and the synthetic masks."),
    target_far: float = typer.Option(1e-3, "--target-far", help="False-accept rate both thresholds are chosen for."),
    save_default: bool = typer.Option(False, "--save-default", help="Write the calibration shipped with the package."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    as_json: bool = JsonOpt,
) -> None:
    """Thresholds of the mask-routed matcher (`--model routed`), one per path, on training identities."""
    set_threads(threads)
    from occluface.bench.calibration import save_thresholds, shipped_thresholds_path, user_thresholds_path
    from occluface.bench.routing_calibration import calibrate_routed

    pair = calibrate_routed(data, people=people, seed=seed, target_far=target_far)
    rows = []
    for th in pair:
        path = shipped_thresholds_path(th.model_id) if save_default else user_thresholds_path(th.model_id)
        save_thresholds(th, path)
        rows.append({**th.to_dict(), "path": str(path)})
    if as_json:
        print_json(rows)
        return
    for r in rows:
        console.print(f"{r['model_id']}: threshold {r['verify']:.4f} at target FAR {r['target_far']:g} -> FAR {r['far']:.4%}, "
                      f"FRR {r['frr']:.2%} ({r['n_genuine']} genuine / {r['n_impostor']} impostor scores; {r['data']})\n"
                      f"saved to {r['path']}")


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

    with console.status(f"exporting {checkpoint or model} to {out} ..."):
        res = export_onnx(out, model, checkpoint=checkpoint, batch=batch, opset=opset)
    console.print(
        f"wrote {res.path} ({res.size_bytes / 2**20:.1f} MiB, input {res.input_shape}, opset {res.opset}); "
        f"ONNX Runtime vs PyTorch on a batch of {res.check_batch}: max abs diff {res.max_abs_diff:.2e}, "
        f"min cosine {res.min_cosine:.6f}",
        highlight=False,
    )


@app.command("synth-eval")
def synth_eval_command(
    checkpoints: list[Path] = typer.Option(..., "--checkpoints", "-c", help="Generator files or run folders (a folder of run folders works), repeatable."),
    data: Path = data_option("Data folder, as for train-masksynth"),
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

    with console.status("building / loading the 144x144 face-crop cache..."):
        ds = build_cache(data, cache, seed=seed, lfw=lfw, progress=False)
    evaluate(ds, checkpoints, out, textures=textures if textures is not None else data / "mask_textures",
             max_faces=max_faces, max_refs=max_refs, rows=rows, seed=seed)
    show_report([out / "report.md", out / "metrics.json", out / "grid.png"])
