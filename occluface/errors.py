"""Errors that reach users: each names the file or setting at fault and what is wrong with it."""

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
