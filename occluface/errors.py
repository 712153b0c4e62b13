"""The one error hierarchy: everything a user can be told derives from :class:`OccluFaceError`, and each names
the file, setting or subject at fault and what is wrong with it. The CLI prints them as one line (exit 2), the
API turns them into ``{"error": ...}`` with a 4xx status (``ImageError`` 422, ``UnknownSubjectError`` 404,
the rest 400); anything else is a bug (500, never with a traceback to the client).

Narrower errors of one module (``MetricsError``, ``LogError``, ``DlibFormatError``) derive from these."""

from __future__ import annotations

from pathlib import Path


class OccluFaceError(Exception):
    """Base class; the CLI prints these as one clear line instead of a traceback."""


class ImageError(OccluFaceError):
    """An input image could not be used (missing, not an image, corrupt, too large...)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetError(OccluFaceError):
    """A dataset folder does not have the layout or content a command needs."""


class CheckpointError(OccluFaceError):
    """A checkpoint file is missing, truncated or was written by an incompatible model."""


class NoFaceError(OccluFaceError):
    """An image that must show a face (enrolment, verification, a face-anchored occlusion) has none found."""


class GalleryError(OccluFaceError):
    """The gallery file or an operation on it is unusable (not a gallery, newer schema, closed store...)."""


class UnknownSubjectError(GalleryError):
    """A subject name that is not enrolled was asked for strictly."""

    def __init__(self, name: str, where: str = ""):
        self.name = name
        super().__init__(f"{where + ': ' if where else ''}no enrolled subject named {name!r}")


class DuplicateSubjectError(GalleryError):
    """``add_subject`` was asked to create a subject that already exists."""


class DuplicateIdentityError(GalleryError):
    """An enrolment's face already matches another enrolled person above the identify threshold (``matched``)."""

    def __init__(self, message: str, matched: str, similarity: float):
        super().__init__(message)
        self.matched, self.similarity = matched, similarity


class EmbeddingError(GalleryError):
    """Embeddings offered for enrolment or search are malformed (shape, dtype, NaN/inf, zero, dimension)."""
