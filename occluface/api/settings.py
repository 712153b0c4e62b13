"""What a server is started with (``occluface serve`` builds one from its options) and where the page lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from occluface.api.keys import KeyStore
from occluface.recognition.service import DEFAULT_MODEL

#: The web page (index.html, app.js), served at ``/`` and ``/static``.
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ApiSettings:
    gallery: Path | None = None
    model: str = DEFAULT_MODEL
    detector: str | None = None  # the service's default (occluface.faces.detect.DEFAULT_DETECTOR)
    keys: KeyStore = field(default_factory=KeyStore)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 20

    @property
    def max_request_bytes(self) -> int:
        """Largest whole request accepted: one full-size file per allowed photo."""
        return self.max_upload_bytes * max(1, self.max_files)
