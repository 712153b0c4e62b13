"""The recognition layer's matchers: how a detected face becomes a vector, which path it takes, and the
threshold that decides a name. Below the service (``occluface.recognition.service``), above storage
(``occluface.gallery``); it imports neither, nor anything of ``occluface.bench`` (the lab sits above).

Every model the service can run is a matcher built by name (:func:`create_matcher`), like backbones and
detectors: the registered ones below, any backbone of ``occluface.models`` (one network, one path:
:class:`occluface.recognition.network.NetworkMatcher`), or a training checkpoint (``.pt`` path).

A matcher has ``model_id`` and ``version`` (stored with every enrolment), ``thresholds``, ``score_scale``
(search cosine -> the thresholds' scale), ``embedding_size``, and:

* ``enrol_vectors(image, faces)`` -- what the gallery stores;
* ``probe(image, faces, masks=True)`` -- (probe vectors, mask states), one chip and one mask call per face;
* ``probe_vectors(image, faces, masked=None)`` -- probe vectors on given paths (or the matcher's own call);
* ``rollcall_space(gallery_vectors)`` / ``rollcall_vectors(image, faces)`` -- the one embedding space
  roll-call's confidence models are fitted and applied in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from occluface.errors import OccluFaceError

__all__ = ["create_matcher", "list_matchers", "is_matcher", "DEFAULT_MATCHER"]

#: What the CLI, the REST API and the demo recognise with: the SFace matcher that erases the lower face of
#: masked faces (``occluface.recognition.sface``), chosen by a rule written before its held-out score
#: (docs/results/openset-heldout): held-out LFW clean rank-1 99.4 % (dlib 95.0), masked 95.7-97.0 % on mask
#: styles no tuning saw, 0.02 % of masked probes named wrong with a 1,000-person gallery. The earlier default,
#: ``routed`` (``occluface.recognition.routed``), stays available as a reference.
DEFAULT_MATCHER = "sface-erase"


def _sface(**kw: Any):
    from occluface.recognition.sface import SFaceMatcher

    return SFaceMatcher(erase=False, **kw)


def _sface_erase(**kw: Any):
    from occluface.recognition.sface import SFaceMatcher

    return SFaceMatcher(erase=True, **kw)


def _routed(**kw: Any):
    from occluface.recognition.routed import RoutedMatcher

    return RoutedMatcher(**kw)


_MATCHERS: dict[str, tuple[Callable[..., Any], str]] = {
    "sface-erase": (_sface_erase, "SFace; masked faces compared with the lower face erased on probe and enrolment alike"),
    "sface": (_sface, "SFace on the detector-aligned chip; one threshold for bare and masked faces"),
    "routed": (_routed, "dlib's network for bare faces, occluface_resnet against a masked template for masked ones"),
}


def list_matchers() -> dict[str, str]:
    """The registered matchers (the default first); any backbone name or checkpoint path works too."""
    return {k: d for k, (_, d) in _MATCHERS.items()}


def is_matcher(name: str) -> bool:
    """Whether ``name`` is one of the registered (multi-part) matchers rather than a backbone or checkpoint."""
    return str(name).strip().lower() in _MATCHERS


def create_matcher(name: str | Path, **kw: Any):
    """The matcher ``name``: a registered matcher, a backbone of the model registry, or a ``.pt`` checkpoint.

    ``thresholds=`` overrides the calibrated thresholds of backbones and checkpoints."""
    key = str(name).strip().lower()
    if key in _MATCHERS:
        return _MATCHERS[key][0](**kw)
    from occluface.recognition.network import NetworkMatcher

    try:
        return NetworkMatcher(str(name), **kw)
    except OccluFaceError as exc:
        if Path(str(name)).suffix == ".pt":
            raise
        raise OccluFaceError(f"{exc}; or one of the matchers: {', '.join(_MATCHERS)}") from None
