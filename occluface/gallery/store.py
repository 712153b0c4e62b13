"""Enrolment gallery storage: who is enrolled, and their face embeddings per backbone.

``GalleryStore`` is the small interface the rest of occluface codes against. ``SQLGalleryStore`` implements it
once in SQL, for two backends: ``SQLiteGalleryStore`` (the embedded single-file default, one machine) and
``occluface.gallery.postgres.PostgresGalleryStore`` (several API processes or hosts on one server database).
``occluface.gallery.connect.open_gallery`` picks one from a path or a ``postgresql://`` URL. Every write is also logged in a change table,
so each process's in-memory search index applies inserts and deletes as they happen instead of rebuilding. A
store on a server-based vector database can instead override ``native_search`` so searches run there.

Privacy and integrity rules built in here, because a face gallery is biometric data:

* the file is created owner-only (0600) inside an owner-only folder (0700) when that folder is created here;
* every write is one transaction: a bad embedding or a crash mid-enrolment leaves the gallery as it was;
* removing a subject deletes every trace (rows cascade, ``secure_delete`` zeroes the freed bytes, the WAL is
  checkpointed and truncated and the file is vacuumed), so the embedding bytes are gone from disk;
* optionally (a gallery key, :mod:`occluface.gallery.sealing`), templates are encrypted at rest: every vector,
  enrolment thumbnail and check-in thumbnail is sealed with AES-GCM on its way in and opened on its way out,
  in one place (``_pack_vector`` / ``_unpack_vector`` / ``_pack_image`` / ``_unpack_image``), for both backends.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from occluface.errors import (  # noqa: F401  (the gallery's errors, importable from here too)
    DuplicateSubjectError,
    EmbeddingError,
    GalleryError,
    OccluFaceError,
    UnknownSubjectError,
)
from occluface.gallery.sealing import KEY_ENV, KEY_FILE_ENV, OVERHEAD, KeyArg, Sealer, load_sealer

#: The attribute under which occluface.gallery.search keeps the indexes it built for a store (dropped on close).
SEARCH_CACHE_ATTR = "search_cache"
#: Bump when the schema changes; older galleries are migrated when opened, newer ones are refused.
#: 1: subjects, embeddings, thumbnails. 2: + the change log (``changes``), API keys. 3: + camera check-ins.
#: 4: + the audit trail. 5: + ``gallery_meta`` (the key check value of a sealed gallery); a vector's length check
#: also admits a sealed vector.
#: 6: + API key scopes, expiry and revocation.
SCHEMA_VERSION = 6
#: Longest subject name accepted (names end up in reports and UIs).
MAX_NAME_LENGTH = 128
#: Largest thumbnail accepted per embedding; thumbnails are small previews, not archives of photos.
MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024
GALLERY_FILENAME = "gallery.sqlite3"


@dataclass(frozen=True)
class SubjectInfo:
    """One enrolled person: ``embeddings`` maps model id -> number of stored embeddings."""

    id: int
    name: str
    created: str
    embeddings: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total_embeddings(self) -> int:
        return sum(self.embeddings.values())


@dataclass(frozen=True)
class EnrollResult:
    """What one ``enroll`` call wrote."""

    subject_id: int
    subject_created: bool
    embedding_ids: list[int]


def default_gallery_path() -> Path:
    """``<user data dir>/occluface/gallery.sqlite3`` (platformdirs), so the gallery survives reinstalls."""
    import platformdirs

    return Path(platformdirs.user_data_dir("occluface")) / GALLERY_FILENAME


def validate_name(name: object) -> str:
    """The one name rule of the CLI, the API and the web page (``static/app.js`` mirrors it): normalised (NFC,
    stripped), not empty, at most :data:`MAX_NAME_LENGTH` characters, every character printable (no control,
    format or line-separator characters; the plain space is allowed)."""
    if not isinstance(name, str):
        raise GalleryError(f"subject name must be a string, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise GalleryError("subject name is empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise GalleryError(f"subject name is {len(clean)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    if not clean.isprintable():
        raise GalleryError(f"subject name {clean!r} contains control characters or other unprintable characters "
                           "(tabs, line breaks, direction marks, ...)")
    return clean


def validate_embeddings(
    embeddings: object, *, expected_dim: int | None = None, sources: Sequence[str] | None = None, what: str = "embedding"
) -> np.ndarray:
    """Check a batch of embeddings and return it as L2-normalised float32 ``N x D``.

    Everything is checked before anything is written, so a single bad row (NaN from a failed forward pass,
    a vector from a different backbone) rejects the whole batch with a message naming the row and its source.
    A 1-D array is taken as one embedding.
    """
    if not isinstance(embeddings, np.ndarray):
        raise EmbeddingError(f"{what}s must be a numpy array, got {type(embeddings).__name__}")
    arr = embeddings
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise EmbeddingError(f"{what}s must be a N x D matrix, got shape {embeddings.shape}")
    n, d = arr.shape
    if n == 0 or d == 0:
        raise EmbeddingError(f"{what}s are empty (shape {embeddings.shape})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise EmbeddingError(f"{what}s must be floating point, got dtype {arr.dtype}")
    if expected_dim is not None and d != expected_dim:
        raise EmbeddingError(
            f"{what}s have dimension {d} but this model's gallery embeddings have dimension {expected_dim} "
            "(was a different backbone used?)"
        )

    def label(i: int) -> str:
        src = f" ({sources[i]})" if sources is not None and i < len(sources) else ""
        return f"{what} row {i}{src}"

    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise EmbeddingError(f"{label(i)} contains NaN or infinite values")
    as64 = arr.astype(np.float64)
    norms = np.linalg.norm(as64, axis=1)
    if (norms <= 1e-12).any():
        i = int(np.flatnonzero(norms <= 1e-12)[0])
        raise EmbeddingError(f"{label(i)} is a zero vector and has no direction to compare")
    return (as64 / norms[:, None]).astype(np.float32)


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def erased_name(name: str) -> str:
    """How the audit line of an erasure names the person: ``sha256:<digest of the normalised name>``."""
    import hashlib

    return "sha256:" + hashlib.sha256(validate_name(name).encode("utf-8")).hexdigest()


def _utcnow_ms() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class GalleryStore(ABC):
    """Storage interface for enrolled subjects and their embeddings (one row per enrolment image and model).

    Implementations must make ``enroll`` all-or-nothing and ``remove_subject`` remove every trace of the
    subject. ``revision`` must change whenever the stored embeddings may have changed (search caches key on it);
    return ``None`` to disable caching.
    """

    @abstractmethod
    def add_subject(self, name: str, meta: dict[str, Any] | None = None, *, exist_ok: bool = False) -> int:
        """Create a subject with no embeddings yet and return its id."""

    @abstractmethod
    def get_subject(self, name: str, *, strict: bool = False) -> SubjectInfo | None:
        """The subject's info, or ``None`` (``UnknownSubjectError`` when ``strict``)."""

    @abstractmethod
    def list_subjects(self) -> list[SubjectInfo]:
        """All subjects, sorted by name."""

    @abstractmethod
    def remove_subject(self, name: str, *, strict: bool = False) -> bool:
        """Delete the subject and all its data; ``False`` if unknown (``UnknownSubjectError`` when ``strict``)."""

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray,
        *,
        model_id: str,
        model_version: str,
        sources: Sequence[str] | None = None,
        thumbnails: Sequence[bytes] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> EnrollResult:
        """Store ``N x D`` embeddings for ``name`` (created if new) in one all-or-nothing transaction.

        Embeddings are stored L2-normalised. The dimension must match what the gallery already holds for
        ``model_id``, and so must ``model_version``: embeddings of two versions of a backbone live in different
        spaces and cannot be compared (re-enrol after ``remove_embeddings(model_id)``). ``sources`` (e.g. image
        file names) and ``thumbnails`` (encoded image bytes) are optional but, when given, need one entry per row.
        What needs no database is checked here, for every backend; :meth:`_write_enrolment` does the rest.
        """
        name, sources, thumbnails = _check_enrolment(name, embeddings, model_id, model_version, sources, thumbnails)
        meta_json = _meta_json(meta) if meta is not None else None
        return self._write_enrolment(name, embeddings, model_id, model_version, sources, thumbnails, meta_json)

    @abstractmethod
    def _write_enrolment(self, name: str, embeddings: np.ndarray, model_id: str, model_version: str,
                         sources: list[str] | None, thumbnails: list[bytes] | None, meta_json: str | None) -> EnrollResult:
        """Check the embeddings against what is stored and write them, all or nothing (inputs already checked)."""

    @abstractmethod
    def embeddings(self, model_id: str, *, model_version: str | None = None) -> tuple[np.ndarray, list[str]]:
        """All embeddings of one model as an L2-normalised float32 ``N x D`` matrix and the subject per row."""

    @abstractmethod
    def remove_embeddings(self, model_id: str, *, model_version: str | None = None) -> int:
        """Delete every embedding of a model (version), e.g. before re-enrolling with a retrained backbone."""

    @abstractmethod
    def thumbnails(self, name: str, *, model_id: str | None = None) -> list[bytes]:
        """Stored thumbnails of a subject, in enrolment order."""

    @abstractmethod
    def models(self) -> dict[str, dict[str, Any]]:
        """Model ids present in the gallery -> ``{"dim", "count", "versions"}``."""

    @abstractmethod
    def transaction(self) -> Any:
        """Context manager: everything inside commits together or not at all."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; further use raises ``GalleryError``."""

    @property
    @abstractmethod
    def revision(self) -> Hashable | None:
        """Changes whenever stored embeddings may have changed (``None``: never cache)."""

    def changes_since(self, seq: int) -> list | None:
        """Embedding changes committed after change ``seq`` (see :class:`Change`), or ``None`` when the store
        keeps no change log or cannot list them all: search indexes then rebuild when ``revision`` changes."""
        return None

    def change_seq(self) -> int | None:
        """Sequence number of the newest committed change (``None``: no change log)."""
        return None

    #: May search indexes built now be cached (see :attr:`SQLGalleryStore.cacheable`)?
    cacheable = True

    def embedding_rows(self, model_id: str, *, model_version: str | None = None,
                       ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(row ids, N x D matrix, subject names)``; stores without embedding ids number the rows."""
        if ids is not None:
            raise NotImplementedError(f"{type(self).__name__} cannot fetch embeddings by id")
        matrix, names = self.embeddings(model_id, model_version=model_version)
        return np.arange(len(names), dtype=np.int64), matrix, names

    def native_search(
        self, model_id: str, queries: np.ndarray, k: int, *, model_version: str | None = None
    ) -> list[list[tuple[str, float]]] | None:
        """Server-backed stores return per-query ``(name, score)`` lists here; ``None`` means search locally."""
        return None

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Change(NamedTuple):
    """One committed change to the stored embeddings, in commit order (``seq`` grows with every change).

    ``op`` is ``"add"`` or ``"del"`` (one embedding, ``embedding_id``) or ``"reset"`` (every embedding of
    ``model_id``/``model_version`` may have gone: rebuild from the store)."""

    seq: int
    op: str
    embedding_id: int | None
    model_id: str
    model_version: str | None


#: Change-log rows kept; a reader further behind than this rebuilds its index from the store.
CHANGE_LOG_KEEP = 100_000


class SQLGalleryStore(GalleryStore):
    """The gallery in SQL, written once for every backend (SQLite here, PostgreSQL in ``gallery.postgres``).

    Subclasses provide the connection: :meth:`_rows`, :meth:`_exec` and :meth:`_insert` (each runs one
    statement written with ``?`` placeholders; psycopg gets ``%s``), :meth:`transaction`, :meth:`scrub`, :meth:`close` and
    :attr:`location` (for messages). Every write also appends to the ``changes`` table in the same transaction,
    so search indexes in any process can follow writes one by one (:meth:`changes_since`) instead of
    rebuilding; writers are serialised, so ``seq`` order is commit order.
    """

    location: str = "gallery"  # where the store is, for messages: a file path or a URL without its password

    # ------------------------------------------------------------------ what a backend provides
    @abstractmethod
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """All result rows of one statement."""

    @abstractmethod
    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    def _insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one ``INSERT ... RETURNING id``; the new id."""
        return int(self._rows(sql + " RETURNING id", args)[0][0])

    def _one(self, sql: str, args: Sequence[Any] = ()) -> tuple | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def _serialise_writers(self) -> None:
        """Called in a write transaction before its change rows: make ``seq`` order the commit order."""

    @property
    @abstractmethod
    def cacheable(self) -> bool:
        """False inside this thread's open transaction: what it sees may still roll back, so nothing read
        then may be cached under a change number."""

    def _deleted(self) -> None:
        """Data was deleted in the current transaction: purge freed copies once it commits."""

    #: which of :data:`DIALECTS` the backend speaks
    dialect = "sqlite"

    def _migrate(self, current: int) -> None:
        """Bring the schema from version ``current`` (0: empty) to :data:`SCHEMA_VERSION`, inside the caller's
        transaction (which the backend holds exclusively, so two processes opening at once migrate once)."""
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in schema_statements(version, self.dialect):
                self._exec(statement)
        if current != SCHEMA_VERSION:
            self._exec("DELETE FROM schema_version")
            self._exec("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    # ------------------------------------------------------------------ templates encrypted at rest
    #: the gallery key this store seals and opens templates with (``None``: a plain gallery)
    _sealer: Sealer | None = None

    @property
    def sealed(self) -> bool:
        """Are this gallery's templates (vectors, enrolment and check-in thumbnails) encrypted at rest?"""
        return self._sealer is not None

    def _seal_mark(self) -> str | None:
        """The stored key check value: present exactly when the gallery is sealed."""
        row = self._one("SELECT value FROM gallery_meta WHERE key = 'sealed'")
        return None if row is None else str(row[0])

    def _holds_templates(self) -> bool:
        return bool(self._one("SELECT 1 FROM embeddings LIMIT 1")
                    or self._one("SELECT 1 FROM checkins WHERE thumbnail IS NOT NULL LIMIT 1"))

    def _open_sealing(self, sealer: Sealer | None) -> None:
        """Called once the schema is current: check the key against the gallery, both ways. A sealed gallery
        needs its key; a key given for a gallery holding plain templates is refused (convert it with
        :meth:`seal`); an empty gallery opened with a key becomes sealed."""
        mark = self._seal_mark()
        if mark is None and sealer is not None:
            with self.transaction():
                self._serialise_writers()
                mark = self._seal_mark()
                if mark is None:
                    if self._holds_templates():
                        raise GalleryError(
                            f"{self.location}: a gallery key was given ({sealer.source}), but this gallery holds face "
                            "templates that are not encrypted; seal them in place first (`occluface gallery-key seal`, "
                            "or seal_gallery(store, key) on a store opened without a key), or open it without a key"
                        )
                    self._exec("INSERT INTO gallery_meta (key, value) VALUES ('sealed', ?)", (sealer.check_value(),))
                    self._sealer = sealer
                    return
        if mark is not None:
            if sealer is None:
                raise GalleryError(
                    f"{self.location}: the gallery is sealed (its face templates are encrypted at rest) and no gallery "
                    f"key was given; set ${KEY_FILE_ENV} to its key file (or ${KEY_ENV} to the key)"
                )
            sealer.verify(mark, where=self.location)
        self._sealer = sealer

    def _refuse_plain_write_if_sealed(self) -> None:
        """Inside a write of a store opened without a key: refuse if another process has sealed the gallery
        since (the writer lock first, so a conversion running now has either committed or not begun)."""
        self._serialise_writers()
        if self._seal_mark() is not None:
            raise GalleryError(f"{self.location}: the gallery was sealed after this process opened it; reopen it "
                               f"with its key (${KEY_FILE_ENV}) before writing face data")

    @staticmethod
    def _vector_aad(subject_id: int, model_id: str, model_version: str, dim: int) -> bytes:
        return json.dumps(["vector", int(subject_id), model_id, model_version, int(dim)], separators=(",", ":")).encode()

    def _pack_vector(self, vec: np.ndarray, subject_id: int, model_id: str, model_version: str) -> bytes:
        """How one embedding is stored: float32 little-endian bytes, sealed when the gallery is."""
        plain = np.ascontiguousarray(vec, dtype="<f4").tobytes()
        dim = int(np.size(vec))
        if vec.ndim != 1 or len(plain) != 4 * dim:
            raise EmbeddingError(f"{self.location}: an embedding to store must be one float32 vector, got shape {vec.shape}")
        if self._sealer is None:
            return plain
        return self._sealer.seal(plain, self._vector_aad(subject_id, model_id, model_version, dim))

    def _unpack_vector(self, blob: bytes, dim: int, subject_id: int, model_id: str, model_version: str,
                       embedding_id: int) -> bytes:
        """The float32 bytes of one stored embedding (opened when sealed), their length checked."""
        blob = bytes(blob)
        dim = int(dim)
        if self._sealer is not None:
            blob = self._sealer.open(blob, self._vector_aad(subject_id, model_id, model_version, dim),
                                     what=f"embedding {embedding_id}", where=self.location)
        elif len(blob) == 4 * dim + OVERHEAD:
            raise GalleryError(f"{self.location}: embedding {embedding_id} is sealed, but the gallery was opened "
                               f"without its key; reopen it with its key (${KEY_FILE_ENV})")
        if len(blob) != 4 * dim:
            raise GalleryError(f"{self.location}: embedding {embedding_id} is {len(blob)} bytes for dimension {dim}; "
                               "the store is inconsistent")
        return blob

    @staticmethod
    def _image_aad(kind: str, row_id: int) -> bytes:
        return f"{kind}:{int(row_id)}".encode()

    def _pack_image(self, image: bytes, kind: str, row_id: int) -> bytes:
        """How a face image (``kind``: ``thumbnail`` of embedding ``row_id``, ``checkin`` thumbnail) is stored."""
        if self._sealer is None:
            return bytes(image)
        return self._sealer.seal(bytes(image), self._image_aad(kind, row_id))

    def _unpack_image(self, blob: bytes, kind: str, row_id: int) -> bytes:
        if self._sealer is None:
            return bytes(blob)
        return self._sealer.open(blob, self._image_aad(kind, row_id), what=f"the {kind} image of row {row_id}",
                                 where=self.location)

    def seal(self, key: KeyArg = None, *, key_file: str | Path | None = None) -> dict[str, int]:
        """Convert this plain gallery in place: seal every vector and thumbnail under the key (``key`` /
        ``key_file``, else the environment's) in one transaction, mark the gallery sealed, then scrub the freed
        plain copies from the files (as a removal does). Run it while no other process uses the gallery.
        Returns how many vectors, thumbnails and check-in thumbnails were sealed."""
        sealer = load_sealer(key, key_file)
        if sealer is None:
            raise GalleryError(f"{self.location}: sealing needs a gallery key (key=, key_file= or ${KEY_FILE_ENV})")
        if self._sealer is not None:
            raise GalleryError(f"{self.location}: the gallery is sealed already")
        if not self.cacheable:
            raise GalleryError(f"{self.location}: seal the gallery outside any transaction")
        counts = {"embeddings": 0, "thumbnails": 0, "checkin_thumbnails": 0}
        try:
            with self.transaction():
                self._serialise_writers()
                if self._seal_mark() is not None:
                    raise GalleryError(f"{self.location}: the gallery is sealed already (by another process)")
                for table, key_col, column, extra, count in (
                    ("embeddings", "id", "vector", ", dim, subject_id, model_id, model_version", "embeddings"),
                    ("thumbnails", "embedding_id", "image", "", "thumbnails"),
                    ("checkins", "id", "thumbnail", "", "checkin_thumbnails"),
                ):
                    last = -1
                    while True:  # in batches, by key: a million embeddings need not fit in memory at once
                        rows = self._rows(f"SELECT {key_col}, {column}{extra} FROM {table} WHERE {column} IS NOT NULL "
                                          f"AND {key_col} > ? ORDER BY {key_col} LIMIT 1000", (last,))
                        if not rows:
                            break
                        for row in rows:
                            if table == "embeddings":
                                eid, blob, dim, sid, mid, mver = row
                                plain = self._unpack_vector(blob, dim, sid, mid, mver, eid)  # length-checked
                                sealed = sealer.seal(plain, self._vector_aad(sid, mid, mver, dim))
                            else:
                                kind = "thumbnail" if table == "thumbnails" else "checkin"
                                sealed = sealer.seal(bytes(row[1]), self._image_aad(kind, row[0]))
                            self._exec(f"UPDATE {table} SET {column} = ? WHERE {key_col} = ?", (sealed, row[0]))
                        counts[count] += len(rows)
                        last = rows[-1][0]
                self._exec("INSERT INTO gallery_meta (key, value) VALUES ('sealed', ?)", (sealer.check_value(),))
                self._deleted()  # the plain bytes just overwritten: purge their old copies once committed
        finally:
            mark = self._seal_mark()
            if mark is not None:  # committed (even if the scrub afterwards failed): use the key from now on
                try:
                    sealer.verify(mark, where=self.location)
                    self._sealer = sealer
                except GalleryError:
                    pass
        return counts

    # ------------------------------------------------------------------ API keys (server galleries use them)
    def api_keys(self) -> dict[str, str]:
        """API key names -> SHA-256 of the key (the keys themselves are never stored)."""
        return {r["name"]: r["sha256"] for r in self.api_key_records()}

    def api_key_records(self) -> list[dict[str, Any]]:
        """Every stored key: name, sha256, scopes (comma-separated), created, expires, revoked (ISO or None)."""
        rows = self._rows("SELECT name, sha256, scopes, created, expires, revoked FROM api_keys ORDER BY name")
        return [dict(zip(("name", "sha256", "scopes", "created", "expires", "revoked"), r)) for r in rows]

    def add_api_key(self, name: str, sha256: str, *, scopes: str = "identify,enrol,admin",
                    expires: str | None = None) -> None:
        name = validate_name(name)
        with self.transaction():
            if self._one("SELECT 1 FROM api_keys WHERE name = ?", (name,)):
                raise GalleryError(f"{self.location}: an API key called {name!r} exists already")
            self._exec("INSERT INTO api_keys (name, sha256, created, scopes, expires) VALUES (?, ?, ?, ?, ?)",
                       (name, sha256, _utcnow(), scopes, expires))

    def update_api_key(self, name: str, **changes: str | None) -> None:
        """Set ``revoked`` and/or ``expires`` (ISO times, ``expires=None``: never) of a stored key."""
        bad = set(changes) - {"revoked", "expires"}
        if bad:
            raise GalleryError(f"cannot change {', '.join(sorted(bad))} of an API key")
        with self.transaction():
            for column, value in changes.items():
                if not self._exec(f"UPDATE api_keys SET {column} = ? WHERE name = ?", (value, name)):
                    raise GalleryError(f"{self.location}: no API key called {name!r}")

    def remove_api_key(self, name: str) -> bool:
        with self.transaction():
            return self._exec("DELETE FROM api_keys WHERE name = ?", (name,)) > 0

    # ------------------------------------------------------------------ camera check-ins
    def add_checkin(self, *, time: str, camera: str, name: str | None, similarity: float, mask: str | None,
                    frames: int, first_seen: str, thumbnail: bytes | None = None) -> int:
        """Store one check-in event (committed before this returns: a crash afterwards cannot lose it)."""
        if not isinstance(camera, str) or not camera.strip():
            raise GalleryError("a check-in needs a camera name")
        with self.transaction():
            if thumbnail is not None and self._sealer is None:
                self._refuse_plain_write_if_sealed()
            sealed = thumbnail is not None and self._sealer is not None
            checkin_id = self._insert(
                "INSERT INTO checkins (time, camera, name, similarity, mask, frames, first_seen, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time, camera.strip(), name, float(similarity), mask, int(frames), first_seen,
                 None if sealed or thumbnail is None else bytes(thumbnail)),
            )
            if sealed:  # sealed under its row id, known only now (the plain image never reaches the database)
                self._exec("UPDATE checkins SET thumbnail = ? WHERE id = ?",
                           (self._pack_image(thumbnail, "checkin", checkin_id), checkin_id))
            return checkin_id

    def checkin_thumbnail(self, checkin_id: int) -> bytes | None:
        """The face thumbnail stored with a check-in event (``None``: the event has none, or no such event)."""
        row = self._one("SELECT thumbnail FROM checkins WHERE id = ?", (int(checkin_id),))
        if row is None or row[0] is None:
            return None
        return self._unpack_image(row[0], "checkin", checkin_id)

    def checkins(self, *, since: str | None = None, until: str | None = None, camera: str | None = None,
                 name: str | None = None, after_id: int | None = None) -> list[dict[str, Any]]:
        """Check-in events in time order (times are ISO-8601 UTC strings, compared as text; ``after_id``: only
        those stored after that event, for following them live)."""
        where, args = [], []
        for clause, value in (("time >= ?", since), ("time < ?", until), ("camera = ?", camera), ("name = ?", name),
                              ("id > ?", after_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self._rows(
            "SELECT id, time, camera, name, similarity, mask, frames, first_seen, thumbnail IS NOT NULL FROM checkins"
            + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time, id", tuple(args))
        keys = ("id", "time", "camera", "name", "similarity", "mask", "frames", "first_seen", "has_thumbnail")
        return [dict(zip(keys, r)) | {"has_thumbnail": bool(r[8])} for r in rows]

    # ------------------------------------------------------------------ audit trail
    def audit(self, action: str, *, actor: str | None = None, client: str | None = None, route: str | None = None,
              status: int | None = None, names: Sequence[str] = (), time: str | None = None) -> int:
        """Append one audit line (committed at once). ``names``: the people the action returned or touched."""
        with self.transaction():
            return self._insert(
                "INSERT INTO audit (time, actor, client, action, route, status, names) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time or _utcnow_ms(), actor, client, action, route, status, json.dumps(list(names))))

    def audit_entries(self, *, since: str | None = None, until: str | None = None, action: str | None = None,
                      name: str | None = None) -> list[dict[str, Any]]:
        """Audit lines in time order (``name``: only those that returned or touched that person)."""
        where, args = [], []
        for clause, value in (("time >= ?", since), ("time < ?", until), ("action = ?", action)):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self._rows("SELECT id, time, actor, client, action, route, status, names FROM audit"
                          + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time, id", tuple(args))
        keys = ("id", "time", "actor", "client", "action", "route", "status", "names")
        out = [dict(zip(keys, r)) | {"names": json.loads(r[7] or "[]")} for r in rows]
        wanted = None if name is None else {name, erased_name(name)}
        return [e for e in out if wanted is None or wanted & set(e["names"])]

    def _forget_in_audit(self, name: str) -> None:
        """An erased person leaves one audit line that they were erased, naming them only by a digest of the name
        (whoever knows the name can check it; the files keep no trace of it); older lines lose their name."""
        pattern = "%" + json.dumps(name)[1:-1] + "%"
        for row_id, names in self._rows("SELECT id, names FROM audit WHERE names LIKE ?", (pattern,)):
            kept = [n for n in json.loads(names or "[]") if n != name]
            self._exec("UPDATE audit SET names = ? WHERE id = ?", (json.dumps(kept), row_id))
        self._insert("INSERT INTO audit (time, actor, client, action, route, status, names) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (_utcnow_ms(), None, None, "erased", None, None, json.dumps([erased_name(name)])))

    def purge_older(self, keep_days: float) -> dict[str, Any]:
        """The retention rule as a period: audit lines and check-ins older than ``keep_days`` days are deleted
        (``{"before": cut, "audit": n, "checkins": n}``)."""
        if not keep_days >= 0:
            raise GalleryError(f"retention must be a number of days >= 0, got {keep_days!r}")
        cut = (datetime.now(timezone.utc) - timedelta(days=keep_days)).isoformat(timespec="milliseconds")
        return {"before": cut, **self.purge(cut)}

    def purge(self, before: str) -> dict[str, int]:
        """Delete audit lines and check-in events older than ``before`` (ISO-8601 UTC): the retention rule."""
        with self.transaction():
            audit = self._exec("DELETE FROM audit WHERE time < ?", (before,))
            checkins = self._exec("DELETE FROM checkins WHERE time < ?", (before,))
            if audit or checkins:
                self._deleted()
        return {"audit": int(audit), "checkins": int(checkins)}

    # ------------------------------------------------------------------ change log
    def _log(self, op: str, model_id: str, model_version: str | None, ids: Sequence[int] = (None,)) -> None:
        self._serialise_writers()
        for embedding_id in ids:
            self._exec("INSERT INTO changes (op, embedding_id, model_id, model_version) VALUES (?, ?, ?, ?)",
                       (op, embedding_id, model_id, model_version))

    def _log_removal(self, where: str, args: Sequence[Any]) -> None:
        """Log a ``del`` for every embedding the coming ``DELETE`` (``where`` on table ``embeddings``) removes."""
        self._serialise_writers()
        self._exec("INSERT INTO changes (op, embedding_id, model_id, model_version) "
                   f"SELECT 'del', id, model_id, model_version FROM embeddings WHERE {where} ORDER BY id", args)

    def _prune_changes(self) -> None:
        """Keep the newest :data:`CHANGE_LOG_KEEP` changes (pruned in steps of 1,000 rows)."""
        lo, hi = self._one("SELECT (SELECT MIN(seq) FROM changes), (SELECT MAX(seq) FROM changes)") or (None, None)
        if hi is not None and hi - lo >= CHANGE_LOG_KEEP + 1000:
            self._exec("DELETE FROM changes WHERE seq <= ?", (hi - CHANGE_LOG_KEEP,))

    def change_seq(self) -> int:
        """The sequence number of the newest committed change (0: none yet)."""
        return int(self._one("SELECT COALESCE(MAX(seq), 0) FROM changes")[0])

    @property
    def revision(self) -> int:
        return self.change_seq()

    def changes_since(self, seq: int, *, limit: int = CHANGE_LOG_KEEP) -> list[Change] | None:
        """Changes after ``seq`` in order; ``None`` when they cannot all be listed (pruned, or more than
        ``limit``): then rebuild from the store."""
        first = self._one("SELECT (SELECT MIN(seq) FROM changes), (SELECT MAX(seq) FROM changes)")
        lo, hi = (first or (None, None))
        if hi is None or seq >= hi:
            return [] if hi is None or seq == hi else None
        if seq < lo - 1 or hi - seq > limit:
            return None
        rows = self._rows("SELECT seq, op, embedding_id, model_id, model_version FROM changes WHERE seq > ? ORDER BY seq",
                          (seq,))
        return [Change(int(r[0]), r[1], None if r[2] is None else int(r[2]), r[3], r[4]) for r in rows]

    # ------------------------------------------------------------------ subjects
    def _subject_id(self, name: str) -> int | None:
        row = self._one("SELECT id FROM subjects WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def add_subject(self, name: str, meta: dict[str, Any] | None = None, *, exist_ok: bool = False) -> int:
        name = validate_name(name)
        meta_json = _meta_json(meta)
        with self.transaction():
            existing = self._subject_id(name)
            if existing is not None:
                if exist_ok:
                    if meta is not None:
                        self._exec("UPDATE subjects SET meta = ? WHERE id = ?", (meta_json, existing))
                    return existing
                raise DuplicateSubjectError(f"{self.location}: subject {name!r} is already enrolled")
            return self._insert("INSERT INTO subjects (name, meta, created) VALUES (?, ?, ?)", (name, meta_json, _utcnow()))

    def _info_rows(self, where: str = "", args: tuple = ()) -> list[SubjectInfo]:
        rows = self._rows(
            "SELECT s.id, s.name, s.created, s.meta, e.model_id, COUNT(e.id) FROM subjects s "
            f"LEFT JOIN embeddings e ON e.subject_id = s.id {where} GROUP BY s.id, s.name, s.created, s.meta, e.model_id "
            "ORDER BY s.name, e.model_id",
            args,
        )
        infos: dict[int, SubjectInfo] = {}
        for sid, name, created, meta, model_id, count in rows:
            info = infos.get(sid)
            if info is None:
                info = infos[sid] = SubjectInfo(id=int(sid), name=name, created=created, meta=json.loads(meta or "{}"))
            if model_id is not None:
                info.embeddings[model_id] = int(count)
        return list(infos.values())

    def get_subject(self, name: str, *, strict: bool = False) -> SubjectInfo | None:
        name = validate_name(name)
        found = self._info_rows("WHERE s.name = ?", (name,))
        if not found:
            if strict:
                raise UnknownSubjectError(name, self.location)
            return None
        return found[0]

    def list_subjects(self) -> list[SubjectInfo]:
        return self._info_rows()

    def __len__(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM subjects")[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._subject_id(unicodedata.normalize("NFC", name).strip()) is not None

    def remove_subject(self, name: str, *, strict: bool = False) -> bool:
        """Delete the subject, its embeddings and thumbnails, then scrub the freed copies (slow on huge galleries)."""
        name = validate_name(name)
        with self.transaction():
            sid = self._subject_id(name)
            if sid is None:
                if strict:
                    raise UnknownSubjectError(name, self.location)
                return False
            self._log_removal("subject_id = ?", (sid,))
            self._exec("DELETE FROM subjects WHERE id = ?", (sid,))  # embeddings and thumbnails cascade
            self._exec("DELETE FROM checkins WHERE name = ?", (name,))  # and their check-in history
            self._forget_in_audit(name)
            self._deleted()
        return True

    # ------------------------------------------------------------------ embeddings
    def _model_dim(self, model_id: str) -> int | None:
        row = self._one("SELECT dim FROM embeddings WHERE model_id = ? LIMIT 1", (model_id,))
        return None if row is None else int(row[0])

    def _other_version(self, model_id: str, model_version: str) -> bool:
        """Does the gallery hold ``model_id`` embeddings of another version? Two range look-ups on the
        (model_id, model_version) index, so enrolling into a million-row gallery stays instant."""
        return any(
            self._one(f"SELECT 1 FROM embeddings WHERE model_id = ? AND model_version {op} ? LIMIT 1", (model_id, model_version))
            for op in ("<", ">")
        )

    def _write_enrolment(self, name: str, embeddings: np.ndarray, model_id: str, model_version: str,
                         sources: list[str] | None, thumbnails: list[bytes] | None, meta_json: str | None) -> EnrollResult:
        """Subject + embeddings (+ thumbnails) + their change-log rows in one transaction."""
        with self.transaction():
            if self._sealer is None:
                self._refuse_plain_write_if_sealed()
            if self._other_version(model_id, model_version):
                versions = [r[0] for r in self._rows("SELECT DISTINCT model_version FROM embeddings WHERE model_id = ?",
                                                     (model_id,))]
                raise EmbeddingError(
                    f"{self.location}: the gallery holds {model_id!r} embeddings of version {', '.join(map(repr, versions))}, "
                    f"not {model_version!r}; embeddings of different versions are not comparable: remove the old ones "
                    "(remove_embeddings) and re-enrol everyone, or use a new model_id"
                )
            vectors = validate_embeddings(embeddings, expected_dim=self._model_dim(model_id), sources=sources)
            sid = self._subject_id(name)
            created = sid is None
            now = _utcnow()
            if created:
                sid = self._insert("INSERT INTO subjects (name, meta, created) VALUES (?, ?, ?)", (name, meta_json or "{}", now))
            elif meta_json is not None:
                self._exec("UPDATE subjects SET meta = ? WHERE id = ?", (meta_json, sid))
            ids = []
            d = vectors.shape[1]
            for i, vec in enumerate(vectors):
                eid = self._insert(
                    "INSERT INTO embeddings (subject_id, model_id, model_version, dim, vector, source, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sid, model_id, model_version, d, self._pack_vector(vec, sid, model_id, model_version),
                     None if sources is None else sources[i], now),
                )
                ids.append(eid)
                if thumbnails is not None:
                    self._exec("INSERT INTO thumbnails (embedding_id, image) VALUES (?, ?)",
                               (eid, self._pack_image(thumbnails[i], "thumbnail", eid)))
            self._log("add", model_id, model_version, ids)
            self._prune_changes()
        return EnrollResult(subject_id=sid, subject_created=created, embedding_ids=ids)

    def remove_embeddings(self, model_id: str, *, model_version: str | None = None) -> int:
        """Delete every embedding (and thumbnail) of one model, e.g. before re-enrolling with a new version;
        subjects stay. Returns the number of embeddings removed; the freed bytes are scrubbed like a removal."""
        where, args = "model_id = ?", (model_id,)
        if model_version is not None:
            where, args = where + " AND model_version = ?", args + (model_version,)
        with self.transaction():
            removed = self._exec(f"DELETE FROM embeddings WHERE {where}", args)
            if removed:
                self._log("reset", model_id, model_version)
                self._deleted()
        return int(removed)

    #: the columns every read of embeddings selects, in this order (what :meth:`_matrix` reads)
    _VECTOR_COLUMNS = "s.name, e.dim, e.vector, e.id, e.subject_id, e.model_id, e.model_version"

    def _matrix(self, rows: list[tuple], model_id: str) -> np.ndarray:
        dims = {int(r[1]) for r in rows}
        if len(dims) != 1:
            raise GalleryError(
                f"{self.location}: model {model_id!r} has embeddings of several dimensions {sorted(dims)}; the store is inconsistent"
            )
        d = dims.pop()
        data = b"".join(self._unpack_vector(r[2], d, r[4], r[5], r[6], r[3]) for r in rows)
        return np.frombuffer(data, dtype="<f4").reshape(len(rows), d).astype(np.float32)

    def embedding_rows(self, model_id: str, *, model_version: str | None = None,
                       ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(embedding ids, N x D matrix, subject names)`` of one model (only the given ``ids``, if any), by id."""
        sql = (f"SELECT {self._VECTOR_COLUMNS} FROM embeddings e JOIN subjects s ON s.id = e.subject_id "
               "WHERE e.model_id = ?")
        args: tuple = (model_id,)
        if model_version is not None:
            sql += " AND e.model_version = ?"
            args += (model_version,)
        rows: list[tuple] = []
        if ids is None:
            rows = self._rows(sql + " ORDER BY e.id", args)
        else:  # by primary key alone (a model_id term would steer the planner to scan that model's rows)
            wanted = [int(i) for i in ids]
            by_id = (f"SELECT {self._VECTOR_COLUMNS} FROM embeddings e "
                     "JOIN subjects s ON s.id = e.subject_id WHERE e.id IN ")
            for start in range(0, len(wanted), 500):  # bounded statement size
                chunk = wanted[start : start + 500]
                rows += [r for r in self._rows(by_id + f"({', '.join('?' * len(chunk))})", tuple(chunk))
                         if r[5] == model_id and (model_version is None or r[6] == model_version)]
            rows.sort(key=lambda r: int(r[3]))
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), dtype=np.float32), []
        return np.asarray([int(r[3]) for r in rows], np.int64), self._matrix(rows, model_id), [r[0] for r in rows]

    def embeddings(self, model_id: str, *, model_version: str | None = None) -> tuple[np.ndarray, list[str]]:
        _, matrix, names = self.embedding_rows(model_id, model_version=model_version)
        return matrix, names

    def models(self) -> dict[str, dict[str, Any]]:
        """Model ids -> ``{"dim", "count", "versions"}``; cached until the next change (every identification asks,
        and counting a million rows each time would cost more than the search)."""
        if not self.cacheable:
            return self._count_models()
        seq = self.change_seq()
        cached = self.__dict__.get("_models_cache")
        if cached is not None and cached[0] == seq:
            return copy.deepcopy(cached[1])
        out = self._count_models()
        self.__dict__["_models_cache"] = (seq, out)
        return copy.deepcopy(out)

    def _count_models(self) -> dict[str, dict[str, Any]]:
        rows = self._rows(
            "SELECT model_id, model_version, MIN(dim), COUNT(*) FROM embeddings "
            "GROUP BY model_id, model_version ORDER BY model_id, model_version"
        )
        out: dict[str, dict[str, Any]] = {}
        for model_id, version, dim, count in rows:
            entry = out.setdefault(model_id, {"dim": int(dim), "count": 0, "versions": []})
            entry["count"] += int(count)
            entry["versions"].append(version)
        return out

    def thumbnails(self, name: str, *, model_id: str | None = None) -> list[bytes]:
        """Stored thumbnails of a subject in enrolment order (``UnknownSubjectError`` if not enrolled)."""
        name = validate_name(name)
        sid = self._subject_id(name)
        if sid is None:
            raise UnknownSubjectError(name, self.location)
        sql = ("SELECT t.image, t.embedding_id FROM thumbnails t JOIN embeddings e ON e.id = t.embedding_id "
               "WHERE e.subject_id = ?")
        args: tuple = (sid,)
        if model_id is not None:
            sql += " AND e.model_id = ?"
            args += (model_id,)
        return [self._unpack_image(r[0], "thumbnail", r[1]) for r in self._rows(sql + " ORDER BY e.id", args)]


def seal_gallery(store: GalleryStore, key: KeyArg = None, *, key_file: str | Path | None = None) -> dict[str, int]:
    """Convert a plain gallery, opened without a key, in place to a sealed one (see :meth:`SQLGalleryStore.seal`)."""
    if not isinstance(store, SQLGalleryStore):
        raise GalleryError(f"{type(store).__name__} cannot be sealed")
    return store.seal(key, key_file=key_file)


def _meta_json(meta: dict[str, Any] | None) -> str:
    if meta is None:
        return "{}"
    if not isinstance(meta, dict):
        raise GalleryError(f"subject meta must be a dict, got {type(meta).__name__}")
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"subject meta is not JSON-serialisable: {exc}") from exc


def _check_enrolment(name, embeddings, model_id, model_version, sources, thumbnails):
    """Everything about an enrolment that needs no database: the name, ids, and one source/thumbnail per row."""
    name = validate_name(name)
    for label, value in (("model_id", model_id), ("model_version", model_version)):
        if not isinstance(value, str) or not value.strip():
            raise GalleryError(f"enrolment of {name!r} needs a non-empty {label}")
    n_rows = embeddings.shape[0] if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2 else 1
    if sources is not None:
        sources = [str(s) for s in sources]
        if len(sources) != n_rows:
            raise GalleryError(f"enrolment of {name!r}: {len(sources)} sources for {n_rows} embeddings")
    if thumbnails is not None:
        thumbnails = list(thumbnails)
        if len(thumbnails) != n_rows:
            raise GalleryError(f"enrolment of {name!r}: {len(thumbnails)} thumbnails for {n_rows} embeddings")
        for i, thumb in enumerate(thumbnails):
            if not isinstance(thumb, (bytes, bytearray, memoryview)) or len(thumb) == 0:
                raise GalleryError(f"enrolment of {name!r}: thumbnail {i} is not non-empty bytes")
            if len(thumb) > MAX_THUMBNAIL_BYTES:
                raise GalleryError(
                    f"enrolment of {name!r}: thumbnail {i} is {len(thumb)} bytes; at most {MAX_THUMBNAIL_BYTES} allowed"
                )
    return name, sources, thumbnails


#: The schema, version by version: what each migration adds to the one before, written once for both SQL
#: dialects (``{pk}``: the row id, ``{serial}``: an id that is never reused, ``{ref}``: a column pointing at an id,
#: ``{blob}``: bytes). A gallery is migrated to :data:`SCHEMA_VERSION` when it opens.
#:
#: Where the dialects cannot say a change the same way, a migration is a dict ``{dialect: statements}`` (the
#: dialect tokens still apply; a PostgreSQL ``DO $$ ... $$`` block counts as one statement). SQLite cannot alter
#: a constraint in place, so such a change rebuilds the table (create the new one, copy the rows with their ids,
#: drop the old, rename, re-create its indexes); the SQLite store runs every migration with foreign keys off, so
#: that dropping the old table cascades nowhere, and checks them (``PRAGMA foreign_key_check``) before it commits.
SCHEMA_MIGRATIONS: dict[int, str | dict[str, str]] = {
    1: """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    id {pk},
    name TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL DEFAULT '{{}}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id {pk},
    subject_id {ref} NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    dim INTEGER NOT NULL CHECK (dim > 0),
    vector {blob} NOT NULL CHECK (length(vector) = 4 * dim),
    source TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_by_model ON embeddings(model_id, subject_id);
CREATE INDEX IF NOT EXISTS embeddings_by_subject ON embeddings(subject_id);
CREATE TABLE IF NOT EXISTS thumbnails (
    embedding_id {ref} PRIMARY KEY REFERENCES embeddings(id) ON DELETE CASCADE,
    image {blob} NOT NULL
);
""",
    # the change log that lets every process's search index follow writes without rebuilding; API keys
    # (used where the gallery is a server database)
    2: """
CREATE TABLE IF NOT EXISTS changes (
    seq {serial},
    op TEXT NOT NULL CHECK (op IN ('add', 'del', 'reset')),
    embedding_id {ref},
    model_id TEXT NOT NULL,
    model_version TEXT
);
CREATE INDEX IF NOT EXISTS embeddings_by_model_version ON embeddings(model_id, model_version);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL
);
""",
    # check-in events of `occluface watch`: one per person and visit (name NULL: an unknown person)
    3: """
CREATE TABLE IF NOT EXISTS checkins (
    id {pk},
    time TEXT NOT NULL,
    camera TEXT NOT NULL,
    name TEXT,
    similarity REAL NOT NULL,
    mask TEXT,
    frames INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    thumbnail {blob}
);
CREATE INDEX IF NOT EXISTS checkins_by_time ON checkins(time);
CREATE INDEX IF NOT EXISTS checkins_by_name ON checkins(name, time);
""",
    # the audit trail: who did what, when, from where, and which names it returned (never images or vectors)
    4: """
CREATE TABLE IF NOT EXISTS audit (
    id {pk},
    time TEXT NOT NULL,
    actor TEXT,
    client TEXT,
    action TEXT NOT NULL,
    route TEXT,
    status INTEGER,
    names TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(time);
""",
    # templates encrypted at rest: the key check value of a sealed gallery (key 'sealed'), and a vector length check
    # that also admits a sealed vector (28 bytes longer: sealing.OVERHEAD, the nonce and the tag)
    5: {
        "sqlite": """
CREATE TABLE IF NOT EXISTS gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE embeddings_v5 (
    id {pk},
    subject_id {ref} NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    dim INTEGER NOT NULL CHECK (dim > 0),
    vector {blob} NOT NULL CHECK (length(vector) IN (4 * dim, 4 * dim + 28)),
    source TEXT,
    created TEXT NOT NULL
);
INSERT INTO embeddings_v5 (id, subject_id, model_id, model_version, dim, vector, source, created)
    SELECT id, subject_id, model_id, model_version, dim, vector, source, created FROM embeddings;
DROP TABLE embeddings;
ALTER TABLE embeddings_v5 RENAME TO embeddings;
CREATE INDEX embeddings_by_model ON embeddings(model_id, subject_id);
CREATE INDEX embeddings_by_subject ON embeddings(subject_id);
CREATE INDEX embeddings_by_model_version ON embeddings(model_id, model_version);
""",
        # schema 1's length check, found in the catalog (PostgreSQL named it, the schema did not)
        "postgresql": """
CREATE TABLE IF NOT EXISTS gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
DO $$
DECLARE c name;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'embeddings'::regclass AND contype = 'c'
             AND position('length(vector)' in pg_get_constraintdef(oid)) > 0 LOOP
        EXECUTE 'ALTER TABLE embeddings DROP CONSTRAINT ' || quote_ident(c);
    END LOOP;
END $$;
ALTER TABLE embeddings ADD CONSTRAINT embeddings_vector_length CHECK (length(vector) IN (4 * dim, 4 * dim + 28));
""",
    },
    # API key scopes (keys made before scopes hold all three), expiry and revocation times; the table itself for
    # SQLite galleries made while schema 2 created it on PostgreSQL only
    6: """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL
);
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'identify,enrol,admin';
ALTER TABLE api_keys ADD COLUMN expires TEXT;
ALTER TABLE api_keys ADD COLUMN revoked TEXT;
""",
}
DIALECTS = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "ref": "INTEGER", "blob": "BLOB"},
    "postgresql": {"pk": "BIGSERIAL PRIMARY KEY", "serial": "BIGSERIAL PRIMARY KEY", "ref": "BIGINT", "blob": "BYTEA"},
}
assert max(SCHEMA_MIGRATIONS) == SCHEMA_VERSION and OVERHEAD == 28


def schema_statements(version: int, dialect: str) -> list[str]:
    """The statements that migrate a gallery from ``version - 1`` to ``version`` in one dialect (split at each
    ``;`` outside a ``$$``-quoted PostgreSQL block)."""
    migration = SCHEMA_MIGRATIONS[version]
    if isinstance(migration, dict):
        migration = migration[dialect]
    statements, current = [], ""
    for i, part in enumerate(migration.format(**DIALECTS[dialect]).split("$$")):
        if i % 2:  # inside $$ ... $$: kept whole
            current += "$$" + part + "$$"
            continue
        first, *rest = part.split(";")
        current += first
        for piece in rest:
            statements.append(current)
            current = piece
    statements.append(current)
    return [st.strip() for st in statements if st.strip()]


def _make_private_dir(folder: Path, *, tighten_existing: bool) -> None:
    """Create missing folders 0700; tighten an existing one only when it is ours (the default data dir)."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in missing + ([folder] if tighten_existing else []):
        try:
            os.chmod(p, 0o700)
        except OSError:  # pragma: no cover - e.g. not the owner; the file itself is still 0600
            pass


class SQLiteGalleryStore(SQLGalleryStore):
    """Single-file gallery: SQLite in WAL mode, foreign keys with cascading deletes, float32 BLOB embeddings.

    Safe to share between threads of one process (one connection behind a re-entrant lock); several processes
    may open the same file (SQLite locking; their writes reach each other's search indexes through the change log).
    """

    def __init__(self, path: str | Path | None = None, *, timeout: float = 30.0, key: KeyArg = None,
                 key_file: str | Path | None = None):
        sealer = load_sealer(key, key_file)  # a bad key is refused before any file is made
        default = path is None
        self.path = Path(default_gallery_path() if default else path).expanduser()
        self.location = str(self.path)
        if self.path.is_dir():
            raise GalleryError(f"{self.path}: is a folder; give the gallery file path (e.g. {self.path / GALLERY_FILENAME})")
        try:
            _make_private_dir(self.path.parent, tighten_existing=default)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(self.path, 0o600)
        except FileExistsError:  # created by another process between the check and the open
            pass
        except OSError as exc:
            raise GalleryError(f"{self.path}: cannot create the gallery file ({exc.strerror or exc})") from exc
        self._lock = threading.RLock()
        self._depth = 0
        self._scrub_pending = False
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA secure_delete = ON")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network file system
                raise GalleryError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); use a local disk")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._ensure_schema()
            self._open_sealing(sealer)
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise GalleryError(f"{self.path}: not a usable occluface gallery ({exc})") from exc
        except GalleryError:
            self._close_quietly()
            raise

    # ------------------------------------------------------------------ plumbing
    def _close_quietly(self) -> None:
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is not None:
            conn.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"{self.path}: gallery is closed")
        return self._conn

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, tuple(args)).fetchall()

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._lock:
            return int(self._db().execute(sql, tuple(args)).rowcount)

    def _deleted(self) -> None:
        self._scrub_pending = True

    @property
    def cacheable(self) -> bool:
        return self._depth == 0

    def _ensure_schema(self) -> None:
        db = self._db()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "schema_version" not in tables:
            raise GalleryError(f"{self.path}: is an SQLite file but not an occluface gallery (tables: {', '.join(sorted(tables))})")
        version = None
        if "schema_version" in tables:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None or version > SCHEMA_VERSION:
                raise GalleryError(
                    f"{self.path}: gallery schema version {version} is not supported by this occluface "
                    f"(supports up to {SCHEMA_VERSION}); upgrade occluface"
                )
            if version == SCHEMA_VERSION:
                return
        # foreign keys off while migrating (a per-connection setting, fixed outside a transaction): a migration may
        # rebuild a table, and dropping the old one would otherwise cascade into the tables pointing at it
        db.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.transaction():  # BEGIN IMMEDIATE: a second process creating or migrating the file waits, then skips
                row = db.execute("SELECT version FROM schema_version").fetchone() if version is not None else None
                self._migrate(row[0] if row else 0)
                broken = db.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise GalleryError(f"{self.path}: migrating the gallery broke {len(broken)} references "
                                       f"(first: {broken[0]}); nothing was changed")
        finally:
            db.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def transaction(self) -> Iterator[SQLiteGalleryStore]:
        """All writes inside commit together; any exception (or crash) rolls every one of them back.

        Nested uses become savepoints, so library calls like ``enroll`` compose inside a caller's transaction.
        """
        with self._lock:
            db = self._db()
            depth = self._depth
            savepoint = f"occluface_sp{depth}"
            try:
                db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"{self.path}: cannot start a write ({exc}; another process may be writing)") from exc
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if depth == 0:
                    db.execute("ROLLBACK")
                    self._scrub_pending = False
                else:
                    db.execute(f"ROLLBACK TO {savepoint}")
                    db.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            if depth > 0:
                db.execute(f"RELEASE {savepoint}")
                return
            try:
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._scrub_pending = False
                if isinstance(exc, sqlite3.Error):
                    raise GalleryError(f"{self.path}: could not save the changes ({exc}); nothing was written") from exc
                raise
            if self._scrub_pending:
                self._scrub_pending = False
                self.scrub()

    def scrub(self) -> None:
        """Make deleted data unrecoverable from the files: vacuum, then checkpoint and truncate the WAL.

        ``secure_delete`` already zeroes freed pages; VACUUM rebuilds the file without free pages and the
        TRUNCATE checkpoint drops old WAL frames that may still hold pre-deletion page images.
        """
        with self._lock:
            db = self._db()
            if self._depth:
                self._scrub_pending = True
                return
            busy = 1
            try:
                db.execute("VACUUM")
                # waits (up to the connection timeout) for readers of older snapshots to finish
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError as exc:
                raise GalleryError(
                    f"{self.path}: the data was deleted, but purging old copies from the file failed ({exc}); "
                    "call scrub() again when no other process is using the gallery"
                ) from exc
            if busy:
                raise GalleryError(
                    f"{self.path}: the data was deleted, but another process is reading the gallery, so old copies "
                    "could not be purged from the write-ahead log yet; call scrub() again when it has closed"
                )

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # pragma: no cover - another process holds a reader; SQLite finishes later
                pass
            self._close_quietly()
        self.__dict__.pop(SEARCH_CACHE_ATTR, None)  # the indexes occluface.gallery.search built on this store

    def __repr__(self) -> str:
        return f"SQLiteGalleryStore({str(self.path)!r})"


__all__ = [
    "CHANGE_LOG_KEEP",
    "SCHEMA_VERSION",
    "Change",
    "DuplicateSubjectError",
    "EmbeddingError",
    "EnrollResult",
    "GalleryError",
    "GalleryStore",
    "SQLGalleryStore",
    "SQLiteGalleryStore",
    "SubjectInfo",
    "UnknownSubjectError",
    "default_gallery_path",
    "validate_embeddings",
    "schema_statements",
    "seal_gallery",
    "validate_name",
]
