"""Check-in events of the cameras (``occluface watch``): who came past which camera when. They name people,
so reading them needs a key with the ``identify`` scope."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from occluface.api.deps import IDENTIFY, ServiceDep, SettingsDep
from occluface.api.settings import preview_file
from occluface.api.schemas import CheckIn, CheckInsResponse, error_responses

router = APIRouter(prefix="/api", tags=["checkins"])


@router.get("/checkins", dependencies=[IDENTIFY], response_model=CheckInsResponse,
            responses=error_responses(401, 403, 422))
def checkins(service: ServiceDep, since: str | None = None, until: str | None = None,
             camera: str | None = None) -> CheckInsResponse:
    """Check-in events, oldest first (``since``/``until``: ISO-8601 UTC times; ``camera``: one camera's)."""
    rows = service.rec.gallery.checkins(since=since, until=until, camera=camera)
    return CheckInsResponse(checkins=[CheckIn.model_validate(r) for r in rows])


@router.get("/checkins/stream", dependencies=[IDENTIFY], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events, one per check-in"},
                       **error_responses(401, 403, 422)})
async def checkins_stream(request: Request, service: ServiceDep, after_id: int = 0, camera: str | None = None,
                          poll_s: float = 1.0) -> StreamingResponse:
    """New check-ins as they are stored, as server-sent events (``data: {json}``), from every camera's watcher
    (they write to the same gallery); a comment line every 15 s keeps idle connections open."""
    store = service.rec.gallery
    poll = min(max(poll_s, 0.2), 10.0)

    async def events():
        last, idle = after_id, 0.0
        yield ": following check-ins\n\n"
        while not await request.is_disconnected():
            rows = await asyncio.to_thread(store.checkins, after_id=last, camera=camera)
            for row in rows:
                last = max(last, int(row["id"]))
                yield f"id: {row['id']}\ndata: {json.dumps(CheckIn.model_validate(row).model_dump())}\n\n"
            idle = 0.0 if rows else idle + poll
            if idle >= 15.0:
                idle = 0.0
                yield ": still here\n\n"
            await asyncio.sleep(poll)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _preview_bytes(settings, camera: str) -> bytes:
    if settings.preview_dir is None:
        raise HTTPException(404, "this server shows no camera previews (start it with --preview-dir)")
    path = preview_file(settings.preview_dir, camera)
    try:
        return path.read_bytes()
    except OSError:
        raise HTTPException(404, f"no preview of camera {camera!r} (is `occluface watch --camera {camera} "
                                 f"--preview-dir {settings.preview_dir}` running?)") from None


@router.get("/cameras/{camera}/preview.jpg", dependencies=[IDENTIFY], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The camera's latest annotated frame"},
                       **error_responses(401, 403, 404, 422)})
def camera_preview(camera: str, settings: SettingsDep) -> Response:
    """The latest annotated frame of a watched camera (faces: key required)."""
    return Response(_preview_bytes(settings, camera), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/cameras/{camera}/preview.mjpg", dependencies=[IDENTIFY], response_class=StreamingResponse,
            responses={200: {"content": {"multipart/x-mixed-replace": {}}, "description": "MJPEG of the annotated frames"},
                       **error_responses(401, 403, 404, 422)})
async def camera_preview_stream(camera: str, request: Request, settings: SettingsDep) -> StreamingResponse:
    """The annotated frames of a watched camera as MJPEG (``multipart/x-mixed-replace``), about twice a second."""
    first = _preview_bytes(settings, camera)

    async def parts():
        data, last = first, None
        while not await request.is_disconnected():
            if data is not None and data != last:
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n"
                last = data
            await asyncio.sleep(0.5)
            try:
                data = await asyncio.to_thread(preview_file(settings.preview_dir, camera).read_bytes)
            except OSError:
                data = None

    return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                             headers={"Cache-Control": "no-store"})
