"""Check-in events of the cameras (``occluface watch``): who came past which camera when. They name people,
so reading them needs an API key."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from occluface.api.deps import ServiceDep, require_key
from occluface.api.schemas import CheckIn, CheckInsResponse, error_responses

router = APIRouter(prefix="/api", tags=["checkins"])


@router.get("/checkins", dependencies=[Depends(require_key)], response_model=CheckInsResponse,
            responses=error_responses(401, 403, 422))
def checkins(service: ServiceDep, since: str | None = None, until: str | None = None,
             camera: str | None = None) -> CheckInsResponse:
    """Check-in events, oldest first (``since``/``until``: ISO-8601 UTC times; ``camera``: one camera's)."""
    rows = service.rec.gallery.checkins(since=since, until=until, camera=camera)
    return CheckInsResponse(checkins=[CheckIn.model_validate(r) for r in rows])


@router.get("/checkins/stream", dependencies=[Depends(require_key)], response_class=StreamingResponse,
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
