"""Face-recognition metrics: closed-set classification, pair verification and rank-k identification.

Everything numeric comes from scikit-learn so results match what other papers and tools report; this module only
arranges the inputs (pairs, folds, galleries) the way face-recognition protocols (LFW, MFR) define them.
Pure numpy/scikit-learn: no torch, so it is cheap to import and easy to test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import StratifiedKFold

from occluface.errors import OccluFaceError

#: Up to this many image pairs, impostor pairs are drawn from a full enumeration (~16 bytes per pair).
_ENUMERATE_LIMIT = 2_000_000

#: False-accept rates at which the true-accept rate is reported (the MFR / IJB convention).
DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)


class MetricsError(OccluFaceError):
    """The inputs cannot give the requested metric (empty, one class only, mismatched lengths...)."""


# ----------------------------------------------------------------------------- closed set


def closed_set_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    loss: float | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class and macro precision/recall/F1 and the confusion matrix of a classifier head.

    ``y_true``/``y_pred`` are indices into ``classes``. Only classes that occur in ``y_true`` or ``y_pred`` are
    scored (scikit-learn's default), so a test split that holds a subset of the training identities is not
    penalised for identities it never shows; ``confusion_labels`` names the rows/columns of ``confusion_matrix``.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise MetricsError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise MetricsError("no samples to score")
    n = len(classes)
    bad = np.concatenate([y_true, y_pred])
    bad = bad[(bad < 0) | (bad >= n)]
    if bad.size:
        raise MetricsError(f"label index {int(bad[0])} is outside the {n} classes")
    labels = np.unique(np.concatenate([y_true, y_pred]))
    names = [str(classes[i]) for i in labels]

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    wp, wr, wf, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=0
    )
    report_text = classification_report(
        y_true, y_pred, labels=labels, target_names=names, zero_division=0, digits=4
    )
    per_class = {
        name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, name in enumerate(names)
    }
    out: dict[str, Any] = {
        "n_samples": int(y_true.size),
        "n_classes_scored": int(labels.size),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "weighted_precision": float(wp),
        "weighted_recall": float(wr),
        "weighted_f1": float(wf),
        "per_class": per_class,
        "classification_report": report_text,
        "confusion_labels": names,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels),
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out


# ----------------------------------------------------------------------------- verification


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold (score >= t means "same person") that maximises accuracy on these pairs, and that accuracy."""
    fpr, tpr, thr = roc_curve(same, scores, drop_intermediate=False)
    pos = int(same.sum())
    neg = int(same.size - pos)
    acc = (tpr * pos + (1.0 - fpr) * neg) / same.size
    k = int(np.argmax(acc))
    # Put the threshold halfway to the next lower score: same accuracy here, and a held-out pair scoring just
    # below the lowest accepted training score is not rejected for nothing.
    if k == 0:  # roc_curve's first threshold is +inf ("reject everything")
        t = float(thr[1]) + 1e-6 if thr.size > 1 else float(np.max(scores)) + 1e-6
    elif k + 1 < thr.size:
        t = float(thr[k] + thr[k + 1]) / 2.0
    else:
        t = float(thr[k])
    return t, float(acc[k])


def kfold_accuracy(
    scores: np.ndarray, same: np.ndarray, *, n_folds: int = 10, seed: int = 0
) -> dict[str, Any] | None:
    """LFW-style accuracy: pick the threshold on n-1 folds, measure on the held-out fold, report mean and std.

    Folds are stratified so each keeps the genuine/impostor ratio; with fewer than ``n_folds`` pairs of the
    rarer kind the number of folds drops to that count, and below 2 there is nothing to cross-validate (None).
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    minority = int(min(same.sum(), (~same).sum()))
    folds = min(n_folds, minority)
    if folds < 2:
        return None
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accs, thrs = [], []
    for train_idx, test_idx in skf.split(scores.reshape(-1, 1), same):
        t, _ = _best_threshold(scores[train_idx], same[train_idx])
        accs.append(float(accuracy_score(same[test_idx], scores[test_idx] >= t)))
        thrs.append(t)
    return {
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "threshold_mean": float(np.mean(thrs)),
        "n_folds": folds,
        "fold_accuracies": accs,
    }


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float, n_negative: int) -> float | None:
    """True-accept rate at a false-accept rate, linearly interpolated on the ROC.

    None when fewer than ``1/far`` impostor pairs exist: one false accept would already exceed ``far``, so the
    value would be an extrapolation, not a measurement.
    """
    if n_negative * far < 1.0:
        return None
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    # roc_curve repeats an FPR on vertical steps; keep the highest TPR at each so np.interp sees a function.
    ufpr, last = np.unique(fpr[::-1], return_index=True)
    utpr = tpr[::-1][last]
    return float(np.interp(far, ufpr, utpr))


def verification_metrics(
    scores: Sequence[float] | np.ndarray,
    same: Sequence[bool] | np.ndarray,
    *,
    fars: Sequence[float] = DEFAULT_FARS,
    n_folds: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC, AUC, EER, 10-fold best accuracy and TAR@FAR for similarity scores of face pairs.

    ``scores`` are similarities (higher = more alike), ``same`` says whether each pair is one person.
    ``tar_at_far`` maps a FAR label like "1e-03" to the TAR or None (too few impostor pairs, see
    :func:`tar_at_far`); ``notes`` explains every None in plain words for the report.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same, dtype=bool).ravel()
    if scores.shape != same.shape:
        raise MetricsError(f"{scores.size} scores but {same.size} same/different labels")
    if not np.all(np.isfinite(scores)):
        raise MetricsError("scores contain NaN or infinity")
    n_pos = int(same.sum())
    n_neg = int(same.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise MetricsError(
            f"verification needs both genuine and impostor pairs (got {n_pos} genuine, {n_neg} impostor)"
        )
    fpr, tpr, thr = roc_curve(same, scores)
    auc = float(roc_auc_score(same, scores))
    # Equal error rate: where the false-reject rate (1 - TPR) meets the FPR.
    k = int(np.nanargmin(np.abs((1.0 - tpr) - fpr)))
    eer = float((fpr[k] + 1.0 - tpr[k]) / 2.0)
    notes: list[str] = []
    tars: dict[str, float | None] = {}
    for far in fars:
        key = f"{far:.0e}"
        tars[key] = tar_at_far(fpr, tpr, far, n_neg)
        if tars[key] is None:
            notes.append(
                f"TAR@FAR={key} not measurable: {n_neg} impostor pairs, at least {int(np.ceil(1 / far))} needed"
            )
    kf = kfold_accuracy(scores, same, n_folds=n_folds, seed=seed)
    if kf is None:
        notes.append("k-fold accuracy not measurable: fewer than 2 genuine or 2 impostor pairs")
    return {
        "n_pairs": int(same.size),
        "n_genuine": n_pos,
        "n_impostor": n_neg,
        "auc": auc,
        "eer": eer,
        "accuracy_mean": kf["accuracy_mean"] if kf else None,
        "accuracy_std": kf["accuracy_std"] if kf else None,
        "threshold_mean": kf["threshold_mean"] if kf else None,
        "n_folds": kf["n_folds"] if kf else 0,
        "fold_accuracies": kf["fold_accuracies"] if kf else [],
        "tar_at_far": tars,
        "roc_fpr": fpr,
        "roc_tpr": tpr,
        "roc_thresholds": thr,
        "notes": notes,
    }


def make_pairs(
    labels: Sequence[Any] | np.ndarray,
    *,
    max_negative_per_positive: float | None = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) for verification: every genuine pair plus seeded impostor pairs.

    Impostors number ``max_negative_per_positive`` times the genuine pairs (balanced by default, as on LFW),
    capped at all that exist; ``None`` takes every impostor pair. Returns ``(i, j, same)`` with the genuine
    pairs first. Deterministic for a given ``seed``.
    """
    labels = np.asarray(labels)
    n = labels.size
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    gi, gj = [], []
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        if idx.size > 1:
            a, b = np.triu_indices(idx.size, k=1)
            gi.append(idx[a])
            gj.append(idx[b])
    pos_i = np.concatenate(gi) if gi else np.empty(0, np.int64)
    pos_j = np.concatenate(gj) if gj else np.empty(0, np.int64)
    n_pos = pos_i.size
    counts = np.bincount(codes) if n else np.zeros(0, np.int64)
    total_neg = int((n * (n - 1) - np.sum(counts * (counts - 1))) // 2)
    if max_negative_per_positive is None:
        wanted = total_neg
    else:
        if max_negative_per_positive < 0:
            raise MetricsError("max_negative_per_positive must be >= 0 or None")
        wanted = min(total_neg, int(round(max_negative_per_positive * n_pos)))
    rng = np.random.default_rng(seed)
    if wanted == 0:
        neg_i = neg_j = np.empty(0, np.int64)
    elif n * (n - 1) // 2 <= _ENUMERATE_LIMIT or wanted > total_neg // 2:
        if n * (n - 1) // 2 > 4 * _ENUMERATE_LIMIT:
            raise MetricsError(
                f"{wanted:,} impostor pairs of {n:,} images is too many to list; "
                "pass a ratio of impostors per genuine pair instead"
            )
        # Small sets, or most of all pairs wanted: enumerate every impostor pair and draw without replacement.
        a, b = np.triu_indices(n, k=1)
        keep = codes[a] != codes[b]
        a, b = a[keep], b[keep]
        pick = np.sort(rng.choice(a.size, size=wanted, replace=False))
        neg_i, neg_j = a[pick], b[pick]
    else:
        # Large sets (n^2 too big to enumerate), few pairs wanted: rejection-sample distinct cross-identity pairs.
        keys = np.empty(0, np.int64)
        while keys.size < wanted:
            batch = max(1024, 2 * (wanted - keys.size))
            x = rng.integers(0, n, size=batch)
            y = rng.integers(0, n, size=batch)
            p, q = np.minimum(x, y), np.maximum(x, y)
            ok = codes[p] != codes[q]
            keys = np.concatenate([keys, p[ok].astype(np.int64) * n + q[ok]])
            _, first = np.unique(keys, return_index=True)
            keys = keys[np.sort(first)][:wanted]  # drop repeats, keep draw order
        neg_i, neg_j = keys // n, keys % n
    i = np.concatenate([pos_i, neg_i]).astype(np.int64)
    j = np.concatenate([pos_j, neg_j]).astype(np.int64)
    same = np.concatenate([np.ones(n_pos, bool), np.zeros(neg_i.size, bool)])
    return i, j, same


def pair_scores(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair (rows i[k], j[k]) of an embedding matrix."""
    emb = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.maximum(norms, 1e-12)
    return np.einsum("nd,nd->n", emb[np.asarray(i)], emb[np.asarray(j)])


# ----------------------------------------------------------------------------- identification


def rank1_from_gallery(
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[Any] | np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: Sequence[Any] | np.ndarray,
) -> dict[str, Any]:
    """Closed-set identification of probes against a gallery by cosine similarity.

    An identity scores as its best-matching gallery image. Probes whose identity has no gallery image cannot
    be identified correctly by any model, so they are left out of the rates and counted in
    ``n_probes_unknown``. Rank-5 is None with 5 or fewer gallery identities (it would be trivially 1).
    """
    gallery_emb = np.atleast_2d(np.asarray(gallery_emb, dtype=np.float64))
    probe_emb = np.atleast_2d(np.asarray(probe_emb, dtype=np.float64))
    g_lab = np.asarray(gallery_labels).ravel()
    p_lab = np.asarray(probe_labels).ravel()
    if gallery_emb.shape[0] != g_lab.size or probe_emb.shape[0] != p_lab.size:
        raise MetricsError("embedding rows and labels differ in number")
    if g_lab.size == 0:
        raise MetricsError("the gallery is empty")
    if gallery_emb.shape[1] != probe_emb.shape[1]:
        raise MetricsError(
            f"gallery embeddings have {gallery_emb.shape[1]} dims, probes {probe_emb.shape[1]}"
        )
    ids = np.unique(g_lab)
    known = np.isin(p_lab, ids)
    sim = cosine_similarity(probe_emb[known], gallery_emb) if known.any() else np.zeros((0, g_lab.size))
    # Per-identity score = max similarity over that identity's gallery images.
    id_scores = np.full((sim.shape[0], ids.size), -np.inf)
    g_code = np.searchsorted(ids, g_lab)
    for c in range(ids.size):
        cols = g_code == c
        if sim.shape[0]:
            id_scores[:, c] = sim[:, cols].max(axis=1)
    y = np.searchsorted(ids, p_lab[known])
    pred = np.argmax(id_scores, axis=1) if sim.shape[0] else np.zeros(0, np.int64)
    n_known = int(known.sum())
    rank1 = float(accuracy_score(y, pred)) if n_known else None
    rank5 = None
    if n_known and ids.size > 5:
        rank5 = float(top_k_accuracy_score(y, id_scores, k=5, labels=np.arange(ids.size)))
    per_identity: dict[str, dict[str, int]] = {}
    for c, name in enumerate(ids):
        per_identity[str(name)] = {
            "gallery": int(np.sum(g_code == c)),
            "probes": int(np.sum(y == c)),
            "rank1_correct": int(np.sum((y == c) & (pred == c))),
        }
    for name in np.unique(p_lab[~known]):
        per_identity[str(name)] = {"gallery": 0, "probes": int(np.sum(p_lab == name)), "rank1_correct": 0}
    return {
        "n_gallery": int(g_lab.size),
        "n_gallery_identities": int(ids.size),
        "n_probes": n_known,
        "n_probes_unknown": int((~known).sum()),
        "rank1": rank1,
        "rank5": rank5,
        "per_identity": per_identity,
    }


def gallery_probe_split(
    labels: Sequence[Any] | np.ndarray, *, gallery_per_identity: int = 1, shuffle: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean gallery mask and probe mask: the first k images of each identity (in the given order) enrol.

    Pass images sorted by path for a reproducible split; ``shuffle=True`` instead enrols k seeded-random images.
    """
    labels = np.asarray(labels).ravel()
    if gallery_per_identity < 1:
        raise MetricsError("gallery_per_identity must be at least 1")
    rng = np.random.default_rng(seed)
    gallery = np.zeros(labels.size, bool)
    for name in np.unique(labels):
        idx = np.flatnonzero(labels == name)
        if shuffle:
            idx = rng.permutation(idx)
        gallery[idx[:gallery_per_identity]] = True
    return gallery, ~gallery


def rank1_identification(
    embeddings: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    gallery_per_identity: int = 1,
    seed: int = 0,
    shuffle: bool = False,
) -> dict[str, Any]:
    """Open-set-style rank-1/rank-5 on one set of images: enrol k per identity, identify the rest.

    Identities with no more than k images only enrol and act as distractors in the gallery.
    """
    emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    labels = np.asarray(labels).ravel()
    if emb.shape[0] != labels.size:
        raise MetricsError(f"{emb.shape[0]} embeddings but {labels.size} labels")
    gallery, probe = gallery_probe_split(
        labels, gallery_per_identity=gallery_per_identity, shuffle=shuffle, seed=seed
    )
    if not probe.any():
        raise MetricsError(
            f"no probe images: every identity has at most {gallery_per_identity} image(s), all enrolled"
        )
    out = rank1_from_gallery(emb[gallery], labels[gallery], emb[probe], labels[probe])
    out["gallery_per_identity"] = gallery_per_identity
    return out
