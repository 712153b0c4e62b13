"""API keys with scopes, expiry and revocation, stored only as hashes.

Keys are random 32-byte tokens, so a plain SHA-256 is enough (no password stretching needed) and a
stolen keys file reveals no usable key. Comparison is constant-time. A key lives in a JSON file (``--keys``)
or in the gallery database itself (``api_keys``: SQLite or PostgreSQL, so every API process and host sees a
new or revoked key within :data:`DB_REFRESH_S`).

Scopes (:data:`SCOPES`): ``identify`` (identify, verify, roll-call, mask check, read check-ins and camera
previews), ``enrol`` (enrol, delete the people this key enrolled) and ``admin`` (everything, including the list
of enrolled names, thumbnails, keys and the audit trail). Keys made before scopes existed hold every scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from occluface.errors import OccluFaceError
from occluface.io import write_json

PREFIX = "ocf_"
SCOPES = ("identify", "enrol", "admin")
#: How long a server trusts its copy of the database's keys (a revoked key stops working within this).
DB_REFRESH_S = 1.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def parse_scopes(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"identify,enrol"`` -> ("identify", "enrol"); an unknown scope is a clear error."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    scopes = tuple(dict.fromkeys(s.strip().lower() for s in items if s and s.strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise OccluFaceError(f"unknown or empty key scope(s) {', '.join(bad) or repr(text)}; choose from {', '.join(SCOPES)}")
    return scopes


def parse_expiry(text: str | None, now: datetime | None = None) -> str | None:
    """``"30d"``, ``"12h"``, ``"90m"`` from now, or an ISO 8601 time -> an ISO UTC time; None/"" -> never."""
    if not text:
        return None
    now = now or _now()
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text)
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        return (now + timedelta(**{unit: float(m.group(1))})).isoformat(timespec="seconds")
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OccluFaceError(f"expiry {text!r}: give a duration like 30d, 12h, 90m or an ISO time like 2027-01-31T18:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never the key itself)."""

    name: str
    sha256: str
    scopes: tuple[str, ...] = SCOPES
    created: str | None = None
    expires: str | None = None
    revoked: str | None = None
    where: str = field(default="file", compare=False)

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked:
            return "revoked"
        if self.expires and datetime.fromisoformat(self.expires) <= (now or _now()):
            return "expired"
        return "active"

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def public(self) -> dict[str, Any]:
        """What may be listed: everything except the hash."""
        d = asdict(self)
        d.pop("sha256")
        return d | {"scopes": list(self.scopes), "state": self.state()}


def _record(entry: dict, where: str) -> ApiKey:
    scopes = entry.get("scopes")
    return ApiKey(str(entry["name"]), str(entry["sha256"]), parse_scopes(scopes) if scopes else SCOPES,
                  entry.get("created"), entry.get("expires"), entry.get("revoked"), where)


class KeyStore:
    """The keys a server accepts: a JSON file's (``{"keys": [{"name", "sha256", "scopes", ...}]}``), plain keys
    given at start-up (``$OCCLUFACE_API_KEY``: every scope) and those of a gallery ``database``."""

    def __init__(self, hashes: dict[str, str] | None = None, path: Path | None = None, database: Any = None,
                 records: list[ApiKey] | None = None):
        self.records: dict[str, ApiKey] = {r.name: r for r in records or []}
        for name, digest in (hashes or {}).items():
            self.records[name] = ApiKey(name, digest, where="given")
        self.path = path
        self.database = database
        self._db_cache: tuple[float, dict[str, ApiKey]] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    def _database_records(self) -> dict[str, ApiKey]:
        if self.database is None:
            return {}
        with self._lock:
            if self._db_cache is None or time.monotonic() - self._db_cache[0] > DB_REFRESH_S:
                rows = self.database.api_key_records()
                self._db_cache = (time.monotonic(), {r["name"]: _record(r, "gallery") for r in rows})
            return self._db_cache[1]

    def all(self) -> dict[str, ApiKey]:
        return {**self.records, **self._database_records()}

    @classmethod
    def load(cls, path: str | Path | None = None, plain_keys: list[str] | None = None) -> "KeyStore":
        records: list[ApiKey] = []
        p = Path(path) if path else None
        if p is not None and p.exists():
            try:
                data = json.loads(p.read_text())
                records = [_record(entry, "file") for entry in data.get("keys", [])]
            except (ValueError, KeyError, TypeError, AttributeError, OccluFaceError) as exc:
                raise OccluFaceError(f"{p}: not a valid API keys file ({exc})") from None
        store = cls(path=p, records=records)
        for i, key in enumerate(plain_keys or []):
            if key:
                store.records[f"env-{i}"] = ApiKey(f"env-{i}", hash_key(key), where="environment")
        return store

    def __bool__(self) -> bool:
        return bool(self.all())

    def lookup(self, key: str | None) -> ApiKey | None:
        """The record of ``key`` (constant-time comparison of hashes, whatever its state), or None."""
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for record in self.all().values():
            if hmac.compare_digest(digest, record.sha256):
                found = record
        return found

    def name_of(self, key: str | None) -> str | None:
        """The name of an *active* key, or None."""
        record = self.lookup(key)
        return record.name if record is not None and record.state() == "active" else None

    def check(self, key: str | None) -> bool:
        return self.name_of(key) is not None

    # ------------------------------------------------------------------ changing (file or database)
    def _save_file(self) -> None:
        if self.path is None:
            raise OccluFaceError("no keys file given to store the key in")
        entries = [asdict(r) | {"scopes": list(r.scopes)} for r in self.records.values() if r.where == "file"]
        for e in entries:
            e.pop("where")
        write_json(self.path, {"keys": entries}, permissions=0o600)  # owner-only: the hashes still name who may enrol

    def add(self, name: str, scopes: tuple[str, ...] | str = SCOPES, expires: str | None = None) -> str:
        """Create a key called ``name`` with ``scopes`` (and an ISO expiry time), store its hash in the
        database if there is one, else the keys file, and return the key (shown once)."""
        from occluface.gallery.store import validate_name

        name, scopes = validate_name(name), parse_scopes(scopes)
        key = new_key()
        if name in self.all():
            raise OccluFaceError(f"an API key called {name!r} exists already (revoke it or pick another name)")
        if self.database is not None:
            self.database.add_api_key(name, hash_key(key), scopes=",".join(scopes), expires=expires)
            self._db_cache = None
            return key
        self.records[name] = ApiKey(name, hash_key(key), scopes, _now().isoformat(timespec="seconds"), expires)
        self._save_file()
        return key

    def update(self, name: str, *, revoked: bool | None = None, expires: str | None | bool = False) -> ApiKey:
        """Revoke a key and/or set its expiry (``expires=None``: never); the changed record."""
        record = self.all().get(name)
        if record is None:
            raise OccluFaceError(f"no API key called {name!r}")
        changes: dict[str, Any] = {}
        if revoked:
            changes["revoked"] = _now().isoformat(timespec="seconds")
        if expires is not False:
            changes["expires"] = expires
        if record.where == "gallery":
            self.database.update_api_key(name, **changes)
            self._db_cache = None
        elif record.where == "file":
            self.records[name] = replace(record, **changes)
            self._save_file()
        else:
            raise OccluFaceError(f"API key {name!r} was given to the server at start-up ({record.where}); "
                                 "remove it there")
        return self.all()[name]


def open_keys(gallery: Any = None, path: str | Path | None = None, plain_keys: list[str] | None = None,
              *, database: bool = True) -> KeyStore:
    """The keys a server checks: the file's, the plain keys given (e.g. ``$OCCLUFACE_API_KEY``) and those stored
    in the gallery's database (``gallery``: a path, a ``postgresql://`` URL or an open store)."""
    keys = KeyStore.load(path, plain_keys)
    if database:
        if gallery is None or isinstance(gallery, (str, Path)):
            from occluface.gallery.connect import open_gallery

            gallery = open_gallery(str(gallery) if gallery is not None else None)
        keys.database = gallery
    return keys
