"""Upload size limits applied before any route runs: a Content-Length check and a cut-off on the stream."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse

CallNext = Callable[[Request], Awaitable[Response]]


def content_length_limit(limit: int) -> Callable[[Request, CallNext], Awaitable[Response]]:
    """HTTP middleware answering 413 to a request whose Content-Length alone is over ``limit`` bytes."""

    async def check(request: Request, call_next: CallNext) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse({"error": f"upload of {int(length)} bytes is larger than the {limit} allowed"},
                                status_code=413)
        return await call_next(request)

    return check


class StreamLimit:
    """Stop reading a request body once it passes ``limit`` bytes and answer HTTP 413.

    The Content-Length check cannot see chunked uploads (or a false length); without this the whole
    body would be received and spooled to disk before the per-file size check runs. Past the limit the app
    is told the client went away, and whatever it answers is replaced by the 413.
    """

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen, over, answered = 0, False, False

        async def limited() -> dict:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def refuse() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await JSONResponse({"error": f"upload is larger than the {self.limit} bytes allowed"},
                                   status_code=413)(scope, receive, send)

        async def guarded(message: dict) -> None:
            if over:
                await refuse()
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not over:
                raise
        if over:
            await refuse()


def audit_trail(service) -> Callable:
    """HTTP middleware: one audit line per API call (time, key name, client address, route, status and the
    names the call returned or touched; never images or vectors). ``/api/health`` is not audited."""
    from starlette.concurrency import run_in_threadpool

    async def middleware(request, call_next):
        response = await call_next(request)
        path = request.url.path
        if path.startswith("/api/") and path != "/api/health":
            route = getattr(request.scope.get("route"), "path", path)
            await run_in_threadpool(
                service.store.audit, f"{request.method} {route}", actor=getattr(request.state, "actor", None),
                client=request.client.host if request.client else None, route=route, status=response.status_code,
                names=getattr(request.state, "audit_names", []))
        return response

    return middleware
