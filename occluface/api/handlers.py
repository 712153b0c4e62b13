"""Every error as JSON ``{"error": "..."}``: the shared ``occluface`` exceptions mapped to HTTP status codes.

``UnknownSubjectError`` (the gallery's) -> 404, ``DuplicateIdentityError`` -> 409, ``ImageError`` (an unusable upload) -> 422, any other
``OccluFaceError`` -> 400, ``HTTPException`` -> its own code, invalid form fields -> 422, anything else -> 500
without a traceback. Starlette picks the handler of the most specific class, so the order below is free.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from occluface.errors import DuplicateIdentityError, ImageError, OccluFaceError
from occluface.gallery.store import UnknownSubjectError


async def unknown_subject(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=404)


async def duplicate_identity(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=409)  # the message names the person it matched


async def bad_image(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=422)


async def domain_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def internal_error(_: Request, exc: Exception) -> JSONResponse:  # never leak a traceback to clients
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Any], Any]] = {
    UnknownSubjectError: unknown_subject,
    DuplicateIdentityError: duplicate_identity,
    ImageError: bad_image,
    OccluFaceError: domain_error,
    HTTPException: http_error,
    Exception: internal_error,
    RequestValidationError: invalid_request,
}
