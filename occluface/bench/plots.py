"""Report figures: confusion matrix and ROC, drawn with matplotlib (Agg, no display needed).

Sizes and labelling adapt to the number of classes so a 10-identity matrix shows counts in each cell while a
500-identity one is still a readable heat map instead of a blur of overlapping text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

#: Above this many classes cells carry no numbers; above TICK_LIMIT the axes carry no class names.
CELL_TEXT_LIMIT = 20
TICK_LIMIT = 60


def plot_confusion_matrix(
    cm: np.ndarray,
    labels: Sequence[str],
    out_png: str | Path,
    *,
    normalize: bool | None = None,
    title: str = "Confusion matrix",
) -> Path:
    """Write a confusion-matrix PNG (rows = true identity, columns = predicted).

    ``normalize=None`` normalises rows (recall per class) only when there are too many classes for counts to
    be written in the cells, where colour alone must carry the information.
    """
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(cm)
    n = cm.shape[0]
    if normalize is None:
        normalize = n > CELL_TEXT_LIMIT
    shown = cm
    if normalize:
        rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
        shown = np.divide(cm.astype(np.float64), rows, out=np.zeros(cm.shape), where=rows > 0)
    side = float(np.clip(0.3 * n + 3.0, 6.0, 12.0))
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=110)
    names = [str(x) for x in labels] if n <= TICK_LIMIT else [""] * n
    disp = ConfusionMatrixDisplay(shown, display_labels=names)
    disp.plot(
        ax=ax,
        include_values=n <= CELL_TEXT_LIMIT,
        values_format=".2f" if normalize else "d",
        cmap="Blues",
        xticks_rotation="vertical",
        colorbar=True,
    )
    if n > TICK_LIMIT:
        ax.set_xticks([])
        ax.set_yticks([])
    fontsize = 10 if n <= 20 else 6
    ax.tick_params(labelsize=fontsize)
    ax.set_xlabel("Predicted identity" + (" (names omitted)" if n > TICK_LIMIT else ""))
    ax.set_ylabel("True identity")
    total = int(cm.sum())
    acc = float(np.trace(cm) / total) if total else 0.0
    suffix = ", row-normalised" if normalize else ""
    ax.set_title(f"{title}\n{n} classes, {total} images, accuracy {acc:.1%}{suffix}")
    if disp.im_.colorbar is not None:
        disp.im_.colorbar.set_label("fraction of true class" if normalize else "images")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    out_png: str | Path,
    *,
    title: str = "Verification ROC",
    far_marks: Sequence[float] = (1e-2, 1e-3),
) -> Path:
    """Write a ROC PNG with FAR on a log axis (where face systems operate) for one or more models.

    ``curves`` maps a legend label to ``(fpr, tpr, auc)``. FAR = 0 cannot sit on a log axis, so the axis starts
    at half the smallest non-zero FAR seen; dotted lines mark the FARs the report quotes TAR at.
    """
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=110)
    smallest = 1.0
    for label, (fpr, tpr, auc) in curves.items():
        fpr = np.asarray(fpr, dtype=np.float64)
        tpr = np.asarray(tpr, dtype=np.float64)
        nz = fpr[fpr > 0]
        if nz.size:
            smallest = min(smallest, float(nz.min()))
        ax.plot(fpr, tpr, linewidth=2, label=f"{label} (AUC = {auc:.4f})")
    left = max(min(smallest / 2.0, min(far_marks, default=1.0) / 2.0), 1e-6)
    ax.set_xscale("log")
    ax.set_xlim(left, 1.0)
    ax.set_ylim(0.0, 1.02)
    for far in far_marks:
        if far >= left:
            ax.axvline(far, color="grey", linestyle=":", linewidth=1)
            ax.text(far, 0.02, f" FAR={far:g}", color="grey", fontsize=8, rotation=90, va="bottom")
    xs = np.logspace(np.log10(left), 0, 100)
    ax.plot(xs, xs, color="lightgrey", linestyle="--", label="chance")
    ax.set_xlabel("False accept rate (FAR, log scale)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def plot_score_histogram(
    scores: np.ndarray, same: np.ndarray, out_png: str | Path, *, threshold: float | None = None, title: str = ""
) -> Path:
    """Genuine vs impostor similarity histograms: shows how far apart the two populations sit."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    lo, hi = float(scores.min()), float(scores.max())
    pad = max(1e-3, 0.02 * (hi - lo))
    bins = np.linspace(lo - pad, hi + pad, 41)
    ax.hist(scores[~same], bins=bins, alpha=0.6, color="tab:red", label=f"impostor pairs ({(~same).sum()})")
    ax.hist(scores[same], bins=bins, alpha=0.6, color="tab:green", label=f"genuine pairs ({same.sum()})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    ax.set_xlabel("Cosine similarity")
    ax.set_ylabel("Pairs")
    ax.set_title(title or "Similarity of genuine and impostor pairs")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
