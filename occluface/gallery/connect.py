"""Open a gallery by where it is: a file path (SQLite, the embedded default) or a ``postgresql://`` URL."""

from __future__ import annotations

import os
from pathlib import Path

from occluface.gallery.sealing import KeyArg
from occluface.gallery.store import GalleryStore, SQLiteGalleryStore

#: Environment variable naming the gallery (a file path or a postgresql:// URL) when none is given.
GALLERY_ENV = "OCCLUFACE_GALLERY"


def is_database_url(target: object) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0] in ("postgresql", "postgres")


def open_gallery(target: str | Path | None = None, *, key: KeyArg = None,
                 key_file: str | Path | None = None) -> GalleryStore:
    """Open (creating if needed) the gallery ``target``: a ``postgresql://`` URL (several API processes or hosts
    on one server database, :class:`occluface.gallery.postgres.PostgresGalleryStore`) or a file path (the
    embedded single-machine default, :class:`SQLiteGalleryStore`). ``None``: ``$OCCLUFACE_GALLERY``, else
    ``<user data dir>/occluface/gallery.sqlite3``.

    ``key`` / ``key_file``: the gallery key, for templates encrypted at rest (:mod:`occluface.gallery.sealing`);
    by default ``$OCCLUFACE_GALLERY_KEY`` or ``$OCCLUFACE_GALLERY_KEY_FILE``, if set; ``key=False``: none."""
    if target is None or (isinstance(target, str) and not target.strip()):
        target = os.environ.get(GALLERY_ENV) or None
    if is_database_url(target):
        from occluface.gallery.postgres import PostgresGalleryStore

        return PostgresGalleryStore(target, key=key, key_file=key_file)
    return SQLiteGalleryStore(target, key=key, key_file=key_file)


__all__ = ["GALLERY_ENV", "is_database_url", "open_gallery"]
