"""Per-face confidence over the roster: the F x R matrix the roll-call assigns from.

The classroom paper (Zhu et al., "Classroom Roll-Call System Based on ResNet Networks") feeds ResNet
embeddings to an SVM that outputs one confidence per student identity; faces whose best confidence exceeds 0.6
are taken as present. Those numbers only mean something if they are calibrated probabilities, so:

* `SVMConfidence` -- linear SVM wrapped in scikit-learn's `CalibratedClassifierCV` (Platt/sigmoid), with
  cross-validation folds that keep each enrolment photo and its augmented copies (e.g. a mirrored chip) in the
  same fold, so calibration is not fooled by near-duplicates. A roster with fewer than 2 independent photos
  for some student cannot be calibrated; then it falls back to `SoftmaxConfidence` and says so in `note`.
* `SoftmaxConfidence` -- softmax of cosine similarities to each identity's mean embedding, with the
  temperature fitted by leave-one-out likelihood on the enrolment photos when there are any to leave out.

Both share `ConfidenceModel`: `fit(X, y, groups=None)` then `predict_proba(X) -> F x R` (rows sum to 1,
columns in `classes_` order).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError

__all__ = ["ConfidenceModel", "SVMConfidence", "SoftmaxConfidence", "make_confidence", "CONFIDENCE_MODELS"]

CONFIDENCE_MODELS = ("svm", "softmax")


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise OccluFaceError(f"{what} must be an N x D matrix of embeddings, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise OccluFaceError(f"{what} contains NaN or infinite values")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ConfidenceModel:
    """Common interface: `fit(X, y, groups=None) -> self`, `predict_proba(X) -> N x R`, `classes_`, `note`."""

    name = "base"
    classes_: list[str]
    note: str = ""

    def _check_fit_input(self, x, y, groups):
        x = _as_matrix(x, "enrolment embeddings")
        labels = [str(v) for v in y]
        if len(labels) != len(x):
            raise OccluFaceError(f"got {len(x)} enrolment embeddings but {len(labels)} labels")
        if groups is not None and len(groups) != len(x):
            raise OccluFaceError(f"got {len(x)} enrolment embeddings but {len(groups)} groups")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise OccluFaceError(f"a roster needs at least 2 identities to compute confidences, got {classes}")
        return x, np.asarray(labels, dtype=object), classes

    def _check_predict_input(self, x) -> np.ndarray:
        if not getattr(self, "classes_", None):
            raise OccluFaceError(f"{type(self).__name__} is not fitted; call fit() on the roster first")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 2 and x.shape[0] == 0:
            return x.reshape(0, self.dim_)
        x = _as_matrix(x, "face embeddings")
        if x.shape[1] != self.dim_:
            raise OccluFaceError(f"face embeddings have {x.shape[1]} dimensions, the roster was enrolled with {self.dim_}")
        return x

    def fit(self, x, y: Sequence[str], groups: Sequence | None = None) -> "ConfidenceModel":  # pragma: no cover
        raise NotImplementedError

    def predict_proba(self, x) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class SoftmaxConfidence(ConfidenceModel):
    """softmax(cos(x, mean_r) / T) over roster identities r.

    `temperature=None` fits T on the enrolment data: each enrolment embedding is scored against identity means
    computed without its own group (photo + its augmentations), and T minimises the negative log-likelihood of
    the true identity. Needs one identity with >= 2 groups; otherwise `default_temperature` is used and `note`
    says so.
    """

    name = "softmax"

    def __init__(self, temperature: float | None = None, default_temperature: float = 0.04,
                 bounds: tuple[float, float] = (0.005, 1.0)):
        if temperature is not None and not temperature > 0:
            raise OccluFaceError(f"softmax temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.default_temperature = float(default_temperature)
        self.bounds = bounds

    def fit(self, x, y, groups=None) -> "SoftmaxConfidence":
        x, labels, classes = self._check_fit_input(x, y, groups)
        x = _unit(x)
        self.classes_ = classes
        self.dim_ = x.shape[1]
        self.centroids_ = _unit(np.stack([x[labels == c].mean(axis=0) for c in classes]))
        self.note = ""
        if self.temperature is not None:
            self.temperature_ = float(self.temperature)
            return self
        groups = np.arange(len(x)) if groups is None else np.asarray(groups, dtype=object)
        sims, truth = self._leave_one_group_out(x, labels, groups, classes)
        if sims is None:
            self.temperature_ = self.default_temperature
            self.note = (f"softmax temperature not calibrated (no identity has 2 enrolment photos); "
                         f"using the default T={self.default_temperature}")
            return self
        from scipy.optimize import minimize_scalar

        def nll(log_t: float) -> float:
            z = sims / np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            return float(-(z[np.arange(len(z)), truth] - np.log(np.exp(z).sum(axis=1))).mean())

        lo, hi = np.log(self.bounds[0]), np.log(self.bounds[1])
        res = minimize_scalar(nll, bounds=(lo, hi), method="bounded")
        self.temperature_ = float(np.exp(res.x))
        self.note = f"softmax temperature T={self.temperature_:.4f} fitted by leave-one-photo-out NLL on {len(sims)} enrolment embeddings"
        if res.x <= lo + 1e-3:
            self.note += (" (at the lower bound: every held-out enrolment photo was recognised, so the likelihood "
                          "keeps sharpening; expect over-confident scores, e.g. for strangers)")
        return self

    @staticmethod
    def _leave_one_group_out(x, labels, groups, classes):
        """Similarities of each held-out enrolment embedding to identity means built without its group."""
        rows, truth = [], []
        index = {c: i for i, c in enumerate(classes)}
        for g in dict.fromkeys(groups.tolist()):
            held = groups == g
            cls = set(labels[held].tolist())
            if len(cls) != 1:
                raise OccluFaceError(f"enrolment group {g!r} mixes identities {sorted(cls)}; a group is one photo")
            c = cls.pop()
            rest = ~held & (labels == c)
            if not rest.any():
                continue  # the only photo of this identity: nothing to compare it with
            cents = []
            for k in classes:
                m = (labels == k) & ~held
                cents.append(x[m].mean(axis=0) if m.any() else x[labels == k].mean(axis=0))
            cents = _unit(np.stack(cents))
            rows.append(x[held] @ cents.T)
            truth.extend([index[c]] * int(held.sum()))
        if not rows:
            return None, None
        return np.concatenate(rows), np.asarray(truth)

    def predict_proba(self, x) -> np.ndarray:
        x = self._check_predict_input(x)
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)))
        return _softmax((_unit(x) @ self.centroids_.T) / self.temperature_)


class SVMConfidence(ConfidenceModel):
    """Linear SVM with sigmoid (Platt) calibration via `CalibratedClassifierCV`, as in the paper's SVM stage.

    `cv` is the most folds to use; the folds actually used are min(cv, fewest photos (groups) of any identity).
    With fewer than `min_groups` (>= 2) photos for some identity calibration is impossible, and the model falls
    back to `SoftmaxConfidence` (see `note`, `fallback_`). Pass `groups` to `fit` so a photo's augmented copies
    (mirror, jitter) stay in one fold.
    """

    name = "svm"

    def __init__(self, c: float = 1.0, cv: int = 3, method: str = "temperature", min_groups: int = 2, seed: int = 0,
                 fallback: SoftmaxConfidence | None = None):
        if method not in ("temperature", "sigmoid", "isotonic"):
            raise OccluFaceError(f"calibration method must be temperature, sigmoid or isotonic, got {method!r}")
        if cv < 2 or min_groups < 2:
            raise OccluFaceError(f"calibration needs cv >= 2 and min_groups >= 2, got cv={cv}, min_groups={min_groups}")
        self.c = float(c)
        self.cv = int(cv)
        self.method = method
        self.min_groups = int(min_groups)
        self.seed = int(seed)
        self.fallback = fallback

    def fit(self, x, y, groups=None) -> "SVMConfidence":
        x, labels, classes = self._check_fit_input(x, y, groups)
        x = _unit(x)
        self.classes_ = classes
        self.dim_ = x.shape[1]
        groups_arr = np.arange(len(x)) if groups is None else np.asarray([str(g) for g in groups], dtype=object)
        per_class = {c: len(set(groups_arr[labels == c].tolist())) for c in classes}
        fewest = min(per_class.values())
        self.fallback_ = None
        if fewest < self.min_groups:
            short = sorted(c for c, n in per_class.items() if n < self.min_groups)
            self.fallback_ = (self.fallback or SoftmaxConfidence()).fit(x, labels, groups_arr)
            self.note = (f"SVM calibration needs >= {self.min_groups} enrolment photos per identity; "
                         f"{len(short)} identit{'y has' if len(short) == 1 else 'ies have'} fewer "
                         f"(e.g. {short[0]}), so confidences come from similarity softmax instead "
                         f"({self.fallback_.note})")
            return self
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import StratifiedGroupKFold
        from sklearn.svm import LinearSVC

        k = min(self.cv, fewest)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.seed)
        folds = list(splitter.split(x, labels, groups_arr))
        method, extra = self.method, ""
        try:
            self.model_ = CalibratedClassifierCV(LinearSVC(C=self.c, random_state=self.seed), method=method, cv=folds)
            self.model_.fit(x, labels)
        except ValueError as exc:  # scikit-learn < 1.8 has no multiclass temperature scaling
            if method != "temperature" or "method" not in str(exc):
                raise OccluFaceError(f"SVM calibration failed: {exc}") from None
            method, extra = "sigmoid", " (this scikit-learn has no temperature scaling)"
            self.model_ = CalibratedClassifierCV(LinearSVC(C=self.c, random_state=self.seed), method=method, cv=folds)
            self.model_.fit(x, labels)
        order = [list(self.model_.classes_).index(c) for c in classes]
        self.order_ = np.asarray(order)
        self.method_ = method
        self.note = f"linear SVM (C={self.c}) with {method} calibration over {k} photo-grouped folds{extra}"
        return self

    def predict_proba(self, x) -> np.ndarray:
        x = self._check_predict_input(x)
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)))
        if self.fallback_ is not None:
            return self.fallback_.predict_proba(x)
        p = self.model_.predict_proba(_unit(x))[:, self.order_]
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)


def make_confidence(name: str, **kwargs) -> ConfidenceModel:
    """'svm' or 'softmax' -> an unfitted confidence model."""
    key = str(name).strip().lower()
    if key == "svm":
        return SVMConfidence(**kwargs)
    if key == "softmax":
        return SoftmaxConfidence(**kwargs)
    raise OccluFaceError(f"unknown confidence model {name!r}; known: {', '.join(CONFIDENCE_MODELS)}")
