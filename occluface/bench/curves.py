"""Training curves from JSONL logs: the coal-mine paper's "accuracy curve comparison" figure, for any runs.

A training log holds one JSON object per line, e.g.
``{"step": 120, "epoch": 1.5, "split": "train", "loss": 2.31, "acc": 0.42, "lr": 0.1}``; "train" records are
per-batch (noisy, drawn thin and smoothed), "test" records are periodic evaluations (drawn solid with markers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from scipy.ndimage import uniform_filter1d  # noqa: E402

from occluface.errors import OccluFaceError  # noqa: E402


class LogError(OccluFaceError):
    """A training log is missing or not JSON lines."""


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL training log, in file order.

    Blank lines are skipped, and so is a half-written last line (the run may still be writing); any other line
    that is not a JSON object is a LogError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: training log not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records: list[dict[str, Any]] = []
    last = max((k for k, line in enumerate(lines) if line.strip()), default=-1)
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if k == last:
                break
            raise LogError(f"{path}: line {k + 1} is not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise LogError(f"{path}: line {k + 1} is not a JSON object")
        records.append(rec)
    return records


def series(records: list[dict[str, Any]], split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric for one split, skipping records that lack it; sorted by step."""
    pts = [
        (float(r["step"]), float(r[key]))
        for r in records
        if r.get("split") == split and r.get(key) is not None and r.get("step") is not None
    ]
    if not pts:
        return np.empty(0), np.empty(0)
    arr = np.asarray(sorted(pts, key=lambda p: p[0]))
    return arr[:, 0], arr[:, 1]


def _smooth(values: np.ndarray, window: int | None) -> np.ndarray:
    """Moving average over ~5% of the points (at least 1): per-batch accuracy is too noisy to read raw."""
    if values.size < 3:
        return values
    w = window if window is not None else max(1, values.size // 20)
    return uniform_filter1d(values, size=max(1, w), mode="nearest")


def plot_training_curves(
    runs: Mapping[str, str | Path],
    out_png: str | Path,
    *,
    title: str = "Training curves",
    smooth_window: int | None = None,
) -> Path:
    """One figure, two panels (accuracy and loss vs iteration), one colour per run.

    ``runs`` maps a legend label to a JSONL log path. Train curves are thin and light (smoothed), test curves
    solid with markers, so a reader compares generalisation of the models at a glance.
    """
    if not runs:
        raise LogError("no training logs given to plot")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    colours = plt.get_cmap("tab10").colors
    handles = []
    any_test = any_train = False
    for k, (label, log) in enumerate(runs.items()):
        colour = colours[k % len(colours)]
        records = read_log(log)
        for ax, key in ((ax_acc, "acc"), (ax_loss, "loss")):
            x, y = series(records, "train", key)
            if x.size:
                any_train = True
                ax.plot(x, _smooth(y, smooth_window), color=colour, linewidth=1.0, alpha=0.45)
            x, y = series(records, "test", key)
            if x.size:
                any_test = True
                ax.plot(x, y, color=colour, linewidth=2.0, marker="o", markersize=4)
        handles.append(Line2D([], [], color=colour, linewidth=2.5, label=str(label)))
    style = []
    if any_train:
        style.append(Line2D([], [], color="grey", linewidth=1.0, alpha=0.6, label="train (smoothed)"))
    if any_test:
        style.append(Line2D([], [], color="grey", linewidth=2.0, marker="o", markersize=4, label="test"))
    ax_acc.set_title("Accuracy")
    ax_acc.set_xlabel("Iteration")
    ax_acc.set_ylabel("Accuracy")
    ys = [v for line in ax_loss.get_lines() for v in line.get_ydata() if np.isfinite(v)]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 50:  # a diverging run would squash every other curve flat
        ax_loss.set_yscale("log")
    ax_loss.set_title("Loss")
    ax_loss.set_xlabel("Iteration")
    ax_loss.set_ylabel("Loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
    # One shared legend under both panels: inside either panel it would hide curves.
    entries = handles + style
    ncol = min(len(entries), 6)
    rows = -(-len(entries) // ncol)
    fig.legend(handles=entries, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.04 + 0.045 * rows, 1.0, 1.0))
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
