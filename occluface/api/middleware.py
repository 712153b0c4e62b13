"""Plain ASGI middleware (no ``BaseHTTPMiddleware``: no extra task and stream per request): upload size limits
applied before any route runs (a Content-Length check and a cut-off on the stream), and the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

class StreamLimit:
    """HTTP 413 for a request whose Content-Length alone is over ``length_limit`` bytes (before any of its body
    is read), and for a body that passes ``limit`` bytes while it streams in.

    The Content-Length check cannot see chunked uploads (or a false length); without the cut-off the whole
    body would be received and spooled to disk before the per-file size check runs. Past the limit the app
    is told the client went away, and whatever it answers is replaced by the 413.
    """

    def __init__(self, app: Any, limit: int, length_limit: int | None = None):
        self.app, self.limit = app, limit
        self.length_limit = limit if length_limit is None else length_limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.length_limit:
            await JSONResponse({"error": f"upload of {int(length)} bytes is larger than the {self.length_limit} "
                                         "allowed"}, status_code=413)(scope, receive, send)
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


class AuditTrail:
    """One audit line per API call (time, key name, client address, route, status and the names the call
    returned or touched; never images or vectors), written once the answer is sent. ``/api/health`` is not
    audited; a call that fails inside the app is audited with status 500."""

    def __init__(self, app: Any, service: Any):
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path == "/api/health":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            from starlette.concurrency import run_in_threadpool

            state = scope.get("state") or {}
            route = getattr(scope.get("route"), "path", path)
            client = scope.get("client")
            await run_in_threadpool(
                self.service.store.audit, f"{scope['method']} {route}", actor=state.get("actor"),
                client=client[0] if client else None, route=route, status=status,
                names=state.get("audit_names", []))
