"""REST API and web page: the same operations as the CLI, for gates, kiosks and operators' browsers.

Reading (identify, verify, roll-call, subject names) is open; enrolment, deletion and anything that
returns stored face data need an API key. Every error is JSON ``{"error": "..."}`` with a clear message.
Models are loaded once; requests touching them are serialised by a lock (dlib and ONNX sessions are
shared), which keeps memory flat under concurrent load.

This module only wires the app: settings and state, the upload limits, the exception handlers, the
static files and the routers of ``occluface.api.routes`` (shared dependencies in ``occluface.api.deps``,
response models in ``occluface.api.schemas``).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from occluface.api.deps import Service
from occluface.api.handlers import EXCEPTION_HANDLERS
from occluface.api.middleware import StreamLimit, content_length_limit
from occluface.api.routes import health, recognition, subjects
from occluface.api.settings import STATIC, ApiSettings

__all__ = ["ApiSettings", "ROUTERS", "create_app"]

#: The API's routers, in the order their operations appear on /docs.
ROUTERS = (health.router, recognition.router, subjects.router)


def _single_threaded_search() -> None:
    """One FAISS thread per query: on a small, busy machine extra threads only queue (bench search)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        return
    faiss.omp_set_num_threads(1)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    _single_threaded_search()
    app = FastAPI(
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

    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)

    # the Content-Length check runs inside the stream cut-off (the middleware added last is outermost)
    app.middleware("http")(content_length_limit(settings.max_request_bytes))
    app.add_middleware(StreamLimit, limit=settings.max_request_bytes + 65536)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
