"""The audit trail: list and export it, and apply the retention rule (old audit lines and check-ins purged)."""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta, timezone

import typer

from occluface.cli.common import App, GalleryOpt, Listing, console, listing_options

audit_app = App(help="The audit trail: who enrolled, deleted, identified or changed keys, when, from where.",
                no_args_is_help=True)


def cli_actor() -> str:
    """How a command-line action is named in the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (a container without one)
        return "cli"


@audit_app.command("list")
@listing_options
def audit_list_command(
    listing: Listing,
    action: str = typer.Option(None, "--action", help="Only this action, e.g. 'POST /api/identify' or 'erased'."),
    name: str = typer.Option(None, "--name", help="Only lines that returned or touched this person."),
) -> None:
    """The audit lines, oldest first."""
    from rich.table import Table

    with listing.open() as store:
        rows = store.audit_entries(since=listing.since, until=listing.until, action=action, name=name)
    keys = ["time", "actor", "client", "action", "status", "names"]
    if listing.emit(rows, keys):
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
