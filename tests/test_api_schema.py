"""The REST API's response models: documented on /openapi.json, and the same fields as the payloads they carry.

Nothing here loads a model: the OpenAPI document is built from the routes alone, and the payload checks use
the recognizer's result classes filled in by hand.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from fastapi.testclient import TestClient

from occluface.api import schemas
from occluface.api.app import ApiSettings, create_app


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    app = create_app(ApiSettings(gallery=tmp_path_factory.mktemp("schema") / "g.sqlite3"))
    with TestClient(app) as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/components/schemas/")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _response_schema(spec: dict, path: str, method: str, status: str) -> dict:
    response = spec["paths"][path][method]["responses"][status]
    return _resolve(spec, response["content"]["application/json"]["schema"])


def test_identify_response_is_documented(spec):
    body = _response_schema(spec, "/api/identify", "post", "200")
    assert body["title"] == "IdentifyResponse"
    assert set(body["properties"]) == {"image", "threshold", "faces"}
    face = _resolve(spec, body["properties"]["faces"]["items"])
    assert list(face["properties"]) == ["box", "detection_score", "name", "label", "similarity", "candidates", "mask"]
    image = _resolve(spec, body["properties"]["image"])
    assert set(image["properties"]) == {"name", "width", "height"}


def test_subjects_responses_are_documented(spec):
    listing = _response_schema(spec, "/api/subjects", "get", "200")
    assert listing["title"] == "SubjectsResponse"
    item = _resolve(spec, listing["properties"]["subjects"]["items"])
    assert set(item["properties"]) == {"name", "embeddings", "created"}  # never face data
    assert item["properties"]["embeddings"]["type"] == "integer"
    enrolled = _response_schema(spec, "/api/subjects", "post", "201")
    assert set(enrolled["properties"]) == {"name", "images", "created"}
    removed = _response_schema(spec, "/api/subjects/{name}", "delete", "200")
    assert set(removed["properties"]) == {"removed"}


def test_every_json_route_has_a_response_model_and_json_errors(spec):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = next(code for code in op["responses"] if code.startswith("2"))
            content = op["responses"][ok]["content"]
            if {"image/jpeg", "text/event-stream", "multipart/x-mixed-replace"} & set(content):  # images, streams
                continue
            assert "$ref" in content["application/json"]["schema"], (method, path)
            for code, response in op["responses"].items():
                if code.startswith("4"):  # every error body is {"error": "..."}, not FastAPI's {"detail": ...}
                    error = _resolve(spec, response["content"]["application/json"]["schema"])
                    assert set(error["properties"]) == {"error"}, (method, path, code)
    thumb = spec["paths"]["/api/subjects/{name}/thumbnails/{index}"]["get"]["responses"]["200"]["content"]
    assert set(thumb) == {"image/jpeg"}


def test_models_carry_recognizer_payloads_unchanged():
    from occluface.recognition.service import Match, Verification
    from occluface.rollcall.assign import FaceResult, RollCallResult

    match = Match(box=[1.04, 2.0, 30.26, 40.0], detection_score=0.98765, name=None, similarity=0.41234,
                  candidates=[("Ann", 0.41234), ("Bob", 0.2)], mask={"label": "masked", "prob": 0.9})
    for m in (match, Match([0.0, 0.0, 1.0, 1.0], 0.5, "Ann", 0.9, mask=None)):
        assert schemas.IdentifiedFace.model_validate(m.to_dict()).model_dump() == m.to_dict()
    v = Verification(same=True, similarity=0.812345, threshold=0.5, boxes=[[1.0, 2.0, 3.0, 4.0]] * 2).to_dict()
    assert schemas.VerifyResponse.model_validate(v).model_dump() == v

    image = {"name": "group.jpg", "width": 640, "height": 480}
    faces = [FaceResult(0, "Ann", 0.93, "Ann", "present", (1.0, 2.0, 3.0, 4.0)),
             FaceResult(1, None, 0.4, "Bob", "uncertain")]
    result = RollCallResult(faces, ["Ann"], [], ["Bob"], "global", 0.6, ["Ann", "Bob"])
    found = asdict(result) | {"note": "", "image": image}  # what Recognizer.rollcall and the route make of it
    nobody = {"faces": [], "present": [], "absent": ["Ann"], "unresolved": [], "method": "global", "threshold": 0.6,
              "note": "no faces found", "image": image}  # Recognizer.rollcall's answer when no face is found
    for payload in (found, nobody, found | {"extra": [1, 2]}):  # open-ended: unknown keys pass through
        dumped = schemas.RollcallResponse.model_validate(payload).model_dump(exclude_unset=True)
        assert dumped == _lists(payload) and list(dumped) == list(payload)  # same keys, same order

    checked = {"box": None, "score": 0.9, "label": "masked", "prob": 0.8, "probs": {"masked": 0.8, "unmasked": 0.2}}
    plain = {"image": image, "faces": [checked]}
    assert schemas.MaskCheckResponse.model_validate(plain).model_dump(exclude_unset=True) == plain  # no cam_png key
    with_cam = plain | {"cam_png": "aGVhdA=="}
    assert schemas.MaskCheckResponse.model_validate(with_cam).model_dump(exclude_unset=True) == with_cam


def _lists(value):
    """``value`` with tuples as lists (what JSON makes of them)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
