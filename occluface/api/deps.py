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


def require_key(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="API key for enrol/delete/export")] = None,
) -> None:
    """Route dependency of everything that writes the gallery or returns stored face data; it runs before any
    upload is read. The key's name goes into the audit trail."""
    if not settings.keys:
        raise HTTPException(403, "this server has no API keys configured; enrolment and deletion are disabled")
    if not x_api_key:
        raise HTTPException(401, "missing API key (send it in the X-API-Key header)")
    name = settings.keys.name_of(x_api_key)
    if name is None:
        raise HTTPException(403, "wrong API key")
    request.state.actor = name


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
