"""API keys for the operations that change or export the gallery, stored only as hashes.

Keys are random 32-byte tokens, so a plain SHA-256 is enough (no password stretching needed) and a
stolen keys file reveals no usable key. Comparison is constant-time. They live in a JSON file, or, when the
gallery is on PostgreSQL, in that database (``api_keys``), so every API process and host sees a new key at
once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from occluface.io import write_json
from occluface.errors import OccluFaceError

PREFIX = "ocf_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """A set of key hashes, loaded from a JSON file (``{"keys": [{"name", "sha256"}]}``) and/or given keys, plus
    those of a ``database`` (a gallery store with ``api_keys()``/``add_api_key()``), read at every check."""

    def __init__(self, hashes: dict[str, str] | None = None, path: Path | None = None, database: Any = None):
        self.hashes = dict(hashes or {})
        self.path = path
        self.database = database

    def all_hashes(self) -> dict[str, str]:
        return {**self.hashes, **(self.database.api_keys() if self.database is not None else {})}

    @classmethod
    def load(cls, path: str | Path | None = None, plain_keys: list[str] | None = None) -> "KeyStore":
        hashes: dict[str, str] = {}
        p = Path(path) if path else None
        if p is not None and p.exists():
            try:
                data = json.loads(p.read_text())
                for entry in data.get("keys", []):
                    hashes[str(entry["name"])] = str(entry["sha256"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise OccluFaceError(f"{p}: not a valid API keys file ({exc})") from None
        for i, key in enumerate(plain_keys or []):
            if key:
                hashes[f"env-{i}"] = hash_key(key)
        return cls(hashes, p)

    def __bool__(self) -> bool:
        return bool(self.hashes) or bool(self.database is not None and self.database.api_keys())

    def check(self, key: str | None) -> bool:
        return self.name_of(key) is not None

    def name_of(self, key: str | None) -> str | None:
        """The name of the key (constant-time comparison of hashes), or None when it is not one of them."""
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for name, h in self.all_hashes().items():
            if hmac.compare_digest(digest, h):
                found = name
        return found

    def add(self, name: str) -> str:
        """Create a key called ``name``, store its hash (the database, else an owner-only file) and return the
        key, shown once."""
        key = new_key()
        if self.database is not None:
            self.database.add_api_key(name, hash_key(key))
            return key
        if self.path is None:
            raise OccluFaceError("no keys file given to store the new key in")
        self.hashes[name] = hash_key(key)
        write_json(self.path, {"keys": [{"name": n, "sha256": h} for n, h in self.hashes.items()]},
                   permissions=0o600)  # owner-only: the hashes still name who may enrol
        return key


def open_keys(gallery: str | Path | None, path: str | Path | None = None, plain_keys: list[str] | None = None) -> KeyStore:
    """The keys a server checks: the file's, the plain keys given (e.g. ``$OCCLUFACE_API_KEY``) and, when
    ``gallery`` is a ``postgresql://`` URL, the keys stored in that database."""
    from occluface.gallery.connect import is_database_url, open_gallery

    keys = KeyStore.load(path, plain_keys)
    if is_database_url(str(gallery) if gallery is not None else None):
        keys.database = open_gallery(str(gallery))
    return keys
