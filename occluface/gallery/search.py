"""Nearest-subject search over gallery embeddings: exact numpy for small galleries, FAISS for large ones.

All indexes rank by cosine similarity, computed as the inner product of L2-normalised vectors (queries are
normalised here, gallery rows are normalised by the store). ``make_index`` picks the implementation from the
gallery size; the thresholds come from ``occluface bench search`` (see reports/search) on 2 CPU cores:

* up to ``EXACT_MAX`` rows numpy is as fast as anything and needs no extra library;
* up to ``FLAT_MAX`` rows FAISS's flat index is still exact and inside the latency target (p99 < 20 ms at 100k);
* beyond that an approximate index (IVF scanning a quarter of its lists by default, or HNSW) keeps the p99 latency
  low while recall@1 against exact search stays >= 0.99.

The gallery-level index is cached per store and model and follows writes in place: the store's change log
lists each enrolled or removed embedding, and the index adds or drops just those vectors (FAISS ``add_with_ids``
/ ``remove_ids``), in every process that shares the gallery. It is rebuilt only after a model reset, when it
outgrows its kind, or for HNSW deletes (an IVF rebuild reuses the trained centroids). For one-query-at-a-time serving on a small busy machine, one search thread
(``faiss.omp_set_num_threads(1)``) is much faster than two: OpenMP spin-waits lose to other processes.
"""

from __future__ import annotations

import math
import threading
import weakref
from abc import ABC, abstractmethod
from collections import Counter
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
    """Top-k inner-product search over a set of unit vectors, each known by an integer id.

    ``build(matrix, ids)`` indexes rows (ids default to the row numbers); ``add`` and ``remove`` change the set in
    place, so a gallery index follows enrolments and removals without a rebuild (``supports_remove`` is False
    for HNSW, whose graph cannot drop points: the gallery search rebuilds it instead). ``search`` returns ids.
    """

    kind: str = "abstract"
    supports_remove = True

    def __init__(self) -> None:
        self.ntotal = 0
        self.dim: int | None = None

    @abstractmethod
    def build(self, matrix: np.ndarray, ids: np.ndarray | None = None) -> VectorIndex:
        """Index the rows of ``matrix`` (``N x D``, expected L2-normalised) under ``ids``; returns ``self``."""

    @abstractmethod
    def add(self, matrix: np.ndarray, ids: np.ndarray) -> None:
        """Add rows under new ids."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Drop the rows with these ids (unknown ids are ignored); how many went."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine, descending) and row ids, each ``Q x min(k, N)``.

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


def _as_ids(ids: np.ndarray | None, n: int) -> np.ndarray:
    out = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64).reshape(-1)
    if len(out) != n:
        raise EmbeddingError(f"{len(out)} ids for {n} index rows")
    return out


class ExactIndex(VectorIndex):
    """Brute force with a BLAS matmul and ``argpartition``: exact, no build cost, fine up to ~10^4-10^5 rows.

    Rows live in a buffer with spare capacity, so ``add`` is amortised O(rows added)."""

    kind = "exact-numpy"

    def __init__(self) -> None:
        super().__init__()
        self._buf, self._ids = np.zeros((0, 0), np.float32), np.zeros(0, np.int64)

    def build(self, matrix: np.ndarray, ids: np.ndarray | None = None) -> ExactIndex:
        m = _as_matrix(matrix)
        self._buf, self._ids = m.copy(), _as_ids(ids, len(m))
        self.ntotal, self.dim = m.shape
        return self

    @property
    def matrix(self) -> np.ndarray:
        return self._buf[: self.ntotal]

    def add(self, matrix: np.ndarray, ids: np.ndarray) -> None:
        m = _as_matrix(matrix)
        if not len(m):
            return
        if self.dim is None:
            self.build(np.zeros((0, m.shape[1]), np.float32))
        if m.shape[1] != self.dim:
            raise EmbeddingError(f"index rows have dimension {m.shape[1]}, the index {self.dim}")
        need = self.ntotal + len(m)
        if need > len(self._buf):
            grow = max(need, 2 * len(self._buf), 64)
            self._buf = np.concatenate([self._buf[: self.ntotal], np.zeros((grow - self.ntotal, self.dim), np.float32)])
            self._ids = np.concatenate([self._ids[: self.ntotal], np.zeros(grow - self.ntotal, np.int64)])
        self._buf[self.ntotal : need] = m
        self._ids[self.ntotal : need] = _as_ids(ids, len(m))
        self.ntotal = need

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids[: self.ntotal], np.asarray(ids, np.int64))
        gone = int((~keep).sum())
        if gone:
            self._buf, self._ids = self._buf[: self.ntotal][keep], self._ids[: self.ntotal][keep]
            self.ntotal = len(self._ids)
        return gone

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.ntotal
        rows = self.matrix
        chunk = max(1, _SCORE_BUDGET // max(n, 1))
        out_s = np.empty((q.shape[0], k), np.float32)
        out_i = np.empty((q.shape[0], k), np.int64)
        for start in range(0, q.shape[0], chunk):
            scores = q[start : start + chunk] @ rows.T
            if k < n:
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n), scores.shape)
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # score descending, then row for ties
            out_i[start : start + chunk] = self._ids[np.take_along_axis(top, order, axis=1)]
            out_s[start : start + chunk] = np.take_along_axis(top_scores, order, axis=1)
        return out_s, out_i

    def nbytes(self) -> int:
        return int(self.ntotal * (self.dim or 0) * 4) if self.ntotal else 0


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

    def build(self, matrix: np.ndarray, ids: np.ndarray | None = None, *, reuse: VectorIndex | None = None) -> FaissIndex:
        """Index ``matrix`` under ``ids``; ``reuse``: an earlier IVF index whose trained centroids still fit (same
        dimension, size within a factor of 2 of the one it was trained on), so a rebuild skips k-means."""
        faiss = _faiss()
        m = _as_matrix(matrix)
        ids = _as_ids(ids, len(m))
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
            index.nprobe = self.nprobe
            index.add_with_ids(m, ids)
            self.index = index
            return self
        self.reused_training = False
        if self.kind_name == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        elif self.kind_name == "hnsw":
            graph = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.ef_construction
            graph.hnsw.efSearch = self.ef_search
            self._graph = graph  # the id map points into it: keep it alive as long as self
            index = faiss.IndexIDMap(graph)
            self.supports_remove = False
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
            index.add_with_ids(m, ids)
        self.index = index
        return self

    def add(self, matrix: np.ndarray, ids: np.ndarray) -> None:
        m = _as_matrix(matrix)
        if not len(m):
            return
        if m.shape[1] != self.dim:
            raise EmbeddingError(f"index rows have dimension {m.shape[1]}, the index {self.dim}")
        self.index.add_with_ids(m, _as_ids(ids, len(m)))
        self.ntotal = int(self.index.ntotal)

    def remove(self, ids: np.ndarray) -> int:
        if not self.supports_remove:
            raise GalleryError(f"{self.describe()} cannot remove vectors; rebuild it")
        ids = np.ascontiguousarray(np.asarray(ids, np.int64).reshape(-1))
        if not len(ids):
            return 0
        faiss = _faiss()
        gone = int(self.index.remove_ids(faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))))
        self.ntotal = int(self.index.ntotal)
        return gone

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
            hnsw = self._graph.hnsw
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
class _Cached:
    """One model's index over a store, the subject of each embedding id, and the change it is current with.

    ``revision`` is the store's change sequence (or ``revision`` for stores without a change log). ``lock``
    guards the index: FAISS indexes may not be searched while vectors are added or removed."""

    def __init__(self, revision: Any, index: VectorIndex, ids: np.ndarray, names: list[str]):
        self.revision = revision
        self.index = index
        self.names: dict[int, str] = dict(zip((int(i) for i in ids), names))
        self.counts = Counter(names)
        self.max_rows_per_subject = max(self.counts.values(), default=1)
        self.lock = threading.Lock()
        self.built_rows = len(names)
        self.applied = 0  # changes applied in place since the build

    def apply(self, store: GalleryStore, model_id: str, model_version: str | None, changes: list) -> bool:
        """Apply the store's changes in place; ``False`` when only a rebuild will do (a model reset, an index
        that cannot drop vectors, or one that outgrew its kind or its trained lists)."""
        final: dict[int, str] = {}
        for c in changes:
            if c.model_id != model_id or (model_version is not None and c.model_version not in (None, model_version)):
                continue
            if c.op == "reset" or c.embedding_id is None:
                return False
            final[int(c.embedding_id)] = c.op  # the last change of an id decides (SQLite may reuse a freed id)
        if not final:
            return True
        touched = np.fromiter(final, np.int64)
        present = [i for i in touched.tolist() if i in self.names]
        if present:
            if not self.index.supports_remove:
                return False
            self.index.remove(np.asarray(present, np.int64))
            for i in present:
                name = self.names.pop(i)
                self.counts[name] -= 1
                if not self.counts[name]:
                    del self.counts[name]
            self.max_rows_per_subject = max(self.counts.values(), default=1)
        adds = [i for i, op in final.items() if op == "add"]
        if adds:
            ids, matrix, names = store.embedding_rows(model_id, model_version=model_version, ids=adds)
            if len(ids):
                self.index.add(matrix, ids)
                for i, name in zip(ids.tolist(), names):
                    self.names[i] = name
                    self.counts[name] += 1
                    self.max_rows_per_subject = max(self.max_rows_per_subject, self.counts[name])
        self.applied += len(final)
        n = self.index.ntotal
        outgrown = make_index(max(n, 1)).kind != self.index.kind or n > 2 * max(self.built_rows, 1)
        return not outgrown


#: Built indexes live on the store itself (attribute ``search_cache``: (model, version) -> _Cached), so the
#: store can drop them when it closes without importing this module; ``_stores`` lets them all be cleared.
_stores: "weakref.WeakSet[Any]" = weakref.WeakSet()
_cache_lock = threading.Lock()


def _entries(store: GalleryStore) -> dict[tuple[str, str | None], _Cached]:
    _stores.add(store)
    return store.__dict__.setdefault(SEARCH_CACHE_ATTR, {})


def _build_lock(store: GalleryStore) -> threading.Lock:
    with _cache_lock:
        return store.__dict__.setdefault(SEARCH_CACHE_ATTR + "_build_lock", threading.Lock())


def clear_search_cache(store: GalleryStore | None = None) -> None:
    """Forget built indexes (all, or one store's); they are rebuilt on the next search."""
    with _cache_lock:
        for s in ([store] if store is not None else list(_stores)):
            s.__dict__.pop(SEARCH_CACHE_ATTR, None)


def _caught_up(store: GalleryStore, entry: _Cached, model_id: str, model_version: str | None, seq: int) -> bool:
    """Bring ``entry`` (held under its lock) up to the store's change ``seq`` in place; False: rebuild."""
    if entry.revision == seq:
        return True
    changes = store.changes_since(entry.revision)
    if changes is None or not entry.apply(store, model_id, model_version, changes):
        return False
    entry.revision = changes[-1].seq if changes else seq
    return True


def _build(store: GalleryStore, model_id: str, model_version: str | None, previous: _Cached | None) -> _Cached | None:
    seq = store.change_seq()
    revision = store.revision if seq is None else seq  # read before the rows: later changes are re-applied
    ids, matrix, names = store.embedding_rows(model_id, model_version=model_version)
    if not names:
        others = sorted(store.models())
        if others and model_id not in others:
            raise GalleryError(
                f"the gallery holds no embeddings for model {model_id!r} (it has: {', '.join(others)}); "
                "search with the backbone the subjects were enrolled with"
            )
        return None
    index = make_index(len(names), matrix.shape[1])
    if isinstance(index, FaissIndex) and previous is not None:
        index.build(matrix, ids, reuse=previous.index)
    else:
        index.build(matrix, ids)
    return _Cached(revision, index, ids, names)


def _index_for(store: GalleryStore, model_id: str, model_version: str | None) -> _Cached | None:
    """The cached index of one model, current with the store: changes applied in place where the store logs
    them, else rebuilt whenever ``revision`` changes (``None``: never cached)."""
    key = (model_id, model_version)
    if not store.cacheable:  # inside an open transaction: what it sees may roll back
        return _build(store, model_id, model_version, None)
    seq = store.change_seq()
    with _cache_lock:
        hit = _entries(store).get(key)
    if hit is not None:
        if seq is None:
            if store.revision is not None and hit.revision == store.revision:
                return hit
        else:
            with hit.lock:
                if _caught_up(store, hit, model_id, model_version, seq):
                    return hit
    with _build_lock(store):  # concurrent first searches wait for one build instead of each building one
        with _cache_lock:
            fresh = _entries(store).get(key)
        if fresh is not None and fresh is not hit:  # built by another thread meanwhile
            with fresh.lock:
                if _caught_up(store, fresh, model_id, model_version, store.change_seq()):
                    return fresh
        entry = _build(store, model_id, model_version, hit)
        if entry is not None and entry.revision is not None:
            with _cache_lock:
                _entries(store)[key] = entry
    return entry


def search_gallery_batch(
    store: GalleryStore, model_id: str, queries: np.ndarray, k: int = 5, *, model_version: str | None = None
) -> list[list[tuple[str, float]]]:
    """Top-``k`` subjects per query as ``(name, cosine score)``, best first; a subject scores its best embedding.

    The index is cached per store and model and kept current with every write: enrolments and removals made
    by any process are applied in place from the store's change log (see ``_index_for``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    native = store.native_search(model_id, queries, k, model_version=model_version)
    if native is not None:
        return native
    entry = _index_for(store, model_id, model_version)
    if entry is None:
        return [[] for _ in range(_as_queries(queries, None).shape[0])]
    with entry.lock:
        # k subjects are guaranteed among the top k * (most rows any subject has) rows.
        rows = max(1, min(entry.index.ntotal, k * entry.max_rows_per_subject))
        if entry.index.ntotal == 0:
            return [[] for _ in range(_as_queries(queries, None).shape[0])]
        scores, idx = entry.index.search(queries, rows)
        names = entry.names
        results = []
        for srow, irow in zip(scores, idx, strict=True):
            best: dict[str, float] = {}
            for s, i in zip(srow.tolist(), irow.tolist(), strict=True):
                if i < 0:
                    continue
                name = names[i]
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
