"""Enrolment gallery: subjects and their embeddings in SQLite, searched with numpy or FAISS.

Code against ``GalleryStore`` (store.py) and ``search_gallery`` (search.py); ``open_gallery()`` gives the
default single-file SQLite store. FAISS is imported only when a large gallery needs it.
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
    open_gallery,
    validate_embeddings,
)

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
    "search_gallery",
    "search_gallery_batch",
    "validate_embeddings",
]
