"""The web page and the health check (both open)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from occluface.api.deps import SettingsDep
from occluface.api.schemas import HealthResponse
from occluface.api.settings import STATIC

router = APIRouter(tags=["health"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/api/health", response_model=HealthResponse)
def health(settings: SettingsDep) -> HealthResponse:
    """The server is up; the model and detector it serves."""
    return HealthResponse(status="ok", model=settings.model, detector=settings.detector)
