"""REST API and web page: the same operations as the CLI, for gates, kiosks and operators' browsers.

Every route except the page and the health check needs an API key with a scope (``occluface.api.keys``):
``identify`` (identify, verify, roll-call, mask check, check-ins), ``enrol`` (enrol, delete own) or ``admin``
(subject names, thumbnails, keys, audit); ``serve --kiosk`` opens the identify scope to this machine only.
Calls are rate-limited per key and per client address (``occluface.api.limits``). Every error is JSON ``{"error": "..."}`` with a clear message.
Models are loaded once per process and run on a bounded pool of model threads with no global lock
(``occluface.api.deps.Service``); several processes (``occluface serve --workers N``) share one gallery.

This module only wires the app: settings and state, the upload limits, the exception handlers, the
static files and the routers of ``occluface.api.routes`` (shared dependencies in ``occluface.api.deps``,
response models in ``occluface.api.schemas``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from occluface.api.deps import Service
from occluface.api.handlers import EXCEPTION_HANDLERS
from occluface.api.limits import RateLimiter
from occluface.api.middleware import AuditTrail, StreamLimit
from occluface.api.routes import admin, checkins, health, recognition, subjects
from occluface.api.settings import STATIC, ApiSettings

__all__ = ["ApiSettings", "ROUTERS", "SETTINGS_ENV", "create_app", "serve_app"]

#: ``occluface serve`` hands its settings to each server process in this environment variable (JSON).
SETTINGS_ENV = "OCCLUFACE_SERVE_SETTINGS"

#: The API's routers, in the order their operations appear on /docs.
ROUTERS = (health.router, recognition.router, subjects.router, checkins.router, admin.router)


def _single_threaded_search() -> None:
    """One FAISS thread per query: on a small, busy machine extra threads only queue (bench search)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        return
    faiss.omp_set_num_threads(1)


#: How often a server with a retention rule (``serve --keep-days``) purges what has grown too old.
RETENTION_EVERY_S = 3600.0


async def _apply_retention(service: Service, keep_days: float) -> None:
    """Purge audit lines and check-ins older than ``keep_days`` now and every :data:`RETENTION_EVERY_S` (each
    purge is itself an audit line); a failed purge is logged and tried again next time, never fatal."""
    import logging

    log = logging.getLogger("occluface.api")

    def purge() -> dict:
        gone = service.store.purge_older(keep_days)
        service.store.audit("purge", actor=f"retention {keep_days:g} days", names=[])
        return gone

    while True:
        try:
            gone = await asyncio.to_thread(purge)
            log.info("retention: purged %d audit line(s) and %d check-in(s) older than %s",
                     gone["audit"], gone["checkins"], gone["before"])
        except Exception as exc:  # noqa: BLE001 - the server keeps serving; the next run tries again
            log.warning("retention purge failed: %s", exc)
        await asyncio.sleep(RETENTION_EVERY_S)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    _single_threaded_search()
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = app.state.service
        if app.state.settings.warm_up:  # in the background: the server answers /api/health meanwhile
            asyncio.get_running_loop().run_in_executor(service.pool, service.warm)
        retention = None
        if app.state.settings.keep_days is not None:
            retention = asyncio.create_task(_apply_retention(service, app.state.settings.keep_days))
        yield
        if retention is not None:
            retention.cancel()
        app.state.service.close()  # the model threads; the gallery if the service opened it

    app = FastAPI(
        lifespan=lifespan,
        title="occluface",
        version="0.1.0",
        description="Occlusion-robust face recognition: identify, verify, roll-call, enrol.",
        # The routers' routes go straight into the app's route table instead of through app.include_router():
        # since FastAPI 0.137 include_router() adds one lazy node per router, and app.routes would no longer
        # list the APIRoutes themselves (tests/test_access.py audits every route's key protection from it).
        routes=[route for router in ROUTERS for route in router.routes],
    )
    app.state.settings = settings
    app.state.service = Service(settings)
    app.state.limiter = RateLimiter()

    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)

    app.add_middleware(AuditTrail, service=app.state.service)  # innermost: it sees the final status of every call
    # outermost (added last): the Content-Length check, then the cut-off on the streamed body
    app.add_middleware(StreamLimit, limit=settings.max_request_bytes + 65536,
                       length_limit=settings.max_request_bytes)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve_app() -> FastAPI:
    """The app of one ``occluface serve`` process (uvicorn's factory, run in every worker process).

    Reads the settings ``serve`` wrote to :data:`SETTINGS_ENV`, then limits each model call's threads so that
    this process's model threads together use its share of the cores and no more (spinning threads of several
    processes on two cores only slow each other down)."""
    import json
    import os

    from occluface.api.keys import open_keys
    from occluface.runtime import limit_threads

    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    keys = open_keys(raw.get("gallery"), raw.pop("keys_file", None), [os.environ.get("OCCLUFACE_API_KEY", "")])
    per_key = raw.pop("rate_limit", None)
    settings = ApiSettings(keys=keys, warm_up=True, **raw)
    if per_key is not None:
        settings = settings.with_rate_limit(float(per_key))
    limit_threads(settings.op_threads(), opencv=True)
    return create_app(settings)
