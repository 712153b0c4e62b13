"""The `occluface` command: one entry point for operators and researchers.

The commands live in modules by who uses them; importing each registers its commands on the one ``app``:

* :mod:`occluface.cli.operate` -- the operator's: enroll, identify, annotate, verify, rollcall, gallery list/remove,
  serve, align, demo, mask-check, models;
* :mod:`occluface.cli.admin` -- audit list / purge (the retention rule); apikey create / list / revoke / expire;
  gallery-key new / seal (templates encrypted at rest);
* :mod:`occluface.cli.camera` -- watch (camera check-in), checkins, attendance;
* :mod:`occluface.cli.research` -- evaluate, compare, synth, calibrate, calibrate-routed, export, synth-eval;
* :mod:`occluface.cli.training` -- train, finetune, train-maskcls, calibrate-maskcls, train-masksynth;
* :mod:`occluface.cli.bench` -- the ``occluface bench`` group and its accuracy and speed benchmarks;
* :mod:`occluface.cli.bench_service` -- the service benchmarks: bench fuzz, load, sync, watch;
* :mod:`occluface.cli.common` -- what they share: the app, the consoles, ``fail``, option parsing, the shared
  options, the data-path defaults (``$OCCLUFACE_DATA``, see :mod:`occluface.settings`) and ``show_report``.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

import sys

from occluface.cli import admin, bench, bench_service, camera, operate, research, training  # noqa: F401  (importing registers the commands)
from occluface.cli.common import app, err_console
from occluface.errors import OccluFaceError

app.add_typer(bench.bench_app, name="bench")
app.add_typer(operate.gallery_app, name="gallery")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(admin.gallery_key_app, name="gallery-key")
app.add_typer(admin.apikey_app, name="apikey")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry: turn occluface errors into one line and exit status 2."""
    try:
        app()
    except OccluFaceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
