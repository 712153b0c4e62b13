"""Keys and the audit trail (``admin`` scope): who may call the API, and what they did."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from occluface.api.deps import ADMIN, ServiceDep, SettingsDep
from occluface.api.schemas import AuditLine, AuditResponse, KeyInfo, KeysResponse, error_responses

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[ADMIN], responses=error_responses(401, 403, 422, 429))


@router.get("/keys", response_model=KeysResponse)
def keys(settings: SettingsDep) -> KeysResponse:
    """Every key the server accepts or once accepted: name, scopes, state and times (never the key or its hash)."""
    return KeysResponse(keys=[KeyInfo(**k.public()) for k in settings.keys.all().values()])


@router.get("/audit", response_model=AuditResponse)
def audit(
    service: ServiceDep,
    since: Annotated[str | None, Query(description="ISO time: only lines from then on")] = None,
    until: Annotated[str | None, Query(description="ISO time: only lines before then")] = None,
    name: Annotated[str | None, Query(description="Only lines that returned or touched this person")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> AuditResponse:
    """The latest audit lines (at most ``limit``), oldest first."""
    rows = service.store.audit_entries(since=since, until=until, name=name)
    return AuditResponse(lines=[AuditLine(**{k: r.get(k) for k in AuditLine.model_fields}) for r in rows[-limit:]])
