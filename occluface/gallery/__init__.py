"""Enrolment gallery: subjects and their embeddings in SQLite or PostgreSQL, searched with numpy or FAISS.

Code against ``GalleryStore`` (store.py) and ``search_gallery`` (search.py); ``open_gallery()`` (connect.py)
gives the single-file SQLite store for a path, the PostgreSQL store (postgres.py) for a ``postgresql://`` URL.
With a gallery key (sealing.py), templates are encrypted at rest.
FAISS is imported only when a large gallery needs it.
"""

from occluface.gallery.search import (
    ExactIndex,
    FaissIndex,
    VectorIndex,
    clear_search_cache,
    make_index,
    search_gallery,
    search_gallery_batch,
)
from occluface.gallery.store import (
    DuplicateSubjectError,
    EmbeddingError,
    EnrollResult,
    GalleryError,
    GalleryStore,
    SQLiteGalleryStore,
    SubjectInfo,
    UnknownSubjectError,
    default_gallery_path,
    seal_gallery,
    validate_embeddings,
)
from occluface.gallery.connect import open_gallery

__all__ = [
    "DuplicateSubjectError",
    "EmbeddingError",
    "EnrollResult",
    "ExactIndex",
    "FaissIndex",
    "GalleryError",
    "GalleryStore",
    "SQLiteGalleryStore",
    "SubjectInfo",
    "UnknownSubjectError",
    "VectorIndex",
    "clear_search_cache",
    "default_gallery_path",
    "make_index",
    "open_gallery",
    "seal_gallery",
    "search_gallery",
    "search_gallery_batch",
    "validate_embeddings",
]
