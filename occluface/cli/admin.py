"""The audit trail: list and export it, and apply the retention rule (old audit lines and check-ins purged)."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime, timedelta, timezone

import typer

from occluface.cli.common import App, GalleryOpt, JsonOpt, console

audit_app = App(help="The audit trail: who enrolled, deleted, identified or changed keys, when, from where.",
                no_args_is_help=True)


def cli_actor() -> str:
    """How a command-line action is named in the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (a container without one)
        return "cli"


@audit_app.command("list")
def audit_list_command(
    since: str = typer.Option(None, "--since", help="From this ISO time (UTC)."),
    until: str = typer.Option(None, "--until", help="Before this ISO time (UTC)."),
    action: str = typer.Option(None, "--action", help="Only this action, e.g. 'POST /api/identify' or 'erased'."),
    name: str = typer.Option(None, "--name", help="Only lines that returned or touched this person."),
    gallery: str = GalleryOpt,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    as_json: bool = JsonOpt,
) -> None:
    """The audit lines, oldest first."""
    import csv
    import io

    from rich.table import Table

    from occluface.gallery.connect import open_gallery

    with open_gallery(gallery) as store:
        rows = store.audit_entries(since=since, until=until, action=action, name=name)
    keys = ["time", "actor", "client", "action", "status", "names"]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    if as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([r | {"names": " ".join(r["names"])} for r in rows])
        sys.stdout.write(buf.getvalue())
        return
    table = Table(title=f"{len(rows)} audit line(s)")
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(r["time"], r["actor"] or "-", r["client"] or "-", r["action"], str(r["status"] or "-"),
                      ", ".join(r["names"]))
    console.print(table)


@audit_app.command("purge")
def audit_purge_command(
    keep_days: float = typer.Option(..., "--keep-days", min=0.0, help="Keep this many days of audit lines and check-ins."),
    gallery: str = GalleryOpt,
) -> None:
    """Apply the retention rule: delete audit lines and check-in events older than --keep-days."""
    from occluface.gallery.connect import open_gallery

    cut = (datetime.now(timezone.utc) - timedelta(days=keep_days)).isoformat(timespec="milliseconds")
    with open_gallery(gallery) as store:
        gone = store.purge(cut)
        store.audit("purge", actor=cli_actor(), names=[])
    console.print(f"purged {gone['audit']} audit line(s) and {gone['checkins']} check-in(s) older than {cut}")
