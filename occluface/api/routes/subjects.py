"""The gallery. Enrolment needs the ``enrol`` scope; an ``enrol`` key may add photos to and delete only the
people it enrolled itself (the subject's ``enrolled_by``). The list of names and the thumbnails (face data)
need ``admin``, which may also delete anyone.

The scope check is a route dependency, so a request without the right key is refused before its uploads are
read. No search-cache clearing is needed after writes: the gallery-level index is keyed by the store's
``revision``, which every write changes (``occluface.gallery.search``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile

from occluface.api.deps import ADMIN, ENROL, ServiceDep, SettingsDep, decode, key_holds, read_upload
from occluface.api.schemas import EnrollResponse, RemovedResponse, SubjectSummary, SubjectsResponse, error_responses
from occluface.gallery.store import UnknownSubjectError

router = APIRouter(prefix="/api/subjects", tags=["subjects"])


def _check_owner(request: Request, store, name: str, doing: str) -> None:
    """An ``enrol`` key touches only the people it enrolled; ``admin`` touches anyone."""
    if key_holds(request, "admin"):
        return
    info = store.get_subject(name)
    owner = None if info is None else info.meta.get("enrolled_by")
    if info is not None and owner != request.state.actor:
        raise HTTPException(403, f"{name!r} was enrolled by another key; only it or an admin key may {doing}")


@router.get("", dependencies=[ADMIN], response_model=SubjectsResponse, responses=error_responses(401, 403, 422, 429))
def subjects(service: ServiceDep) -> SubjectsResponse:
    """Enrolled names and how many embeddings each has (no face data)."""
    subs = service.rec.gallery.list_subjects()
    return SubjectsResponse(
        subjects=[SubjectSummary(name=s.name, embeddings=s.total_embeddings, created=s.created) for s in subs]
    )


@router.post("", dependencies=[ENROL], status_code=201, response_model=EnrollResponse,
             responses=error_responses(400, 401, 403, 409, 413, 422, 429))
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
    from occluface.gallery.store import validate_name

    name = validate_name(name)  # the name rule, before any upload is read
    _check_owner(request, service.store, name, "add photos to them")
    uploads = [(await read_upload(f, settings), f.filename or "upload") for f in files]
    request.state.audit_names = [name]
    meta = {"enrolled_by": request.state.actor}

    def work() -> EnrollResponse:
        images = [decode(data, label) for data, label in uploads]
        labels = [label for _, label in uploads]  # decoded arrays carry no names: errors still name the file
        return EnrollResponse.model_validate(service.rec.enroll(name, images, names=labels, force=force, meta=meta))

    return await service.run(work)


@router.delete("/{name}", dependencies=[ENROL], response_model=RemovedResponse,
               responses=error_responses(401, 403, 404, 422, 429))
def remove(name: str, request: Request, service: ServiceDep) -> RemovedResponse:
    """Delete a person and every trace of their data (an ``enrol`` key: only the people it enrolled)."""
    store = service.rec.gallery
    if name not in store:
        raise UnknownSubjectError(name)
    _check_owner(request, store, name, "delete them")
    store.remove_subject(name, strict=True)
    return RemovedResponse(removed=name)


@router.get("/{name}/thumbnails/{index}", dependencies=[ADMIN], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG thumbnail"},
                       **error_responses(401, 403, 404, 422, 429)})
def thumbnail(name: str, index: int, request: Request, service: ServiceDep) -> Response:
    """A stored enrolment thumbnail (face image data: ``admin`` scope)."""
    store = service.rec.gallery
    if name not in store:
        raise UnknownSubjectError(name)
    request.state.audit_names = [name]
    thumbs = store.thumbnails(name)
    if not 0 <= index < len(thumbs):
        raise HTTPException(404, f"{name!r} has {len(thumbs)} thumbnails; no index {index}")
    return Response(thumbs[index], media_type="image/jpeg")
