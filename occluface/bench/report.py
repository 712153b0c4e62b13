"""Evaluation reports for trained checkpoints and side-by-side comparisons of training runs.

``evaluate_checkpoint`` measures one model three ways, because each answers a different deployment question:
closed-set accuracy of the classifier head (the coal-mine and mask papers' metric: "is this one of our
workers, and which?"), pair verification on embeddings (LFW protocol: "are these two photos the same
person?") and rank-1 gallery identification on embeddings (roll-call: "who is this, given one enrolment photo
each?"). ``compare_runs`` draws several runs' training curves on one figure with a summary table, as in the
coal-mine paper's ResNet vs improved-ResNet comparison.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occluface.progress import progress_bar
from occluface.errors import DatasetError, OccluFaceError
from occluface.bench.metrics import (
    MetricsError,
    closed_set_metrics,
    make_pairs,
    pair_scores,
    rank1_identification,
    verification_metrics,
)

SPLITS = ("test", "all")

__all__ = ["SPLITS", "evaluate_checkpoint", "compare_runs", "run_summary", "select_samples"]


# ----------------------------------------------------------------------------- helpers


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and Paths to plain JSON types; NaN/inf become None (JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(value: float | None, pct: bool = True, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.{digits}f} %" if pct else f"{value:.4f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def select_samples(loaded: Any, data_dir: str | Path, split: str) -> tuple[list[Any], str]:
    """The images to evaluate and a sentence describing them for the report.

    ``split="test"`` takes the held-out images the checkpoint recorded (relative paths under ``data_dir``), so
    evaluation never touches training images; old checkpoints without a recorded split get it recomputed from
    their config (same seed, same function). ``split="all"`` takes every image in ``data_dir``.
    """
    from occluface.data.folder import scan_folder, split_samples

    if split not in SPLITS:
        raise OccluFaceError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data_dir = Path(data_dir)
    samples = scan_folder(data_dir)
    if split == "all":
        return samples, f"all images under `{data_dir}` (training images included)"
    cfg = loaded.config
    recorded = [str(p).replace("\\", "/") for p in (loaded.split or {}).get("test", [])]
    how = f"split_by={cfg.split_by}, test_fraction={cfg.test_fraction}, seed={cfg.seed}"
    if recorded:
        by_rel = {s.path.relative_to(data_dir).as_posix(): s for s in samples}
        chosen = [by_rel[r] for r in recorded if r in by_rel]
        missing = [r for r in recorded if r not in by_rel]
        if not chosen:
            raise DatasetError(
                f"{data_dir}: none of the checkpoint's {len(recorded)} test images are in this folder "
                f"(first expected: {recorded[0]}); pass the --data folder the model was trained on, or --split all"
            )
        text = f"held-out test split recorded in the checkpoint ({how})"
        if missing:
            text += f"; {len(missing)} of its {len(recorded)} images are missing from `{data_dir}` and were skipped"
        return sorted(chosen), text
    if not cfg.test_fraction:
        raise DatasetError(
            f"{loaded.path}: the model was trained with test_fraction=0, so it has no held-out images; "
            "use --split all (and keep in mind the numbers then include training images)"
        )
    _, test = split_samples(samples, by=cfg.split_by, test_fraction=cfg.test_fraction, seed=cfg.seed)
    return sorted(test), f"test split recomputed from the checkpoint's config ({how}); no split was recorded"


def embed_samples(
    loaded: Any, samples: list[Any], *, batch_size: int, progress: bool, device: Any, num_workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised embeddings and classifier logits for every sample, in order."""
    import torch
    from torch.utils.data import DataLoader

    from occluface.data.augment import build_transform
    from occluface.data.folder import FaceFolderDataset

    size = getattr(loaded, "input_size", None) or loaded.config.input_size
    known = list(loaded.classes)
    extra = sorted({s.label for s in samples} - set(known))
    # Identities the head never saw get indices past its classes; only embeddings are used for them.
    dataset = FaceFolderDataset(samples, known + extra, build_transform(size, train=False))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    embs, logits = [], []
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task(f"embedding {len(samples)} images", total=len(samples))
        with torch.inference_mode():
            for images, _ in loader:
                images = images.to(device)
                emb = loaded.backbone(images)
                logits.append(loaded.head.predict_logits(emb).float().cpu())
                embs.append(torch.nn.functional.normalize(emb.float(), dim=1).cpu())
                bar.advance(task, images.shape[0])
    return torch.cat(embs).numpy(), torch.cat(logits).numpy()


def _rel(path: Path, root: str | Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _write_csv(path: Path, header: Sequence[str], rows: Any) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


# ----------------------------------------------------------------------------- evaluate


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
    negatives_per_positive: float | None = 1,
    gallery_per_identity: int = 1,
    device: str | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data_dir`` and write ``report.md``, ``metrics.json``, CSVs and PNGs.

    ``out_dir`` defaults to ``<run folder>/report``. Verification pairs are every genuine pair plus
    ``negatives_per_positive`` impostors per genuine pair (None = every impostor pair, which TAR at low FAR
    needs). ``device`` defaults to CUDA when available; ``num_workers`` decodes images in parallel
    (0 = in this process, right for small sets and shared CPUs). Returns the metrics written to ``metrics.json`` plus ``report`` and ``out_dir`` paths.
    """
    import torch
    import torch.nn.functional as F

    from occluface.bench.curves import plot_training_curves
    from occluface.bench.plots import plot_confusion_matrix, plot_roc, plot_score_histogram
    from occluface.models.checkpoint import load_model

    checkpoint = Path(checkpoint)
    if batch_size < 1:
        raise OccluFaceError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise OccluFaceError(f"num_workers must be >= 0, got {num_workers}")
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise OccluFaceError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OccluFaceError(f"device {device!r} asked for, but no CUDA GPU is available here")
    loaded = load_model(checkpoint, map_location=dev)
    run_dir = checkpoint.parent
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)

    samples, split_text = select_samples(loaded, data_dir, split)
    labels = np.asarray([s.label for s in samples])
    emb, logits = embed_samples(
        loaded, samples, batch_size=batch_size, progress=progress, device=dev, num_workers=num_workers
    )
    notes: list[str] = []
    cfg = loaded.config
    model_name = cfg.model
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": model_name,
        "loss_head": cfg.loss,
        "data_dir": str(data_dir),
        "split": split,
        "split_description": split_text,
        "n_images": len(samples),
        "n_identities": int(np.unique(labels).size),
        "embedding_size": int(emb.shape[1]),
        "training_metrics": dict(loaded.metrics or {}),  # what the trainer recorded when it saved this file
    }
    figures: dict[str, str] = {}

    # --- closed set: the classifier head, on images whose identity it was trained on
    class_idx = {c: i for i, c in enumerate(loaded.classes)}
    known = np.asarray([lab in class_idx for lab in labels], dtype=bool)
    metrics["n_images_known_identity"] = int(known.sum())
    closed = None
    if known.any():
        y_true = np.asarray([class_idx[lab] for lab in labels[known]], dtype=np.int64)
        k_logits = logits[known][:, : len(loaded.classes)]
        loss = float(F.cross_entropy(torch.from_numpy(k_logits), torch.from_numpy(y_true)).item())
        closed = closed_set_metrics(y_true, k_logits.argmax(axis=1), loaded.classes, loss=loss)
        cm_path = out / "confusion_matrix.png"
        plot_confusion_matrix(
            closed["confusion_matrix"], closed["confusion_labels"], cm_path, title=f"Confusion matrix: {model_name}"
        )
        figures["confusion_matrix"] = cm_path.name
        _write_csv(
            out / "confusion_matrix.csv",
            ["true \\ predicted", *closed["confusion_labels"]],
            ([name, *row] for name, row in zip(closed["confusion_labels"], closed["confusion_matrix"].tolist(), strict=True)),
        )
        if not known.all():
            notes.append(
                f"{int((~known).sum())} images show identities the classifier was not trained on; "
                "they are left out of the closed-set metrics but used for verification and identification"
            )
    else:
        notes.append(
            "closed-set metrics skipped: none of the evaluated identities is among the classifier's classes "
            "(an identity split holds out whole people; use verification and identification instead)"
        )

    # --- verification: cosine similarity of embedding pairs
    verif = None
    i, j, same = make_pairs(labels, max_negative_per_positive=negatives_per_positive, seed=cfg.seed)
    if same.any() and (~same).any():
        scores = pair_scores(emb, i, j)
        verif = verification_metrics(scores, same, seed=cfg.seed)
        notes.extend(verif["notes"])
        if any(t is None for t in verif["tar_at_far"].values()) and negatives_per_positive is not None:
            notes.append(
                "for TAR at low FAR draw more impostor pairs (`--impostors-per-genuine 100`, or evaluate more images)"
            )
        roc_path = out / "roc.png"
        plot_roc(
            {model_name: (verif["roc_fpr"], verif["roc_tpr"], verif["auc"])},
            roc_path,
            title=f"Verification ROC: {model_name} ({verif['n_genuine']} genuine / {verif['n_impostor']} impostor pairs)",
        )
        figures["roc"] = roc_path.name
        hist_path = out / "scores.png"
        plot_score_histogram(scores, same, hist_path, threshold=verif["threshold_mean"], title=f"Pair similarity: {model_name}")
        figures["scores"] = hist_path.name
        _write_csv(
            out / "roc.csv",
            ["fpr", "tpr", "threshold"],
            zip(verif["roc_fpr"].tolist(), verif["roc_tpr"].tolist(), verif["roc_thresholds"].tolist(), strict=True),
        )
        _write_csv(
            out / "pairs.csv",
            ["image_a", "image_b", "same", "cosine"],
            (
                (_rel(samples[a].path, data_dir), _rel(samples[b].path, data_dir), int(s), f"{c:.6f}")
                for a, b, s, c in zip(i, j, same, scores, strict=True)
            ),
        )
    else:
        notes.append(
            f"verification skipped: {int(same.sum())} genuine and {int((~same).sum())} impostor pairs "
            "(needs identities with two or more images, and at least two identities)"
        )

    # --- identification: enrol the first k images of each identity, identify the rest
    ident = None
    try:
        ident = rank1_identification(emb, labels, gallery_per_identity=gallery_per_identity, seed=cfg.seed)
        if ident["rank5"] is None:
            notes.append(f"rank-5 not reported: only {ident['n_gallery_identities']} gallery identities (needs more than 5)")
    except MetricsError as exc:
        notes.append(f"identification skipped: {exc}")

    # --- training curves from the run folder
    log = run_dir / "log.jsonl"
    if log.is_file():
        try:
            curves_path = plot_training_curves({model_name: log}, out / "curves.png", title=f"Training curves: {model_name}")
            figures["curves"] = curves_path.name
        except OccluFaceError as exc:
            notes.append(f"training curves skipped: {exc}")
    else:
        notes.append(f"no training log at {log}, so no training curves")

    if closed is not None:
        metrics["closed_set"] = {k: v for k, v in closed.items() if k not in ("confusion_matrix", "classification_report")}
    else:
        metrics["closed_set"] = None
    if verif is not None:
        metrics["verification"] = {k: v for k, v in verif.items() if not k.startswith("roc_")}
    else:
        metrics["verification"] = None
    metrics["identification"] = ident
    metrics["figures"] = figures
    metrics["notes"] = notes
    metrics = to_jsonable(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    report = out / "report.md"
    report.write_text(_report_md(metrics, closed), encoding="utf-8")
    metrics["report"] = str(report)
    metrics["out_dir"] = str(out)
    return metrics


def _report_md(m: dict[str, Any], closed: dict[str, Any] | None) -> str:
    """The human-readable report: what was evaluated, then one section per metric family."""
    fig = m["figures"]
    lines = [
        f"# Evaluation: {m['model']}",
        "",
        f"- Checkpoint: `{m['checkpoint']}`",
        f"- Data: `{m['data_dir']}`",
        f"- Split evaluated: **{m['split']}**: {m['split_description']}",
        f"- Images: {m['n_images']}, identities: {m['n_identities']} "
        f"({m['n_images_known_identity']} images of identities the classifier was trained on)",
        f"- Embeddings: {m['embedding_size']}-d, compared by cosine similarity; training loss head: {m['loss_head']}",
        "",
        "## Closed-set identification (classifier head)",
        "",
    ]
    c = m["closed_set"]
    if c is None:
        lines.append("Not measured (see notes).")
    else:
        rows = [
            ("accuracy", _fmt(c["accuracy"])),
            ("macro precision", _fmt(c["macro_precision"])),
            ("macro recall", _fmt(c["macro_recall"])),
            ("macro F1", _fmt(c["macro_f1"])),
            ("weighted F1", _fmt(c["weighted_f1"])),
            ("cross-entropy loss (head logits, no margin)", f"{c['loss']:.4f}" if c.get("loss") is not None else "n/a"),
            ("images / classes scored", f"{c['n_samples']} / {c['n_classes_scored']}"),
        ]
        lines += [_md_table(["metric", "value"], rows), ""]
        if "confusion_matrix" in fig:
            lines += [f"![confusion matrix]({fig['confusion_matrix']})", ""]
        if closed is not None and c["n_classes_scored"] <= 50:
            lines += ["Per class (scikit-learn `classification_report`):", "", "```", closed["classification_report"].rstrip(), "```"]
        else:
            lines.append("Per-class precision/recall/F1: see `metrics.json` (`closed_set.per_class`).")
    lines += ["", "## Verification (pairs of embeddings)", ""]
    v = m["verification"]
    if v is None:
        lines.append("Not measured (see notes).")
    else:
        acc = (
            f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} % ({v['n_folds']}-fold, threshold chosen on the other folds)"
            if v["accuracy_mean"] is not None
            else "n/a"
        )
        rows = [
            ("pairs (genuine / impostor)", f"{v['n_pairs']} ({v['n_genuine']} / {v['n_impostor']})"),
            ("accuracy", acc),
            ("mean threshold (cosine)", f"{v['threshold_mean']:.4f}" if v["threshold_mean"] is not None else "n/a"),
            ("ROC AUC", f"{v['auc']:.4f}"),
            ("EER", _fmt(v["eer"])),
        ]
        for far, tar in v["tar_at_far"].items():
            rows.append(
                (f"TAR @ FAR={far}", _fmt(tar) if tar is not None else f"n/a (only {v['n_impostor']} impostor pairs)")
            )
        lines += [_md_table(["metric", "value"], rows), ""]
        for key, alt in (("roc", "ROC"), ("scores", "score histogram")):
            if key in fig:
                lines += [f"![{alt}]({fig[key]})", ""]
    lines += ["## Identification (gallery / probe, rank-k)", ""]
    ident = m["identification"]
    if ident is None:
        lines.append("Not measured (see notes).")
    else:
        rows = [
            ("gallery images per identity", f"first {ident['gallery_per_identity']} in path order"),
            ("gallery images / identities", f"{ident['n_gallery']} / {ident['n_gallery_identities']}"),
            ("probe images", ident["n_probes"]),
            ("rank-1", _fmt(ident["rank1"])),
            ("rank-5", _fmt(ident["rank5"])),
        ]
        lines.append(_md_table(["metric", "value"], rows))
    if "curves" in fig:
        lines += ["", "## Training curves", "", f"![training curves]({fig['curves']})"]
    if m["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in m["notes"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- compare


def run_summary(run_dir: str | Path, label: str | None = None) -> dict[str, Any]:
    """Headline numbers of one training run, read from its ``log.jsonl`` (and ``config.json`` if present).

    ``run_dir`` may also be a log file itself.
    """
    from occluface.bench.curves import LogError, read_log, series

    run_dir = Path(run_dir)
    log = run_dir if run_dir.is_file() else run_dir / "log.jsonl"
    folder = log.parent
    if not log.is_file():
        raise LogError(f"{run_dir}: no log.jsonl in this run folder (is it a training output folder?)")
    records = read_log(log)
    model = None
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        try:
            model = json.loads(cfg_path.read_text(encoding="utf-8")).get("model")
        except (json.JSONDecodeError, AttributeError):
            model = None
    steps_acc, acc = series(records, "test", "acc")
    steps_loss, loss = series(records, "test", "loss")
    all_steps = [float(r["step"]) for r in records if r.get("step") is not None]
    best = int(np.argmax(acc)) if acc.size else None
    return {
        "label": label or folder.name,
        "run_dir": str(folder),
        "log": str(log),
        "model": model,
        "steps": int(max(all_steps)) if all_steps else 0,
        "final_test_acc": float(acc[-1]) if acc.size else None,
        "best_test_acc": float(acc[best]) if best is not None else None,
        "best_test_step": int(steps_acc[best]) if best is not None else None,
        "final_test_loss": float(loss[-1]) if loss.size else None,
        "n_test_evals": int(acc.size),
    }


def compare_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """All runs' training curves on one figure plus ``comparison.md`` and ``comparison.json`` tables."""
    from occluface.bench.curves import plot_training_curves

    if not run_dirs:
        raise OccluFaceError("no run folders given to compare")
    if labels is not None and len(labels) not in (0, len(run_dirs)):
        raise OccluFaceError(f"{len(labels)} labels given for {len(run_dirs)} runs; give one per run or none")
    names = list(labels) if labels else [None] * len(run_dirs)
    runs = [run_summary(d, n) for d, n in zip(run_dirs, names, strict=True)]
    seen: dict[str, int] = {}
    for r in runs:  # two folders with the same name must still be told apart in the legend
        n = seen.get(r["label"], 0)
        seen[r["label"]] = n + 1
        if n:
            r["label"] = f"{r['label']} ({n + 1})"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_training_curves({r["label"]: r["log"] for r in runs}, out / "curves.png", title="Accuracy curve comparison")
    rows = [
        (
            r["label"],
            r["model"] or "?",
            _fmt(r["final_test_acc"]),
            _fmt(r["best_test_acc"]) + (f" (step {r['best_test_step']})" if r["best_test_step"] is not None else ""),
            f"{r['final_test_loss']:.4f}" if r["final_test_loss"] is not None else "n/a",
            r["steps"],
        )
        for r in runs
    ]
    md = [
        "# Training run comparison",
        "",
        _md_table(["run", "model", "final test acc", "best test acc", "final test loss", "steps"], rows),
        "",
        f"![accuracy curve comparison]({png.name})",
        "",
        "Test accuracy is as logged during training: the classifier head on the held-out images for an image split, leave-one-out nearest-neighbour identification among the held-out people for an identity split.",
        "",
    ]
    (out / "comparison.md").write_text("\n".join(md), encoding="utf-8")
    result = {"runs": runs, "figure": png.name}
    (out / "comparison.json").write_text(json.dumps(to_jsonable(result), indent=2) + "\n", encoding="utf-8")
    result["out_dir"] = str(out)
    return result
