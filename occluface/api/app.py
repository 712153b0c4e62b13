"""REST API and web page: the same operations as the CLI, for gates, kiosks and operators' browsers.

Reading (identify, verify, roll-call, subject names) is open; enrolment, deletion and anything that
returns stored face data need an API key. Every error is JSON ``{"error": "..."}`` with a clear message.
Models are loaded once; requests touching them are serialised by a lock (dlib and ONNX sessions are
shared), which keeps memory flat under concurrent load.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from occluface.api.keys import KeyStore
from occluface.recognize import DEFAULT_MODEL
from occluface.errors import ImageError, OccluFaceError

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ApiSettings:
    gallery: Path | None = None
    model: str = DEFAULT_MODEL
    detector: str | None = None  # the service's default (occluface.faces.detect.DEFAULT_DETECTOR)
    keys: KeyStore = field(default_factory=KeyStore)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 20


class _Service:
    """The recognizer, created on first use so the server starts fast and tests can swap pieces."""

    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self._rec = None

    @property
    def rec(self):
        if self._rec is None:
            from occluface.gallery.store import open_gallery
            from occluface.recognize import Recognizer

            self._rec = Recognizer(
                open_gallery(self.settings.gallery), model=self.settings.model, detector=self.settings.detector
            )
        return self._rec


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
    service = _Service(settings)
    app = FastAPI(
        title="occluface",
        version="0.1.0",
        description="Occlusion-robust face recognition: identify, verify, roll-call, enrol.",
    )
    app.state.service = service

    @app.exception_handler(UnknownSubject)
    async def _unknown(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(ImageError)
    async def _bad_image(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(OccluFaceError)
    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:  # never leak a traceback to clients
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.middleware("http")
    async def _limit_upload(request: Request, call_next):
        length = request.headers.get("content-length")
        limit = settings.max_upload_bytes * max(1, settings.max_files)
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse({"error": f"upload of {int(length)} bytes is larger than the {limit} allowed"},
                                status_code=413)
        return await call_next(request)

    app.add_middleware(_StreamLimit, limit=settings.max_upload_bytes * max(1, settings.max_files) + 65536)

    def require_key(x_api_key: str | None = Header(None, description="API key for enrol/delete/export")) -> None:
        if not settings.keys:
            raise HTTPException(403, "this server has no API keys configured; enrolment and deletion are disabled")
        if not x_api_key:
            raise HTTPException(401, "missing API key (send it in the X-API-Key header)")
        if not settings.keys.check(x_api_key):
            raise HTTPException(403, "wrong API key")

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"{upload.filename}: larger than the {settings.max_upload_bytes} bytes allowed")
        if not data:
            raise ImageError(upload.filename or "upload", "empty file (0 bytes)")
        return data

    def decode(data: bytes, name: str):
        from occluface.recognize import read_image

        return read_image(data, name)

    # ----------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": settings.model, "detector": settings.detector}

    # ------------------------------------------------------------ recognition
    @app.post("/api/identify")
    async def identify(file: UploadFile = File(...), top: int = Form(3)) -> dict[str, Any]:
        """Every face in the photo with its best matches ("unknown" below the threshold)."""
        data = await read_upload(file)

        def work() -> dict[str, Any]:  # in a worker thread: the event loop keeps answering other requests
            image = decode(data, file.filename or "upload")
            with service.lock:
                rec = service.rec
                matches = rec.identify(image, image=image, k=max(1, min(int(top), 10)))
                threshold = rec.thresholds.identify
            return {
                "image": {"name": file.filename, "width": int(image.shape[1]), "height": int(image.shape[0])},
                "threshold": threshold,
                "faces": [m.to_dict() for m in matches],
            }

        return await run_in_threadpool(work)

    @app.post("/api/verify")
    async def verify(a: UploadFile = File(...), b: UploadFile = File(...)) -> dict[str, Any]:
        """Same person or not, from the main face of each photo."""
        data_a, data_b = await read_upload(a), await read_upload(b)

        def work() -> dict[str, Any]:
            img_a = decode(data_a, a.filename or "a")
            img_b = decode(data_b, b.filename or "b")
            with service.lock:
                return service.rec.verify(img_a, img_b, names=(a.filename or "a", b.filename or "b")).to_dict()

        return await run_in_threadpool(work)

    @app.post("/api/rollcall")
    async def rollcall(
        file: UploadFile = File(...),
        roster: str = Form("", description="Comma-separated enrolled names; empty = everyone enrolled"),
        method: str = Form("global"),
        threshold: float = Form(0.6),
    ) -> dict[str, Any]:
        """Roll-call of a group photo against the roster (one face per identity)."""
        data = await read_upload(file)
        names = [n.strip() for n in roster.split(",") if n.strip()] or None

        def work() -> dict[str, Any]:
            image = decode(data, file.filename or "upload")
            with service.lock:
                result = service.rec.rollcall(image, names, method=method, threshold=threshold)
            result["image"] = {"name": file.filename, "width": int(image.shape[1]), "height": int(image.shape[0])}
            return result

        return await run_in_threadpool(work)

    @app.post("/api/mask-check")
    async def mask_check(file: UploadFile = File(...), cam: bool = Form(False)) -> dict[str, Any]:
        """Mask state of every face; with ``cam`` also the photo with Grad-CAM heat maps (base64 PNG)."""
        data = await read_upload(file)

        def work() -> dict[str, Any]:
            import base64

            from occluface.maskcheck.cam import png_bytes
            from occluface.maskcheck.predict import mask_check as check

            image = decode(data, file.filename or "upload")
            with service.lock:
                results, annotated = check(image, detector=settings.detector, cam=bool(cam))
            out: dict[str, Any] = {
                "image": {"name": file.filename, "width": int(image.shape[1]), "height": int(image.shape[0])},
                "faces": results,
            }
            if annotated is not None:
                out["cam_png"] = base64.b64encode(png_bytes(annotated)).decode("ascii")
            return out

        return await run_in_threadpool(work)

    # --------------------------------------------------------------- gallery
    @app.get("/api/subjects")
    def subjects() -> dict[str, Any]:
        """Enrolled names and how many embeddings each has (no face data)."""
        with service.lock:
            subs = service.rec.gallery.list_subjects()
        return {"subjects": [{"name": s.name, "embeddings": s.total_embeddings, "created": s.created} for s in subs]}

    @app.post("/api/subjects", dependencies=[Depends(require_key)], status_code=201)
    async def enroll(name: str = Form(...), files: list[UploadFile] = File(...)) -> dict[str, Any]:
        """Enrol a person from photos (all-or-nothing)."""
        if len(files) > settings.max_files:
            raise HTTPException(413, f"at most {settings.max_files} photos per enrolment")
        uploads = [(await read_upload(f), f.filename or "upload") for f in files]

        def work() -> dict[str, Any]:
            images = [decode(data, label) for data, label in uploads]
            with service.lock:
                rec = service.rec
                # decoded arrays carry no names: check faces here so errors still name the file
                for (_, label), img in zip(uploads, images):
                    rec.main_face(img, label)
                return rec.enroll(name, images)

        return await run_in_threadpool(work)

    @app.delete("/api/subjects/{name}", dependencies=[Depends(require_key)])
    def remove(name: str) -> dict[str, Any]:
        """Delete a person and every trace of their data."""
        with service.lock:
            store = service.rec.gallery
            if name not in store:
                raise UnknownSubject(f"no enrolled subject named {name!r}")
            store.remove_subject(name, strict=True)
            from occluface.gallery.search import clear_search_cache

            clear_search_cache(store)
        return {"removed": name}

    @app.get("/api/subjects/{name}/thumbnails/{index}", dependencies=[Depends(require_key)])
    def thumbnail(name: str, index: int) -> Response:
        """A stored enrolment thumbnail (face image data: key required)."""
        with service.lock:
            store = service.rec.gallery
            if name not in store:
                raise UnknownSubject(f"no enrolled subject named {name!r}")
            thumbs = store.thumbnails(name)
        if not 0 <= index < len(thumbs):
            raise UnknownSubject(f"{name!r} has {len(thumbs)} thumbnails; no index {index}")
        return Response(thumbs[index], media_type="image/jpeg")

    return app


class _StreamLimit:
    """Stop reading a request body once it passes ``limit`` bytes and answer HTTP 413.

    The Content-Length check above cannot see chunked uploads (or a false length); without this the whole
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


class UnknownSubject(OccluFaceError):
    """Maps to HTTP 404."""
