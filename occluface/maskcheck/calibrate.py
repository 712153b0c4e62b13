"""Choose the masked-logit bias of a trained mask classifier on the validation split.

Training sees clean faces, synthetic masks and real masked photos, and the real masked ones are the hard
part: a network picked by macro F1 at its argmax still calls some real masks "unmasked" while it never
calls a bare face masked (0 false positives against 4 false negatives on validation for the earlier
2-class model). Adding one constant to the masked classes' logits moves that boundary without retraining.

The rule is fixed before any test score is seen: on the validation split only, every bias on a grid
(-6 .. 6, step 0.05) is scored by the same criterion that chose the epoch (macro F1); the best scores
form runs of neighbouring grid points, and the middle of the longest such run is taken (the middle of a
flat optimum, so a few faces more or less on either side do not decide it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occluface.errors import DatasetError
from occluface.maskcheck.data import select
from occluface.maskcheck.model import MaskNet, load_weights, save_weights
from occluface.maskcheck.model import predict_proba

GRID = np.round(np.arange(-6.0, 6.0 + 1e-9, 0.05), 2)


def decide(log_proba: np.ndarray, bias: float) -> np.ndarray:
    """Labels from log-probabilities with ``bias`` added to every masked class (class 0 = unmasked/none)."""
    shifted = np.array(log_proba, dtype=np.float64, copy=True)
    shifted[:, 1:] += bias
    return shifted.argmax(1)


def choose_mask_bias(proba: np.ndarray, labels: np.ndarray, grid: np.ndarray = GRID) -> dict[str, Any]:
    """The bias (and its validation figures) chosen by the module's rule from bias-free probabilities."""
    from sklearn.metrics import f1_score

    if len(labels) == 0:
        raise DatasetError("cannot choose a mask bias on an empty validation split")
    logp = np.log(np.clip(np.asarray(proba, np.float64), 1e-12, 1.0))
    labels = np.asarray(labels)
    scores = np.array([f1_score(labels, decide(logp, b), average="macro") for b in grid])
    best = np.isclose(scores, scores.max(), rtol=0, atol=1e-12)
    runs, start = [], None  # (length, first, last) of each run of best grid points
    for i, ok in enumerate(np.append(best, False)):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((i - start, start, i - 1))
            start = None
    _, first, last = max(runs, key=lambda r: (r[0], -abs(grid[r[1]] + grid[r[2]])))  # longest; ties: nearer 0
    bias = float(np.round((grid[first] + grid[last]) / 2, 3))

    def errors(b: float) -> dict[str, int]:
        pred = decide(logp, b)
        masked, called = labels >= 1, pred >= 1
        return {"false_masked": int((~masked & called).sum()), "false_unmasked": int((masked & ~called).sum()),
                "wrong": int((pred != labels).sum())}

    return {"bias": bias, "val_faces": int(len(labels)), "val_macro_f1_before": float(scores[np.argmin(np.abs(grid))]),
            "val_macro_f1_after": float(scores[(first + last) // 2]), "best_range": [float(grid[first]), float(grid[last])],
            "val_errors_before": errors(0.0), "val_errors_after": errors(bias)}


def calibrate_weights(weights: str | Path, data: dict[str, np.ndarray], out: str | Path | None = None) -> dict[str, Any]:
    """Choose the bias for the weight file on ``data``'s validation split and write it (atomically) into
    ``out`` (default: the same file); returns what was chosen. Any bias already in the file is ignored."""
    model: MaskNet = load_weights(weights)
    model.mask_bias = 0.0
    x, y = select(data, "val", model.classes)
    chosen = choose_mask_bias(predict_proba(model, x), y)
    model.mask_bias = chosen["bias"]
    meta = dict(getattr(model, "meta", {}))
    meta["mask_bias"] = chosen
    save_weights(Path(out) if out is not None else Path(weights), model, meta, half=True)
    return chosen
