"""What a server is started with (``occluface serve`` builds one from its options) and where the page lives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from occluface.api.keys import KeyStore
from occluface.api.limits import Rate
from occluface.recognition.service import DEFAULT_MODEL

#: The web page (index.html, app.js), served at ``/`` and ``/static``.
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ApiSettings:
    #: a gallery file, a ``postgresql://`` URL, or None for the default file (occluface.gallery.open_gallery)
    gallery: str | Path | None = None
    model: str = DEFAULT_MODEL
    detector: str | None = None  # the service's default (occluface.faces.detect.DEFAULT_DETECTOR)
    keys: KeyStore = field(default_factory=KeyStore)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 20
    #: server processes on this machine (``occluface serve --workers``); they share its cores
    workers: int = 1
    #: threads running model work in each process; 0 = one per core this process gets
    model_threads: int = 0
    #: load the models and build the search index when the server starts (``occluface serve`` does)
    warm_up: bool = False
    #: where ``occluface watch --preview-dir`` keeps each camera's annotated frame (None: no previews)
    preview_dir: Path | None = None
    #: identify-scope routes without a key, for a kiosk on this machine only (``serve --kiosk``, 127.0.0.1)
    kiosk: bool = False
    #: rate limits (calls a second, burst): identify calls per key and per client address, failed key
    #: attempts per client address (``serve --rate-limit``; 0 turns them off)
    key_rate: Rate = Rate(20.0, 40.0)
    client_rate: Rate = Rate(40.0, 80.0)
    failed_key_rate: Rate = Rate(0.2, 10.0)
    #: the retention rule the server applies itself (``serve --keep-days``): audit lines and check-ins older than
    #: this many days are purged at start-up and every hour; None: kept until ``occluface audit purge``
    keep_days: float | None = None

    def with_rate_limit(self, per_key: float) -> "ApiSettings":
        """The limits scaled from one figure: ``per_key`` identify calls a second per key (burst twice that),
        twice as many per client address; 0 turns every limit off."""
        from dataclasses import replace

        if per_key <= 0:
            off = Rate(0.0, 0.0)
            return replace(self, key_rate=off, client_rate=off, failed_key_rate=off)
        return replace(self, key_rate=Rate(per_key, 2 * per_key), client_rate=Rate(2 * per_key, 4 * per_key))

    def cores(self) -> int:
        """CPU cores this process may use: the machine's (its CPU affinity) shared among the workers."""
        try:
            total = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            total = os.cpu_count() or 1
        return max(1, total // max(1, self.workers))

    def resolved_model_threads(self) -> int:
        return self.model_threads if self.model_threads > 0 else self.cores()

    def op_threads(self) -> int:
        """Threads one model call may use, so that all model threads together fill this process's cores."""
        return max(1, self.cores() // self.resolved_model_threads())

    @property
    def max_request_bytes(self) -> int:
        """Largest whole request accepted: one full-size file per allowed photo."""
        return self.max_upload_bytes * max(1, self.max_files)


def preview_file(folder: str | Path, camera: str) -> Path:
    """``folder/<camera>.jpg``: the camera's latest annotated frame (the name made safe for a file name)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", camera.strip()).strip("._") or "camera"
    return Path(folder) / f"{safe}.jpg"
