"""What the routes share: the settings and the recognizer (from ``request.app.state``), the API-key check,
upload reading under the size limit and decoding that names the file in its errors."""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

import numpy as np
from fastapi import Depends, Header, HTTPException, Request, UploadFile

from occluface.api.settings import ApiSettings
from occluface.errors import ImageError

if TYPE_CHECKING:
    from occluface.recognition.service import Recognizer

T = TypeVar("T")


class Service:
    """The recognizer and the threads that run it.

    The recognizer is created on first use (the server starts fast; tests swap pieces through ``_rec``). Model
    work runs on a pool of ``settings.model_threads`` threads (:meth:`run`), with no lock around it: the
    detectors and SFace keep one OpenCV network per thread, ONNX Runtime sessions and the mask classifier are
    shared read-only, and the few models that are not documented as thread-safe (MTCNN, dlib) lock themselves.
    The pool's size bounds those per-thread copies, so memory stays flat however many clients wait.
    """

    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.threads = settings.resolved_model_threads()
        self._rec: Recognizer | None = None
        self._create_lock = threading.Lock()  # only so that two first requests build one recognizer
        self._pool: ThreadPoolExecutor | None = None
        self._store = None
        self._owns_gallery = False

    @property
    def store(self):
        """The gallery (opened without loading any model: the audit trail of a refused request needs no network)."""
        if self._rec is not None:
            return self._rec.gallery
        if self._store is None:
            with self._create_lock:
                if self._store is None:
                    from occluface.gallery.connect import open_gallery

                    self._store = open_gallery(self.settings.gallery)
                    self._owns_gallery = True
        return self._store

    @property
    def rec(self) -> Recognizer:
        if self._rec is None:
            store = self.store
            with self._create_lock:
                if self._rec is None:
                    from occluface.recognition.service import Recognizer

                    self._rec = Recognizer(store, model=self.settings.model, detector=self.settings.detector)
        return self._rec

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._create_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="occluface-model")
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a model thread; the event loop keeps serving other requests meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    def warm(self) -> None:
        """Load the models and build the gallery's search index before the first request needs them (at a
        million enrolments the index takes about a minute to build)."""
        import logging

        from occluface.gallery.search import search_gallery_batch

        try:
            rec = self.rec
            if rec.model_id in rec.gallery.models():
                search_gallery_batch(rec.gallery, rec.model_id, np.ones(rec.matcher.embedding_size, np.float32), 1)
        except Exception as exc:  # noqa: BLE001 - a request will meet (and report) the same problem
            logging.getLogger("occluface.api").warning("warm-up failed: %s", exc)

    async def run_on_photo(self, data: bytes, filename: str | None, fn: Callable[[np.ndarray], T]) -> T:
        """Decode an uploaded photo and run ``fn(image)``, both on a model thread (errors name the file)."""
        return await self.run(lambda: fn(decode(data, filename or "upload")))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._owns_gallery and self._store is not None:
            self._store.close()
            self._rec, self._store, self._owns_gallery = None, None, False


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_service(request: Request) -> Service:
    return request.app.state.service


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


#: Client addresses of this machine: the only ones an unauthenticated kiosk (``serve --kiosk``) serves.
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(what: str, wait: float) -> HTTPException:
    import logging

    from occluface.api.limits import retry_after

    logging.getLogger("occluface.api").warning("rate limit: %s", what)
    return HTTPException(429, f"too many requests ({what}); retry in {retry_after(wait)} s",
                         headers={"Retry-After": retry_after(wait)})


class Access:
    """Route dependency: the caller needs a key holding ``scope`` (``admin`` holds every scope).

    It runs before any upload is read. Refusals: 401 without a key, 403 for a wrong, revoked or expired key or
    a missing scope, 429 past a rate limit (failed key attempts per client address; identify calls per key and
    per client address). The key's name goes into the audit trail (``request.state.actor``) and the key's record
    into ``request.state.key``. With ``settings.kiosk``, identify-scope routes also serve callers on this machine
    that send no key (actor ``kiosk``).
    """

    def __init__(self, scope: str):
        from occluface.api.keys import SCOPES

        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        self.scope = scope

    def __call__(self, request: Request, settings: SettingsDep,
                 x_api_key: Annotated[str | None, Header(description="API key (see `occluface apikey`)")] = None) -> None:
        limiter = request.app.state.limiter
        client = client_address(request)
        wait = limiter.blocked(("failed", client), settings.failed_key_rate)
        if wait:
            raise _too_many(f"failed key attempts from {client}", wait)
        if not x_api_key and settings.kiosk and self.scope == "identify" and client in LOOPBACK:
            request.state.actor = "kiosk"
        else:
            record = self._authenticate(settings, x_api_key)
            if isinstance(record, HTTPException):
                limiter.take(("failed", client), settings.failed_key_rate)
                raise record
            request.state.actor, request.state.key = record.name, record
        if self.scope == "identify":
            for key, limit in ((("key", request.state.actor), settings.key_rate), (("client", client), settings.client_rate)):
                wait = limiter.take(key, limit)
                if wait:
                    raise _too_many(f"identify calls of {key[0]} {key[1]}", wait)

    def _authenticate(self, settings: ApiSettings, key: str | None):
        if not settings.keys:
            return HTTPException(403, "this server has no API keys configured: create one with "
                                      "`occluface apikey create NAME --scope ...`")
        if not key:
            return HTTPException(401, "missing API key (send it in the X-API-Key header)")
        record = settings.keys.lookup(key)
        if record is None:
            return HTTPException(403, "wrong API key")
        state = record.state()
        if state != "active":
            when = record.revoked if state == "revoked" else record.expires
            return HTTPException(403, f"API key {record.name!r} is {state} (since {when})")
        if not record.allows(self.scope):
            return HTTPException(403, f"API key {record.name!r} lacks the {self.scope!r} scope "
                                      f"(it holds {', '.join(record.scopes)})")
        return record


def require_scope(scope: str) -> Any:
    """``Depends(Access(scope))``, for a route's ``dependencies=[...]``."""
    return Depends(Access(scope))


IDENTIFY, ENROL, ADMIN = (require_scope(s) for s in ("identify", "enrol", "admin"))


def key_holds(request: Request, scope: str) -> bool:
    record = getattr(request.state, "key", None)
    return record is not None and record.allows(scope)


async def read_upload(upload: UploadFile, settings: ApiSettings) -> bytes:
    """The uploaded file's bytes: HTTP 413 past ``max_upload_bytes``, an ``ImageError`` (422) when empty."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"{upload.filename}: larger than the {settings.max_upload_bytes} bytes allowed")
    if not data:
        raise ImageError(upload.filename or "upload", "empty file (0 bytes)")
    return data


def decode(data: bytes, name: str) -> np.ndarray:
    """HxWx3 uint8 RGB; an ``ImageError`` naming ``name`` (the upload's file name) when it is not a usable image."""
    from occluface.recognition.service import read_image

    return read_image(data, name)
