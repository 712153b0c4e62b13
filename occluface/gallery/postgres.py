"""The gallery on a PostgreSQL server: several API processes, on one host or many, share one set of enrolments.

Chosen with ``open_gallery("postgresql://user@host/db")`` (``occluface serve --gallery ...`` or
``$OCCLUFACE_GALLERY``). The SQL is :class:`occluface.gallery.store.SQLGalleryStore`'s, the same as the embedded
SQLite store's; this module adds the connection (psycopg 3 with a small connection pool), the schema in
PostgreSQL's dialect, versioned and migrated when a store opens, and API keys stored in the same database.

* **All-or-nothing**: every write is one server transaction; a client killed mid-enrolment (even with
  SIGKILL) leaves nothing, because the server rolls back what a dead connection did not commit.
* **Commit order**: writers take one advisory lock before logging their changes, so the change sequence
  grows in commit order and a reader that has seen change ``n`` has seen every change before it.
* **Removal**: rows cascade, then ``VACUUM FULL`` rewrites the touched tables so the freed rows' bytes are not
  left in the table files (the same after sealing a gallery in place: the plain rows are freed rows). PostgreSQL's write-ahead log still holds copies until the server recycles its
  segments (minutes to hours, see ``max_wal_size``); a ``CHECKPOINT`` is requested to hasten that where the
  role may do so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from occluface.gallery.sealing import KeyArg, load_sealer
from occluface.gallery.store import SCHEMA_VERSION, SEARCH_CACHE_ATTR, GalleryError, SQLGalleryStore

#: pg_advisory_xact_lock keys: one for schema migrations, one that serialises the writers' change logging.
_MIGRATE_LOCK = 0x6F63_6601
_WRITE_LOCK = 0x6F63_6602

def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise GalleryError("PostgreSQL galleries need psycopg 3: pip install 'psycopg[binary,pool]'") from exc
    return psycopg, psycopg_pool


class PostgresGalleryStore(SQLGalleryStore):
    """:class:`SQLGalleryStore` on PostgreSQL. Thread-safe: each call borrows a pooled connection, and a
    thread's open transaction keeps its own connection until it ends."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 8, timeout: float = 30.0, key: KeyArg = None,
                 key_file: str | None = None):
        sealer = load_sealer(key, key_file)  # a bad key is refused before connecting
        psycopg, psycopg_pool = _psycopg()
        self.url = url
        self.location = redact(url)
        self._errors = psycopg.Error
        self._local = threading.local()
        self._closed = False
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), timeout=timeout, open=False,
            kwargs={"autocommit": True}, name="occluface-gallery",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except (psycopg_pool.PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise GalleryError(f"{self.location}: cannot connect to the PostgreSQL gallery ({exc})") from exc
        try:
            self._ensure_schema()
            self._open_sealing(sealer)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # inside this thread's transaction
            yield conn
            return
        if self._closed:
            raise GalleryError(f"{self.location}: gallery is closed")
        with self._pool.connection() as conn:
            yield conn

    def _cursor_rows(self, sql: str, args: Sequence[Any], fetch: bool) -> Any:
        try:
            with self._connection() as conn:
                cur = conn.execute(sql.replace("?", "%s"), tuple(args))
                return (cur.fetchall() if cur.description else []) if fetch else int(cur.rowcount)
        except self._errors as exc:
            raise GalleryError(f"{self.location}: {type(exc).__name__}: {exc}".rstrip()) from exc

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._cursor_rows(sql, args, True)

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._cursor_rows(sql, args, False)

    def _serialise_writers(self) -> None:
        self._exec("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))

    def _deleted(self) -> None:
        self._local.scrub = True

    @property
    def cacheable(self) -> bool:
        return getattr(self._local, "conn", None) is None

    def _ensure_schema(self) -> None:
        with self.transaction():
            self._exec("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))  # two processes starting: one migrates
            self._exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._one("SELECT MAX(version) FROM schema_version")
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise GalleryError(
                    f"{self.location}: gallery schema version {current} is not supported by this occluface "
                    f"(supports up to {SCHEMA_VERSION}); upgrade occluface"
                )
            self._migrate(current)

    @contextmanager
    def transaction(self) -> Iterator[PostgresGalleryStore]:
        """Everything inside commits together or not at all; nested uses are savepoints."""
        outer = getattr(self._local, "conn", None)
        if outer is not None:
            with outer.transaction():
                yield self
            return
        if self._closed:
            raise GalleryError(f"{self.location}: gallery is closed")
        self._local.scrub = False
        try:
            with self._pool.connection() as conn:
                self._local.conn = conn
                try:
                    with conn.transaction():
                        yield self
                finally:
                    self._local.conn = None
        except self._errors as exc:
            raise GalleryError(f"{self.location}: could not save the changes ({exc}); nothing was written") from exc
        if self._local.scrub:
            self._local.scrub = False
            self.scrub()

    def scrub(self) -> None:
        """Rewrite the tables that lost or rewrote rows (``VACUUM FULL``) so their files keep no freed bytes."""
        with self._connection() as conn:
            try:
                for table in ("thumbnails", "embeddings", "subjects", "changes", "checkins", "audit"):
                    conn.execute(f"VACUUM FULL {table}")
            except self._errors as exc:
                raise GalleryError(
                    f"{self.location}: the data was deleted, but rewriting the tables failed ({exc}); call scrub() again"
                ) from exc
            try:
                conn.execute("CHECKPOINT")
            except self._errors:  # not allowed for this role: the server recycles the WAL on its own schedule
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        self.__dict__.pop(SEARCH_CACHE_ATTR, None)

    def __repr__(self) -> str:
        return f"PostgresGalleryStore({self.location!r})"


__all__ = ["PostgresGalleryStore", "redact"]
