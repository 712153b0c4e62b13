"""What the routes share: the settings and the recognizer (from ``request.app.state``), the API-key check,
upload reading under the size limit and decoding that names the file in its errors."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import Depends, Header, HTTPException, Request, UploadFile

from occluface.api.settings import ApiSettings
from occluface.errors import ImageError

if TYPE_CHECKING:
    from occluface.recognition.service import Recognizer


class Service:
    """The recognizer, created on first use so the server starts fast and tests can swap pieces (``_rec``).

    Models are loaded once; requests touching them hold ``lock`` (dlib and ONNX sessions are shared), which
    keeps memory flat under concurrent load.
    """

    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self._rec: Recognizer | None = None

    @property
    def rec(self) -> Recognizer:
        if self._rec is None:
            from occluface.gallery.store import open_gallery
            from occluface.recognition.service import Recognizer

            self._rec = Recognizer(
                open_gallery(self.settings.gallery), model=self.settings.model, detector=self.settings.detector
            )
        return self._rec


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_service(request: Request) -> Service:
    return request.app.state.service


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


def require_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="API key for enrol/delete/export")] = None,
) -> None:
    """Route dependency of everything that writes the gallery or returns stored face data; it runs before any
    upload is read."""
    if not settings.keys:
        raise HTTPException(403, "this server has no API keys configured; enrolment and deletion are disabled")
    if not x_api_key:
        raise HTTPException(401, "missing API key (send it in the X-API-Key header)")
    if not settings.keys.check(x_api_key):
        raise HTTPException(403, "wrong API key")


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
