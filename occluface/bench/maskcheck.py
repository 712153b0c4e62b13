"""Score a mask classifier the way the paper does (masked = positive): confusion matrix, precision, recall,
F1, accuracy on the held-out test split; plus accuracy on out-of-distribution sets it never saw.

Writes ``metrics.json``, ``confusion.png`` (and ``confusion_real.png`` for the real photos only) and
``report.md`` into the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occluface.bench.reports import save_report
from occluface.maskcheck.data import INCORRECT, select
from occluface.maskcheck.model import MaskNet
from occluface.maskcheck.model import predict_proba


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, positive: str = "masked") -> dict[str, Any]:
    """Precision/recall/F1/accuracy of masked (label >= 1) vs unmasked (0), ``positive`` being "masked" or
    "unmasked". The paper's Table 4/5 figures come out with its 796-image class as the positive one."""
    if positive not in ("masked", "unmasked"):
        raise ValueError(f"positive must be 'masked' or 'unmasked', got {positive!r}")
    t, p = np.asarray(y_true) >= 1, np.asarray(y_pred) >= 1
    if positive == "unmasked":
        t, p = ~t, ~p
    tp, tn = int((t & p).sum()), int((~t & ~p).sum())
    fp, fn = int((~t & p).sum()), int((t & ~p).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    n = tp + tn + fp + fn
    return {"n": n, "tp": tp, "tn": tn, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1,
            "accuracy": (tp + tn) / n if n else 0.0}


def _classification(model: MaskNet, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from occluface.bench.metrics import closed_set_metrics

    pred = predict_proba(model, x).argmax(1)
    m = closed_set_metrics(y, pred, list(model.class_names))
    out = {k: v for k, v in m.items() if k not in ("confusion_matrix", "classification_report")}
    out["confusion_matrix"] = np.asarray(m["confusion_matrix"]).tolist()
    out["classification_report"] = m["classification_report"]
    out["binary"] = binary_metrics(y, pred)
    out["binary_unmasked_positive"] = binary_metrics(y, pred, "unmasked")
    out["_pred"] = pred
    return out


def plot_confusion(cm: np.ndarray, labels: list[str], out_png: Path, title: str) -> Path:
    """Count confusion-matrix PNG with class axes (the shared plot names its axes 'identity')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=110)
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=labels).plot(ax=ax, cmap="Blues", values_format="d", colorbar=False)
    total = int(np.sum(cm))
    ax.set_title(f"{title}\n{total} faces, accuracy {np.trace(np.asarray(cm)) / max(total, 1):.2%}", fontsize=10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _ood(model: MaskNet, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Accuracy on every never-seen source (masked vs unmasked for the 3-class model)."""
    k, ood = model.classes, {}
    keep = data["split"] == "ood"
    for source in sorted(set(data["source"][keep].tolist())):
        sel = keep & (data["source"] == source)
        if k == 2:
            sel &= data["label"] != INCORRECT
        x, y = data["images"][sel], data["label"][sel]
        if len(x) == 0:
            continue
        pred = predict_proba(model, x).argmax(1)
        correct = (pred >= 1) == (y >= 1) if k == 3 else pred == y
        ood[source] = {"n": int(len(x)), "accuracy": float(correct.mean()), "true_label": model.class_names[int(np.bincount(y).argmax())],
                       "predicted_counts": {model.class_names[c]: int((pred == c).sum()) for c in range(k)}}
    return ood


def evaluate(model: MaskNet, data: dict[str, np.ndarray], out_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """Metrics on ``split`` (all crops and real photos only) and on every OOD source; writes the files.
    On an audited dataset (:mod:`occluface.maskcheck.audit`) the figures on the folder labels come too."""
    from occluface.maskcheck.audit import original_labels

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = model.classes
    results: dict[str, Any] = {"classes": list(model.class_names), "split": split, "mask_bias": float(model.mask_bias)}
    for name, real_only in (("all", False), ("real", True)):
        x, y = select(data, split, k, real_only=real_only)
        if len(x) == 0:
            continue
        r = _classification(model, x, y)
        r.pop("_pred")
        results[name] = r
        png = out / ("confusion.png" if name == "all" else "confusion_real.png")
        title = f"Mask classifier, {split} split" + (", real photos only" if real_only else ", real + synthetic")
        plot_confusion(np.array(r["confusion_matrix"]), r["confusion_labels"], png, title)
    results["ood"] = _ood(model, data)
    if "label_original" in data:
        folder = original_labels(data)
        orig: dict[str, Any] = {"audited_faces": int(data.get("audited_faces", np.array(0)))}
        for name, real_only in (("all", False), ("real", True)):
            x, y = select(folder, split, k, real_only=real_only)
            if len(x):
                r = _classification(model, x, y)
                orig[name] = {"n_samples": int(len(y)), "confusion_matrix": r["confusion_matrix"],
                              "confusion_labels": r["confusion_labels"], "binary": r["binary"]}
        orig["ood"] = _ood(model, folder)
        results["folder_labels"] = orig
    save_report(out, markdown=render_report(results), data=results)
    return results


def render_report(results: dict[str, Any]) -> str:
    """Markdown summary: confusion matrices, paper-style figures, OOD accuracy."""
    lines = ["# Mask classifier evaluation", "", "Paper (ResNet-18 on RMFD): accuracy 98.64 %, precision 98.64 %, "
             "recall 99.62 %, F1 99.13 %; these follow from its Table 4 (796/3/11/224) with the 796-image class positive.", ""]
    if results.get("mask_bias"):
        lines += [f"Masked-logit bias {results['mask_bias']:+.3f}, chosen on the validation split "
                  "(`occluface.maskcheck.calibrate`), is applied to every prediction below.", ""]
    for name, title in (("all", "Held-out test split, real + synthetic"), ("real", "Held-out test split, real photos only")):
        r = results.get(name)
        if not r:
            continue
        b, u = r["binary"], r["binary_unmasked_positive"]
        labels = r["confusion_labels"]
        lines += [f"## {title} ({r['n_samples']} faces)", "", "| true \\ predicted | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for lab, row in zip(labels, r["confusion_matrix"]):
            lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
        lines += ["", f"masked vs unmasked: precision {100 * b['precision']:.2f} %, recall {100 * b['recall']:.2f} %, "
                  f"F1 {100 * b['f1']:.2f} %, accuracy {100 * b['accuracy']:.2f} % (masked = positive); precision "
                  f"{100 * u['precision']:.2f} %, recall {100 * u['recall']:.2f} %, F1 {100 * u['f1']:.2f} % (unmasked = positive); "
                  f"{len(labels)}-class accuracy "
                  f"{100 * r['accuracy']:.2f} %, macro F1 {100 * r['macro_f1']:.2f} %", ""]
    if results.get("ood"):
        lines += ["## Never seen in any form (out of distribution)", "", "| set | faces | true label | accuracy |", "|---|---|---|---|"]
        for s, o in results["ood"].items():
            lines.append(f"| {s} | {o['n']} | {o['true_label']} | {100 * o['accuracy']:.2f} % |")
        lines.append("")
    folder = results.get("folder_labels")
    if folder:
        lines += ["## The same model on the folder labels, before the label audit", "",
                  f"The figures above use the audited labels (`occluface/maskcheck/label_audit.tsv`: {folder['audited_faces']} "
                  "evaluation faces changed, each with its reason). On the labels as the folders give them:", "",
                  "| set | faces | confusion (rows true, columns predicted) | precision | recall | F1 | accuracy |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for name, title in (("all", "test, real + synthetic"), ("real", "test, real photos only")):
            r = folder.get(name)
            if r:
                b = r["binary"]
                cm = " / ".join(" ".join(str(v) for v in row) for row in r["confusion_matrix"])
                lines.append(f"| {title} | {r['n_samples']} | {cm} | {100 * b['precision']:.2f} % | {100 * b['recall']:.2f} % | "
                             f"{100 * b['f1']:.2f} % | {100 * b['accuracy']:.2f} % |")
        for s, o in folder.get("ood", {}).items():
            lines.append(f"| never seen: {s} | {o['n']} | | | | | {100 * o['accuracy']:.2f} % |")
        lines.append("")
    return "\n".join(lines)
