"""Mask-routed matching: bare faces are matched by dlib's network, masked faces by the occlusion-tuned one
against enrolment templates that were themselves masked.

Why two paths: the fine-tuned ``occluface_resnet`` raises masked rank-1 by 15-30 points but costs 1-2.5
points on bare faces, and a gate sees mostly bare faces. The mask classifier (issue 6) already says which
faces are masked, so each probe goes to the network that is best for it and clean accuracy stays dlib's.

Why masked templates: a masked probe has no nose or mouth to compare, and an enrolment photo's lower face
still pulls its embedding. Each person's masked-path template is the normalised mean of the occlusion-tuned
embeddings of the enrolment photo bare and wearing synthetic masks of the kinds in :data:`ENROL_MASKS`.
Those kinds (a cloth mask and the mask pictures of ``mask_textures``) were chosen on *training* identities,
and are deliberately not the kinds the benchmark draws on its probes (plain, surgical, KN95), so the
benchmark does not reward matching one synthetic mask to the same synthetic mask.

Scores of the two paths are cosine similarities of two networks. :func:`routed_vectors` packs them so that
one dot product gives the right one: a probe is ``[clean embedding, 0]`` or ``[0, masked embedding]``, a
gallery entry is ``[clean embedding, masked template]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError

#: Synthetic masks drawn on an enrolment photo for the masked-path template (chosen on training identities).
ENROL_MASKS: tuple[str, ...] = ("cloth", "mask")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(norm)) or np.any(norm == 0):
        raise OccluFaceError("an embedding is zero or not finite; cannot normalise it")
    return x / norm


def masked_template(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised mean of one face's occlusion-tuned embeddings (bare + each synthetic mask): rows x dim
    arrays, one per variant, aligned row by row (row i = person i); returns rows x dim."""
    if not embeddings:
        raise OccluFaceError("a masked template needs at least one embedding")
    shapes = {np.shape(e) for e in embeddings}
    if len(shapes) != 1:
        raise OccluFaceError(f"template variants differ in shape: {sorted(shapes)}")
    return _unit(np.sum([_unit(e) for e in embeddings], axis=0))


def enrol_mask_images(image: np.ndarray, landmarks68: np.ndarray, seed: int,
                      kinds: Sequence[str] = ENROL_MASKS) -> list[np.ndarray]:
    """The enrolment photo wearing each synthetic mask of ``kinds`` (seeded, drawn on the full image)."""
    from occluface.eval.baseline import occlude

    return [occlude(image, kind, seed=int(seed) + i, landmarks=landmarks68) for i, kind in enumerate(kinds)]


def routed_vectors(masked: np.ndarray, clean_probe: np.ndarray, masked_probe: np.ndarray,
                   clean_gallery: np.ndarray, masked_gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probe vectors, gallery vectors) whose dot product is each probe's score on its own path.

    ``masked``: one bool per probe (the mask classifier's call). Probe vectors have unit norm; gallery
    vectors have norm sqrt(2), which scales every score alike (ranks and AUC are unchanged)."""
    masked = np.asarray(masked, bool).ravel()
    cp, mp = _unit(clean_probe), _unit(masked_probe)
    if not (len(masked) == len(cp) == len(mp)):
        raise OccluFaceError(f"{len(masked)} mask calls for {len(cp)} clean and {len(mp)} masked probe embeddings")
    cg, mg = _unit(clean_gallery), _unit(masked_gallery)
    if len(cg) != len(mg):
        raise OccluFaceError(f"{len(cg)} clean and {len(mg)} masked gallery entries")
    probes = np.concatenate([cp * ~masked[:, None], mp * masked[:, None]], axis=1)
    return probes.astype(np.float32), np.concatenate([cg, mg], axis=1).astype(np.float32)
