"""Response bodies of the JSON routes, as documented on ``/docs`` and ``/openapi.json``.

Field names and order are those of the dicts the recognizer produces (``Match.to_dict``,
``Verification.to_dict``, ``RollCallResult.to_dict``, ``occluface.maskcheck.predict.mask_check``), so clients
(the web page's app.js, the load test, the fuzzer) read exactly what they read before these models existed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorResponse(BaseModel):
    """Every error the API answers: one clear message (naming the upload at fault where there is one)."""

    error: str = Field(description="What went wrong, e.g. `photo.jpg: not a recognised image`")


class ImageInfo(BaseModel):
    """The uploaded photo as decoded."""

    name: str | None = Field(description="The upload's file name")
    width: int
    height: int

    @classmethod
    def of(cls, name: str | None, image: Any) -> ImageInfo:
        """From a decoded HxWx3 array."""
        return cls(name=name, width=int(image.shape[1]), height=int(image.shape[0]))


class HealthResponse(BaseModel):
    status: str = Field(description='Always "ok" when the server answers')
    model: str = Field(description="The recognition model the server was started with")
    detector: str | None = Field(description="The face detector it was started with (null: the default one)")


# ----------------------------------------------------------------------------- recognition
class Candidate(BaseModel):
    name: str
    similarity: float


class MaskState(BaseModel):
    label: str = Field(description='Mask classifier label, e.g. "masked" or "unmasked"')
    prob: float = Field(description="Probability of that label")


class IdentifiedFace(BaseModel):
    """One detected face and who it is (``Match.to_dict``)."""

    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded photo")
    detection_score: float
    name: str | None = Field(description="The enrolled subject, or null below the identification threshold")
    label: str = Field(description='`name`, or "unknown"')
    similarity: float = Field(description="Similarity to the best candidate (on the threshold's scale)")
    candidates: list[Candidate] = Field(description="Best enrolled subjects, most similar first")
    mask: MaskState | None = Field(description="Mask state of the face (null when not checked)")


class IdentifyResponse(BaseModel):
    image: ImageInfo
    threshold: float = Field(description="Identification threshold: below it a face is unknown")
    faces: list[IdentifiedFace]


class VerifyResponse(BaseModel):
    """Same person or not, from the main face of each photo (``Verification.to_dict``)."""

    same: bool
    similarity: float
    threshold: float
    boxes: list[list[float]] = Field(description="The face used in each photo: x1, y1, x2, y2")


class RollcallFace(BaseModel):
    """One face of the group photo (``occluface.rollcall.assign.FaceResult``)."""

    model_config = ConfigDict(extra="allow")  # a dataclass's asdict(): new fields pass through unchanged

    index: int
    identity: str | None = Field(description="Whom the face was assigned to; null when uncertain")
    confidence: float = Field(description="Confidence of the face being its candidate")
    candidate: str | None = Field(description="The best match even when not confident enough to accept it")
    status: str = Field(description='"present" or "uncertain"')
    box: list[float] | None = None


class RollcallResponse(BaseModel):
    """Who of the roster is present, absent, or to be checked by a person (``RollCallResult.to_dict``)."""

    model_config = ConfigDict(extra="allow")  # the roll-call result is open-ended: extra keys pass through

    faces: list[RollcallFace]
    present: list[str]
    absent: list[str]
    unresolved: list[str] = Field(description="Roster names a person should check")
    method: str
    threshold: float
    roster: list[str] = Field(default_factory=list, description="The roster used (absent when no face was found)")
    note: str = ""
    image: ImageInfo


class MaskCheckFace(BaseModel):
    """Mask state of one face (``occluface.maskcheck.predict.mask_check``)."""

    box: list[float] | None
    score: float = Field(description="Detection score")
    label: str
    prob: float = Field(description="Probability of `label`")
    probs: dict[str, float] = Field(description="Probability of every class")


class MaskCheckResponse(BaseModel):
    image: ImageInfo
    faces: list[MaskCheckFace]
    cam_png: str | None = Field(
        default=None, description="Base64 PNG of the photo with Grad-CAM heat maps; only present when `cam` was asked"
    )


# ----------------------------------------------------------------------------- gallery
class SubjectSummary(BaseModel):
    """An enrolled person, without any face data."""

    name: str
    embeddings: int = Field(description="Stored embeddings, over all models")
    created: str = Field(description="When the person was first enrolled (ISO 8601, UTC)")


class SubjectsResponse(BaseModel):
    subjects: list[SubjectSummary]


class CheckIn(BaseModel):
    id: int
    time: str = Field(description="When the person was checked in (ISO-8601, UTC)")
    camera: str
    name: str | None = Field(description="Who; null for an unknown person")
    similarity: float
    mask: str | None = Field(description="masked, unmasked or mixed over the track's frames")
    frames: int = Field(description="Frames the person was tracked over")
    first_seen: str


class CheckInsResponse(BaseModel):
    checkins: list[CheckIn]


class EnrollResponse(BaseModel):
    name: str
    images: int = Field(description="Photos enrolled")
    created: bool = Field(description="Whether the person is new (false: photos added to an existing person)")


class RemovedResponse(BaseModel):
    removed: str = Field(description="The name of the person deleted with all their data")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error codes a route can answer, each with the ``{"error": ...}`` body."""
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in codes}


_ERRORS = {
    400: "The request cannot be served (e.g. a photo without a face, a roster name not enrolled)",
    401: "No API key sent",
    403: "Wrong, revoked or expired API key, a key without the route's scope, or no keys configured",
    404: "No such enrolled subject or thumbnail",
    409: "The face already matches another enrolled person (the message names them); send force=true if they are two people",
    413: "An upload (or the whole request) is larger than allowed",
    422: "An upload is not a usable image, or a form field is missing or invalid",
    429: "Too many calls from this key or address (or too many failed key attempts); see Retry-After",
}


class KeyInfo(BaseModel):
    """An API key's record, never the key or its hash."""

    name: str
    scopes: list[str]
    state: str = Field(description="active, revoked or expired")
    created: str | None = None
    expires: str | None = None
    revoked: str | None = None
    where: str = Field(description="file, gallery (database), environment or given")


class KeysResponse(BaseModel):
    keys: list[KeyInfo]


class AuditLine(BaseModel):
    time: str
    actor: str | None = None
    client: str | None = None
    action: str
    route: str | None = None
    status: int | None = None
    names: list[str] = []


class AuditResponse(BaseModel):
    lines: list[AuditLine]
