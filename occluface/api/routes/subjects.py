"""The gallery: the list of names is open; enrolment, deletion and thumbnails (face data) need an API key.

``require_key`` is a route dependency, so a request without the right key is refused before its uploads are
read. No search-cache clearing is needed after writes: the gallery-level index is keyed by the store's
``revision``, which every write changes (``occluface.gallery.search``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile

from occluface.api.deps import ServiceDep, SettingsDep, decode, read_upload, require_key
from occluface.api.schemas import EnrollResponse, RemovedResponse, SubjectSummary, SubjectsResponse, error_responses
from occluface.gallery.store import UnknownSubjectError

router = APIRouter(prefix="/api/subjects", tags=["subjects"])
KEY_REQUIRED = [Depends(require_key)]


@router.get("", response_model=SubjectsResponse)
def subjects(service: ServiceDep) -> SubjectsResponse:
    """Enrolled names and how many embeddings each has (no face data)."""
    subs = service.rec.gallery.list_subjects()
    return SubjectsResponse(
        subjects=[SubjectSummary(name=s.name, embeddings=s.total_embeddings, created=s.created) for s in subs]
    )


@router.post("", dependencies=KEY_REQUIRED, status_code=201, response_model=EnrollResponse,
             responses=error_responses(400, 401, 403, 409, 413, 422))
async def enroll(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    name: Annotated[str, Form()],
    files: Annotated[list[UploadFile], File()],
    force: Annotated[bool, Form(description="Enrol even if the face matches another enrolled person")] = False,
) -> EnrollResponse:
    """Enrol a person from photos (all-or-nothing)."""
    if len(files) > settings.max_files:
        raise HTTPException(413, f"at most {settings.max_files} photos per enrolment")
    uploads = [(await read_upload(f, settings), f.filename or "upload") for f in files]
    request.state.audit_names = [name]

    def work() -> EnrollResponse:
        images = [decode(data, label) for data, label in uploads]
        labels = [label for _, label in uploads]  # decoded arrays carry no names: errors still name the file
        return EnrollResponse.model_validate(service.rec.enroll(name, images, names=labels, force=force))

    return await service.run(work)


@router.delete("/{name}", dependencies=KEY_REQUIRED, response_model=RemovedResponse,
               responses=error_responses(401, 403, 404, 422))
def remove(name: str, service: ServiceDep) -> RemovedResponse:
    """Delete a person and every trace of their data."""
    store = service.rec.gallery
    if name not in store:
        raise UnknownSubjectError(name)
    store.remove_subject(name, strict=True)
    return RemovedResponse(removed=name)


@router.get("/{name}/thumbnails/{index}", dependencies=KEY_REQUIRED, response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG thumbnail"},
                       **error_responses(401, 403, 404, 422)})
def thumbnail(name: str, index: int, request: Request, service: ServiceDep) -> Response:
    """A stored enrolment thumbnail (face image data: key required)."""
    store = service.rec.gallery
    if name not in store:
        raise UnknownSubjectError(name)
    request.state.audit_names = [name]
    thumbs = store.thumbnails(name)
    if not 0 <= index < len(thumbs):
        raise HTTPException(404, f"{name!r} has {len(thumbs)} thumbnails; no index {index}")
    return Response(thumbs[index], media_type="image/jpeg")
