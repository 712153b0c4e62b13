"""The recognition layer's matchers: how a detected face becomes a vector, which path it takes, and the
threshold that decides a name. Below the service (``occluface.recognition.service``), above storage
(``occluface.gallery``); it imports neither, nor anything of ``occluface.bench`` (the lab sits above).

Matchers are built by name (:func:`create_matcher`), like backbones and detectors."""

from __future__ import annotations

from typing import Any, Callable

from occluface.errors import OccluFaceError

__all__ = ["create_matcher", "list_matchers", "is_matcher"]


def _sface(**kw: Any):
    from occluface.recognition.sface import SFaceMatcher

    return SFaceMatcher(erase=False, **kw)


def _sface_erase(**kw: Any):
    from occluface.recognition.sface import SFaceMatcher

    return SFaceMatcher(erase=True, **kw)


_MATCHERS: dict[str, tuple[Callable[..., Any], str]] = {
    "sface": (_sface, "SFace on the detector-aligned chip; one threshold for bare and masked faces"),
    "sface-erase": (_sface_erase, "SFace; masked faces compared with the lower face erased on probe and enrolment alike"),
}


def list_matchers() -> dict[str, str]:
    return {k: d for k, (_, d) in _MATCHERS.items()}


def is_matcher(name: str) -> bool:
    return str(name).strip().lower() in _MATCHERS


def create_matcher(name: str, **kw: Any):
    key = str(name).strip().lower()
    if key not in _MATCHERS:
        raise OccluFaceError(f"unknown matcher {name!r}; known: {', '.join(_MATCHERS)}")
    return _MATCHERS[key][0](**kw)
