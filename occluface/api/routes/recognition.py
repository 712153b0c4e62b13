"""Identify, verify, roll-call and mask check: the ``identify`` scope (they return names, never stored images or
vectors); rate-limited per key and per client address.

Decoding and the models run on the service's model threads (``Service.run``, no lock around them), so the
event loop keeps answering other requests and every core works.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from occluface.api.deps import IDENTIFY, ServiceDep, SettingsDep, decode, read_upload
from occluface.api.schemas import (
    IdentifyResponse,
    ImageInfo,
    MaskCheckResponse,
    RollcallResponse,
    VerifyResponse,
    error_responses,
)

router = APIRouter(prefix="/api", tags=["recognition"], dependencies=[IDENTIFY],
                   responses=error_responses(400, 401, 403, 413, 422, 429))


@router.post("/identify", response_model=IdentifyResponse)
async def identify(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    file: Annotated[UploadFile, File()],
    top: Annotated[int, Form()] = 3,
) -> IdentifyResponse:
    """Every face in the photo with its best matches ("unknown" below the threshold)."""
    data = await read_upload(file, settings)

    def work(image) -> IdentifyResponse:
        rec = service.rec
        matches = rec.identify(image, image=image, k=max(1, min(int(top), 10)))
        threshold = rec.thresholds.identify
        return IdentifyResponse(image=ImageInfo.of(file.filename, image), threshold=threshold,
                                faces=[m.to_dict() for m in matches])

    result = await service.run_on_photo(data, file.filename, work)
    request.state.audit_names = [f.name for f in result.faces if f.name]
    return result


@router.post("/verify", response_model=VerifyResponse)
async def verify(
    settings: SettingsDep,
    service: ServiceDep,
    a: Annotated[UploadFile, File()],
    b: Annotated[UploadFile, File()],
) -> VerifyResponse:
    """Same person or not, from the main face of each photo."""
    data_a, data_b = await read_upload(a, settings), await read_upload(b, settings)

    def work() -> VerifyResponse:
        img_a = decode(data_a, a.filename or "a")
        img_b = decode(data_b, b.filename or "b")
        result = service.rec.verify(img_a, img_b, names=(a.filename or "a", b.filename or "b"))
        return VerifyResponse.model_validate(result.to_dict())

    return await service.run(work)


@router.post("/rollcall", response_model=RollcallResponse, response_model_exclude_unset=True)
async def rollcall(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    file: Annotated[UploadFile, File()],
    roster: Annotated[str, Form(description="Comma-separated enrolled names; empty = everyone enrolled")] = "",
    method: Annotated[str, Form()] = "global",
    threshold: Annotated[float, Form()] = 0.6,
) -> RollcallResponse:
    """Roll-call of a group photo against the roster (one face per identity)."""
    data = await read_upload(file, settings)
    names = [n.strip() for n in roster.split(",") if n.strip()] or None

    def work(image) -> RollcallResponse:
        result = service.rec.rollcall(image, names, method=method, threshold=threshold)
        return RollcallResponse.model_validate(result | {"image": ImageInfo.of(file.filename, image)})

    result = await service.run_on_photo(data, file.filename, work)
    request.state.audit_names = list(result.present)
    return result


@router.post("/mask-check", response_model=MaskCheckResponse, response_model_exclude_unset=True)
async def mask_check(
    settings: SettingsDep,
    service: ServiceDep,
    file: Annotated[UploadFile, File()],
    cam: Annotated[bool, Form()] = False,
) -> MaskCheckResponse:
    """Mask state of every face; with ``cam`` also the photo with Grad-CAM heat maps (base64 PNG)."""
    data = await read_upload(file, settings)

    def work(image) -> MaskCheckResponse:
        from occluface.maskcheck.cam import png_bytes
        from occluface.maskcheck.predict import mask_check as check

        results, annotated = check(image, detector=settings.detector, cam=bool(cam))
        heat_map = {} if annotated is None else {"cam_png": base64.b64encode(png_bytes(annotated)).decode("ascii")}
        # cam_png unset without a heat map: the route leaves unset fields out of the answer
        return MaskCheckResponse(image=ImageInfo.of(file.filename, image), faces=results, **heat_map)

    return await service.run_on_photo(data, file.filename, work)
