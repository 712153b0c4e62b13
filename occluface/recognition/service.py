"""The recognition service: photo in, faces found, each matched against the enrolled gallery.

Every interface (CLI, REST API, web page, demo) goes through :class:`Recognizer`, so they all detect,
align, embed and threshold the same way. The pieces it wires together:

decode (``occluface.data.images``) -> detect (``occluface.faces.detect``) -> the matcher
(``occluface.recognition.matchers``: one aligned chip per face, its mask state once, the embedding path that state picks,
the calibrated thresholds of ``occluface.recognition.thresholds``) -> gallery search (``occluface.gallery``) ->
result; optionally the roll-call assignment (``occluface.rollcall``). Nothing here imports ``occluface.bench``:
benchmarks sit above the product.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.errors import ImageError, NoFaceError, OccluFaceError

ImageSource = str | Path | bytes | np.ndarray

from occluface.recognition.matchers import DEFAULT_MATCHER

#: The matcher the CLI, the REST API and the demo use (see :data:`occluface.recognition.matchers.DEFAULT_MATCHER`).
DEFAULT_MODEL = DEFAULT_MATCHER


@dataclass
class Match:
    """One detected face and who it is: ``name`` is None when no enrolled subject is similar enough."""

    box: list[float]
    detection_score: float
    name: str | None
    similarity: float
    candidates: list[tuple[str, float]] = field(default_factory=list)
    landmarks: list[list[float]] = field(default_factory=list)
    mask: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.name or "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(v, 1) for v in self.box],
            "detection_score": round(self.detection_score, 4),
            "name": self.name,
            "label": self.label,
            "similarity": round(self.similarity, 4),
            "candidates": [{"name": n, "similarity": round(s, 4)} for n, s in self.candidates],
            "mask": self.mask,
        }


@dataclass
class Verification:
    same: bool
    similarity: float
    threshold: float
    boxes: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "same": self.same,
            "similarity": round(self.similarity, 4),
            "threshold": round(self.threshold, 4),
            "boxes": [[round(v, 1) for v in b] for b in self.boxes],
        }


def read_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Any accepted image source as HxWx3 uint8 RGB, with the file named in every error."""
    if isinstance(source, np.ndarray):
        from occluface.faces.detect import as_rgb

        return as_rgb(source)
    from occluface.data.images import load_rgb

    return load_rgb(source, name=name)


def _source_name(source: ImageSource, index: int) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"image #{index + 1}"


class Recognizer:
    """Detect, embed and match faces against one gallery with one matcher.

    ``model`` is anything :func:`occluface.recognition.matchers.create_matcher` builds: a registered matcher
    (``"sface-erase"``, the default :data:`DEFAULT_MODEL`; ``"sface"``; ``"routed"``), a backbone of the model
    registry, or a training checkpoint path. Thresholds come from the matcher's calibration unless given.
    """

    def __init__(
        self,
        gallery: Any,
        *,
        model: str = DEFAULT_MODEL,
        detector: str | None = None,
        thresholds: Any = None,
        check_masks: bool = True,
    ):
        from occluface.faces.detect import DEFAULT_DETECTOR, create_detector
        from occluface.recognition.matchers import create_matcher

        self.gallery = gallery
        self.check_masks = check_masks
        self.detector = create_detector(detector or DEFAULT_DETECTOR)
        self.matcher = create_matcher(model)
        self.model_id, self.model_version = self.matcher.model_id, self.matcher.version
        self.score_scale = self.matcher.score_scale  # search cosines -> path scores (the thresholds' scale)
        self.thresholds = thresholds or self.matcher.thresholds

    # ------------------------------------------------------------------ faces
    def detect(self, image: np.ndarray) -> list:
        return self.detector.detect(image)

    def embed_faces(self, image: np.ndarray, faces: Sequence, states: Sequence | None = None) -> np.ndarray:
        """N x D probe vectors of the given detected faces; ``states`` (mask states) pick the paths of matchers
        that have several, else the matcher's own mask call does."""
        from occluface.recognition.vectors import is_masked

        masked = None if states is None else [is_masked(s) for s in states]
        return self.matcher.probe_vectors(image, faces, masked)

    def enrol_vectors(self, image: np.ndarray, faces: Sequence) -> np.ndarray:
        """What the gallery stores for enrolment faces (the routed and erase matchers' differ from their probes')."""
        return self.matcher.enrol_vectors(image, faces)

    def main_face(self, image: np.ndarray, name: str):
        from occluface.faces.detect import pick_main_face

        face = pick_main_face(self.detect(image), image.shape)
        if face is None:
            raise NoFaceError(f"{name}: no face found")
        return face

    # --------------------------------------------------------------- enrolment
    def enroll(self, name: str, sources: Sequence[ImageSource], *, thumbnails: bool = True,
               names: Sequence[str] | None = None, force: bool = False,
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Enrol ``name`` from one face per image: every image is checked before anything is stored.

        A bad or faceless image raises an error naming it (``names``: labels of decoded arrays, e.g. upload
        file names), and the gallery is left exactly as it was. A face that already matches *another* enrolled
        person above the identify threshold is refused (``DuplicateIdentityError`` naming them) unless ``force``:
        one face under two names would make every later answer about it ambiguous.
        """
        if not sources:
            raise OccluFaceError(f"enrolment of {name!r} needs at least one image")
        if names is not None and len(names) != len(sources):
            raise OccluFaceError(f"enrolment of {name!r}: {len(names)} names for {len(sources)} images")
        embeddings, labels, thumbs = [], [], []
        for i, source in enumerate(sources):
            label = names[i] if names is not None else _source_name(source, i)
            image = read_image(source, label)
            face = self.main_face(image, label)
            embeddings.append(self.enrol_vectors(image, [face])[0])
            labels.append(Path(label).name)
            if thumbnails:
                thumbs.append(_thumbnail(image, face.box))
            if not force:
                self._refuse_duplicate(name, image, face, label)
        result = self.gallery.enroll(
            name,
            np.stack(embeddings),
            model_id=self.model_id,
            model_version=self.model_version,
            sources=labels,
            thumbnails=thumbs if thumbnails else None,
            meta=meta,
        )
        return {"name": name, "images": len(embeddings), "created": result.subject_created}

    def _refuse_duplicate(self, name: str, image: np.ndarray, face: Any, label: str) -> None:
        """Raise ``DuplicateIdentityError`` if ``face`` is already someone else, at the identify threshold."""
        from occluface.errors import DuplicateIdentityError
        from occluface.gallery.store import validate_name

        if self.model_id not in self.gallery.models():
            return
        own = validate_name(name)
        for match in self.identify_faces(image, [face], k=2):
            for other, similarity in match.candidates:
                if other != own and similarity >= self.thresholds.identify:
                    raise DuplicateIdentityError(
                        f"{label}: this face already matches {other!r} (similarity {similarity:.3f}, threshold "
                        f"{self.thresholds.identify:.3f}); not enrolled as {own!r}. If they really are two people, "
                        "enrol again with --force (API: force=true)", other, similarity)

    def _check_versions(self, stored: dict) -> None:
        """Refuse to compare probes with enrolments of another release of this model's weights (their vectors
        live in another space: the answers would look normal and be wrong)."""
        versions = stored.get(self.model_id, {}).get("versions", [])
        if versions and self.model_version not in versions:
            raise OccluFaceError(
                f"the gallery's {self.model_id} enrolments were made with version {', '.join(versions)}, not "
                f"{self.model_version} (the model's weights changed); their vectors cannot be compared: remove "
                f"them and enrol the people again, or use a new gallery"
            )

    # ---------------------------------------------------------- identification
    def identify(self, source: ImageSource, *, k: int = 3, image: np.ndarray | None = None) -> list[Match]:
        """Every face in the photo with its best ``k`` subjects; below the threshold it is "unknown"."""
        image = read_image(source) if image is None else image
        return self.identify_faces(image, self.detect(image), k=k)

    def identify_faces(self, image: np.ndarray, faces: Sequence, *, k: int = 3) -> list[Match]:
        """:meth:`identify` for faces already found (e.g. tracked in a video): one batch through the matcher."""
        from occluface.gallery.search import search_gallery_batch

        if not faces:
            return []
        stored = self.gallery.models()
        if stored and self.model_id not in stored:  # enrolled with another model: say so, never answer "unknown"
            raise OccluFaceError(
                f"the gallery holds enrolments for {', '.join(sorted(stored))} only, not for {self.model_id}; "
                f"pass --model {sorted(stored)[0]} or enrol the people again with {self.model_id}"
            )
        self._check_versions(stored)
        emb, states = self.matcher.probe(image, faces, masks=self.check_masks)  # the mask state comes with the vectors
        if self.model_id in stored:
            results = search_gallery_batch(self.gallery, self.model_id, emb, k)
        else:
            results = [[] for _ in faces]
        threshold = self.thresholds.identify
        matches = []
        for face, cands, state in zip(faces, results, states):
            cands = [(n, float(v) * self.score_scale) for n, v in cands]
            best_name, best = (cands[0] if cands else (None, 0.0))
            matches.append(
                Match(
                    box=[float(v) for v in face.box],
                    detection_score=face.score,
                    name=best_name if cands and best >= threshold else None,
                    similarity=float(best),
                    candidates=[(n, float(s)) for n, s in cands],
                    landmarks=face.landmarks.tolist(),
                    mask=state,
                )
            )
        return matches

    def verify(self, a: ImageSource, b: ImageSource, *, names: Sequence[str] | None = None) -> Verification:
        """Same person or not, from the main face of each photo, with the threshold used.

        ``names`` label decoded arrays (e.g. upload file names) in errors such as "no face found".
        """
        embs, boxes = [], []
        for i, source in enumerate((a, b)):
            label = names[i] if names else _source_name(source, i)
            image = read_image(source, label)
            face = self.main_face(image, label)
            # routed: the first photo is the reference (enrolment vector), the second the probe
            embs.append((self.enrol_vectors(image, [face]) if i == 0 else self.embed_faces(image, [face]))[0])
            boxes.append([float(v) for v in face.box])
        embs[0] = embs[0] / np.linalg.norm(embs[0])  # as the store keeps it: the threshold's scale
        sim = float(np.dot(embs[0], embs[1])) * self.score_scale
        thr = self.thresholds.verify
        return Verification(same=sim >= thr, similarity=sim, threshold=thr, boxes=boxes)

    # ---------------------------------------------------------------- roll-call
    def rollcall(
        self,
        source: ImageSource,
        roster: Sequence[str] | None = None,
        *,
        method: str = "global",
        confidence: str = "softmax",
        threshold: float = 0.6,
    ) -> dict[str, Any]:
        """Who of the roster is in the group photo: calibrated confidences, then one face per identity."""
        from occluface.rollcall.assign import rollcall
        from occluface.rollcall.confidence import make_confidence

        self._check_versions(self.gallery.models())
        matrix, names = self.gallery.embeddings(self.model_id)
        # confidence models are fitted on enrolment vectors: the matcher's one space for enrolments and probes
        matrix = self.matcher.rollcall_space(matrix) if len(names) else matrix
        if not names:
            raise OccluFaceError("the gallery has no enrolled subjects for this model; enrol the roster first")
        roster_names = sorted(set(names)) if roster is None else list(dict.fromkeys(roster))
        missing = [r for r in roster_names if r not in set(names)]
        if missing:
            raise OccluFaceError(f"roster names not enrolled in the gallery: {', '.join(missing[:10])}")
        image = read_image(source)
        faces = self.detect(image)
        if len(faces) == 0:  # nobody there: no confidences to compute
            return {"faces": [], "present": [], "absent": roster_names, "unresolved": [], "method": method,
                    "threshold": threshold, "note": "no faces found"}
        keep = [i for i, n in enumerate(names) if n in set(roster_names)]
        model = make_confidence(confidence).fit(matrix[keep], [names[i] for i in keep])
        emb = self.matcher.rollcall_vectors(image, faces)  # the space the confidence model was fitted in
        result = rollcall(emb, model, roster_names, threshold=threshold, method=method,
                          boxes=[f.box.tolist() for f in faces])
        out = result.to_dict()
        out["note"] = getattr(model, "note", "")
        return out


def _thumbnail(image: np.ndarray, box: np.ndarray, size: int = 96) -> bytes:
    """A small JPEG of the face, kept so an operator can see whom an entry belongs to."""
    from PIL import Image

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    h, w = image.shape[:2]
    crop = image[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    if crop.size == 0:
        raise ImageError("face", "empty face box")
    pil = Image.fromarray(crop)
    pil.thumbnail((size, size))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def annotate(image: np.ndarray, matches: Sequence[Match]) -> np.ndarray:
    """The photo with a box and "name similarity" drawn on each face (green known, red unknown)."""
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(pil)
    scale = max(pil.size) / 800
    width = max(2, int(round(3 * scale)))
    try:
        font = ImageFont.load_default(size=max(12, int(18 * scale)))
    except TypeError:  # older Pillow without sized default font
        font = ImageFont.load_default()
    for m in matches:
        colour = (40, 200, 60) if m.name else (230, 40, 40)
        x1, y1, x2, y2 = m.box
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = f"{m.label} {m.similarity:.2f}"
        tb = draw.textbbox((x1, y1), text, font=font)
        th = tb[3] - tb[1] + 4
        ty = y1 - th if y1 - th >= 0 else y2
        draw.rectangle([x1, ty, x1 + (tb[2] - tb[0]) + 6, ty + th], fill=colour)
        draw.text((x1 + 3, ty + 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)
