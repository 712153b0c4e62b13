"""Nearest-subject search over gallery embeddings: exact numpy for small galleries, FAISS for large ones.

All indexes rank by cosine similarity, computed as the inner product of L2-normalised vectors (queries are
normalised here, gallery rows are normalised by the store). ``make_index`` picks the implementation from the
gallery size; the thresholds come from ``occluface bench search`` (see reports/search) on 2 CPU cores:

* up to ``EXACT_MAX`` rows numpy is as fast as anything and needs no extra library;
* up to ``FLAT_MAX`` rows FAISS's flat index is still exact and inside the latency target (p99 < 20 ms at 100k);
* beyond that an approximate index (IVF scanning a quarter of its lists by default, or HNSW) keeps the p99 latency
  low while recall@1 against exact search stays >= 0.99.

The gallery-level index is cached per store and model and rebuilt after writes (an IVF rebuild reuses the
trained centroids). For one-query-at-a-time serving on a small busy machine, one search thread
(``faiss.omp_set_num_threads(1)``) is much faster than two: OpenMP spin-waits lose to other processes.
"""

from __future__ import annotations

import math
import threading
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from occluface.gallery.store import SEARCH_CACHE_ATTR, EmbeddingError, GalleryError

if TYPE_CHECKING:
    from occluface.gallery.store import GalleryStore

#: Galleries with at most this many rows are searched with numpy (exact).
EXACT_MAX = 20_000
#: Galleries with at most this many rows use FAISS IndexFlatIP (exact); larger ones an approximate index.
FLAT_MAX = 100_000
#: Approximate index used above ``FLAT_MAX``.
DEFAULT_APPROX = "ivf"
#: Rows per query chunk in exact numpy search, bounding the ``Q x N`` score matrix to ~256 MB.
_SCORE_BUDGET = 64 * 1024 * 1024


def _as_queries(queries: np.ndarray, dim: int | None) -> np.ndarray:
    """Queries as a normalised float32 ``Q x D`` matrix; a 1-D array is one query."""
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise EmbeddingError(f"queries must be a vector or a Q x D matrix, got shape {np.shape(queries)}")
    if not np.issubdtype(q.dtype, np.floating):
        raise EmbeddingError(f"queries must be floating point, got dtype {q.dtype}")
    if dim is not None and q.shape[0] and q.shape[1] != dim:
        raise EmbeddingError(f"queries have dimension {q.shape[1]} but the gallery index has dimension {dim}")
    if not np.isfinite(q).all():
        raise EmbeddingError("a query contains NaN or infinite values")
    q = q.astype(np.float32)
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms <= 1e-12).any():
        raise EmbeddingError("a query is a zero vector")
    return np.ascontiguousarray(q / norms)


def _as_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise EmbeddingError(f"index rows must be a N x D matrix, got shape {m.shape}")
    return np.ascontiguousarray(m, dtype=np.float32)


class VectorIndex(ABC):
    """Top-k inner-product search over a fixed set of unit vectors."""

    kind: str = "abstract"

    def __init__(self) -> None:
        self.ntotal = 0
        self.dim: int | None = None

    @abstractmethod
    def build(self, matrix: np.ndarray) -> VectorIndex:
        """Index the rows of ``matrix`` (``N x D``, expected L2-normalised); returns ``self``."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine, descending) and row indices, each ``Q x min(k, N)``.

        Approximate indexes may return fewer real hits than asked; missing slots hold index -1 and score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _as_queries(queries, self.dim)
        k = min(k, self.ntotal)
        if k == 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        return self._search(q, k)

    @abstractmethod
    def nbytes(self) -> int:
        """Approximate memory held by the index (vectors plus graph/list structures)."""

    def describe(self) -> str:
        return self.kind


class ExactIndex(VectorIndex):
    """Brute force with a BLAS matmul and ``argpartition``: exact, no build cost, fine up to ~10^4-10^5 rows."""

    kind = "exact-numpy"

    def build(self, matrix: np.ndarray) -> ExactIndex:
        self.matrix = _as_matrix(matrix)
        self.ntotal, self.dim = self.matrix.shape
        return self

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.ntotal
        chunk = max(1, _SCORE_BUDGET // max(n, 1))
        out_s = np.empty((q.shape[0], k), np.float32)
        out_i = np.empty((q.shape[0], k), np.int64)
        for start in range(0, q.shape[0], chunk):
            scores = q[start : start + chunk] @ self.matrix.T
            if k < n:
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n), scores.shape)
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # score descending, then row index for ties
            out_i[start : start + chunk] = np.take_along_axis(top, order, axis=1)
            out_s[start : start + chunk] = np.take_along_axis(top_scores, order, axis=1)
        return out_s, out_i

    def nbytes(self) -> int:
        return int(self.matrix.nbytes) if self.ntotal else 0


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise GalleryError("FAISS is not installed; `pip install faiss-cpu` (or use ExactIndex)") from exc
    return faiss


class FaissIndex(VectorIndex):
    """FAISS inner-product index: ``flat`` (exact), ``hnsw`` (graph) or ``ivf`` (inverted lists).

    Defaults are tuned with ``occluface bench search`` for recall@1 >= 0.99 against exact search:
    HNSW M=32, efConstruction=64, efSearch=64; IVF nlist ~ 4*sqrt(N) trained on 40 points per list with 10
    k-means iterations, nprobe = nlist/4 (at least 16). A quarter of the lists sounds generous, but queries that
    match their gallery row at cosine ~0.7 (an occluded face) in isotropic 128-d data need it: at 100k, nprobe
    nlist/16 gave recall@1 0.94, nlist/8 0.977, nlist/4 0.994.
    ``seed`` makes IVF training (k-means on a sample) deterministic.
    """

    KINDS = ("flat", "hnsw", "ivf")

    def __init__(
        self,
        kind: str = "flat",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"FaissIndex kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.kind_name = kind
        self.kind = f"faiss-{kind}"
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.nlist, self.nprobe, self.seed = nlist, nprobe, seed
        self.index: Any = None

    def build(self, matrix: np.ndarray, *, reuse: VectorIndex | None = None) -> FaissIndex:
        """Index ``matrix``; ``reuse``: an earlier IVF index whose trained centroids still fit (same dimension,
        size within a factor of 2 of the one it was trained on), so a rebuild after a write skips k-means."""
        faiss = _faiss()
        m = _as_matrix(matrix)
        self.ntotal, self.dim = m.shape
        d = self.dim
        template = getattr(reuse, "_trained", None)
        if (
            self.kind_name == "ivf"
            and template is not None
            and isinstance(reuse, FaissIndex)
            and reuse.dim == d
            and reuse.kind_name == "ivf"
            and 0.5 <= self.ntotal / max(reuse._trained_on, 1) <= 2.0
        ):
            index = faiss.clone_index(template)
            self.nlist, self.nprobe = reuse.nlist, reuse.nprobe
            self._trained, self._trained_on, self.reused_training = template, reuse._trained_on, True
            index.add(m)
            self.index = index
            return self
        self.reused_training = False
        if self.kind_name == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind_name == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
        else:
            n = max(self.ntotal, 1)
            nlist = self.nlist or int(min(max(1, round(4 * math.sqrt(n))), max(1, n // 39)))
            self.nlist = nlist
            self.nprobe = min(nlist, self.nprobe or max(16, nlist // 4))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = self.seed
            index.cp.niter = 10  # k-means converges enough for routing; the default 25 triples build time at 1M
            rng = np.random.default_rng(self.seed)
            n_train = min(self.ntotal, nlist * 40)  # FAISS wants >= 39 points per list
            sample = m if n_train == self.ntotal else m[np.sort(rng.choice(self.ntotal, n_train, replace=False))]
            index.train(sample)
            index.nprobe = self.nprobe
            self._quantizer = quantizer  # the IVF index points into it: keep it alive as long as self
            self._trained, self._trained_on = faiss.clone_index(index), self.ntotal  # empty, centroids only
        if self.ntotal:
            index.add(m)
        self.index = index
        return self

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, idx = self.index.search(q, k)
        scores = scores.astype(np.float32)
        scores[idx < 0] = -np.inf
        return scores, idx.astype(np.int64)

    def nbytes(self) -> int:
        if self.index is None or not self.ntotal:
            return 0
        vectors = self.ntotal * self.dim * 4
        if self.kind_name == "hnsw":
            hnsw = self.index.hnsw
            return int(vectors + hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4)
        if self.kind_name == "ivf":
            return int(vectors + self.ntotal * 8 + self.index.nlist * self.dim * 4)
        return int(vectors)

    def describe(self) -> str:
        if self.kind_name == "hnsw":
            return f"faiss-hnsw (M={self.hnsw_m}, efConstruction={self.ef_construction}, efSearch={self.ef_search})"
        if self.kind_name == "ivf":
            return f"faiss-ivf (nlist={self.nlist}, nprobe={self.nprobe})"
        return "faiss-flat"


def make_index(
    n: int, d: int | None = None, *, exact_max: int | None = None, flat_max: int | None = None, approx: str | None = None
) -> VectorIndex:
    """The index kind that suits a gallery of ``n`` rows (defaults: the module's ``EXACT_MAX``, ``FLAT_MAX``,
    ``DEFAULT_APPROX``; ``d`` is accepted for future dimension-aware choices)."""
    if n <= (EXACT_MAX if exact_max is None else exact_max):
        return ExactIndex()
    if n <= (FLAT_MAX if flat_max is None else flat_max):
        return FaissIndex("flat")
    return FaissIndex(approx or DEFAULT_APPROX)


# ----------------------------------------------------------------------------- gallery-level search
@dataclass
class _Cached:
    revision: Any
    index: VectorIndex
    names: np.ndarray  # subject name per row
    max_rows_per_subject: int


#: Built indexes live on the store itself (attribute ``search_cache``: (model, version) -> _Cached), so the
#: store can drop them when it closes without importing this module; ``_stores`` lets them all be cleared.
_stores: "weakref.WeakSet[Any]" = weakref.WeakSet()
_cache_lock = threading.Lock()


def _entries(store: GalleryStore) -> dict[tuple[str, str | None], _Cached]:
    _stores.add(store)
    return store.__dict__.setdefault(SEARCH_CACHE_ATTR, {})


def clear_search_cache(store: GalleryStore | None = None) -> None:
    """Forget built indexes (all, or one store's); they are rebuilt on the next search."""
    with _cache_lock:
        for s in ([store] if store is not None else list(_stores)):
            s.__dict__.pop(SEARCH_CACHE_ATTR, None)


def _index_for(store: GalleryStore, model_id: str, model_version: str | None) -> _Cached | None:
    revision = store.revision
    key = (model_id, model_version)
    if revision is not None:
        with _cache_lock:
            hit = _entries(store).get(key)
        if hit is not None and hit.revision == revision:
            return hit
    matrix, names = store.embeddings(model_id, model_version=model_version)
    if not names:
        others = sorted(store.models())
        if others and model_id not in others:
            raise GalleryError(
                f"the gallery holds no embeddings for model {model_id!r} (it has: {', '.join(others)}); "
                "search with the backbone the subjects were enrolled with"
            )
        return None
    names_arr = np.asarray(names, dtype=object)
    _, counts = np.unique(names_arr.astype(str), return_counts=True)
    index = make_index(len(names), matrix.shape[1])
    with _cache_lock:
        previous = _entries(store).get(key)
    if isinstance(index, FaissIndex) and previous is not None:
        index.build(matrix, reuse=previous.index)
    else:
        index.build(matrix)
    entry = _Cached(revision, index, names_arr, int(counts.max()))
    if revision is not None:
        with _cache_lock:
            _entries(store)[key] = entry
    return entry


def search_gallery_batch(
    store: GalleryStore, model_id: str, queries: np.ndarray, k: int = 5, *, model_version: str | None = None
) -> list[list[tuple[str, float]]]:
    """Top-``k`` subjects per query as ``(name, cosine score)``, best first; a subject scores its best embedding.

    The index is cached per store and model and rebuilt when the store's ``revision`` changes (any write).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    native = store.native_search(model_id, queries, k, model_version=model_version)
    if native is not None:
        return native
    entry = _index_for(store, model_id, model_version)
    if entry is None:
        return [[] for _ in range(_as_queries(queries, None).shape[0])]
    # k subjects are guaranteed among the top k * (most rows any subject has) rows.
    rows = min(entry.index.ntotal, k * entry.max_rows_per_subject)
    scores, idx = entry.index.search(queries, rows)
    results = []
    for srow, irow in zip(scores, idx, strict=True):
        best: dict[str, float] = {}
        for s, i in zip(srow, irow, strict=True):
            if i < 0:
                continue
            name = entry.names[i]
            if name not in best:
                best[name] = float(s)
                if len(best) == k:
                    break
        results.append(list(best.items()))
    return results


def search_gallery(
    store: GalleryStore, model_id: str, query: np.ndarray, k: int = 5, *, model_version: str | None = None
) -> list[tuple[str, float]]:
    """Top-``k`` ``(name, score)`` for one query embedding (see ``search_gallery_batch``)."""
    q = np.asarray(query)
    if q.ndim == 2 and q.shape[0] != 1:
        raise EmbeddingError(f"search_gallery takes one query, got shape {q.shape}; use search_gallery_batch")
    return search_gallery_batch(store, model_id, q.reshape(1, -1), k, model_version=model_version)[0]


__all__ = [
    "DEFAULT_APPROX",
    "EXACT_MAX",
    "FLAT_MAX",
    "ExactIndex",
    "FaissIndex",
    "VectorIndex",
    "clear_search_cache",
    "make_index",
    "search_gallery",
    "search_gallery_batch",
]
