"""What every training loop of the project shares about its run folder (the loops themselves differ: epochs over
a DataLoader, steps over cached shards, a GAN's critic/generator turns):

* ``config.json`` and ``summary.json``, written atomically (:func:`save_run_json`);
* ``log.jsonl``, one JSON record per logged step, flushed as written, and -- on a resumed run -- cut back to the
  records up to the step the run resumes from, so a record is never logged twice (:class:`JsonLog`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from occluface.io import write_json


def save_run_json(path: str | Path, data: Any) -> Path:
    """``config.json`` / ``summary.json`` of a run, atomically (a crash never leaves half of one)."""
    return write_json(path, data)


class JsonLog:
    """Append-only JSON-lines log, flushed after every record so a crash loses nothing already logged.

    ``resume_step``: the step a resumed run starts from (records with ``key`` above it are dropped); ``None``
    starts a fresh log. ``enabled=False`` (non-main DDP ranks) writes nothing."""

    def __init__(self, path: str | Path, *, enabled: bool = True, resume_step: int | None = None, key: str = "step"):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        kept: list[str] = []
        if resume_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get(key, 0) <= resume_step:
                        kept.append(line)
                except (json.JSONDecodeError, AttributeError):
                    continue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
