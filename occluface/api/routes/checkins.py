"""Check-in events of the cameras (``occluface watch``): who came past which camera when. They name people,
so reading them needs an API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

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
