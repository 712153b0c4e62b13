"""The audit trail: list and export it, and apply the retention rule (old audit lines and check-ins purged);
the gallery key of templates encrypted at rest: make one, seal a plain gallery under it."""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from occluface.cli.common import App, GalleryOpt, Listing, console, fail, listing_options

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


gallery_key_app = App(help="Templates encrypted at rest: make a gallery key, seal an existing gallery under it.",
                      no_args_is_help=True)


@gallery_key_app.command("new")
def gallery_key_new_command(
    out: Path = typer.Option(..., "--out", help="The key file to write (owner-only; never overwritten)."),
) -> None:
    """Write a new random gallery key (AES-256) to --out; point OCCLUFACE_GALLERY_KEY_FILE at it."""
    from occluface.gallery.sealing import KEY_FILE_ENV, write_key_file

    path = write_key_file(out)
    console.print(f"wrote a new gallery key to {path} (mode 0600). Keep a copy somewhere safe: a sealed gallery "
                  f"cannot be opened without it. Use it with: export {KEY_FILE_ENV}={path.resolve()}", highlight=False)


@gallery_key_app.command("seal")
def gallery_key_seal_command(
    gallery: str = GalleryOpt,
    key_file: Path = typer.Option(None, "--key-file", help="The key file (default: $OCCLUFACE_GALLERY_KEY_FILE, "
                                  "or the key in $OCCLUFACE_GALLERY_KEY)."),
) -> None:
    """Seal a plain gallery in place: every vector and thumbnail encrypted, the plain copies scrubbed from the
    files. Stop every other process using the gallery first."""
    from occluface.gallery.connect import open_gallery
    from occluface.gallery.sealing import KEY_FILE_ENV, load_sealer

    sealer = load_sealer(key_file=key_file)
    if sealer is None:
        fail(f"no gallery key: give --key-file or set {KEY_FILE_ENV}")
    with open_gallery(gallery, key=False) as store:
        counts = store.seal(sealer)
        store.audit("seal", actor=cli_actor(), names=[])
        where = store.location
    console.print(f"{where}: sealed {counts['embeddings']} embedding(s), {counts['thumbnails']} thumbnail(s) and "
                  f"{counts['checkin_thumbnails']} check-in thumbnail(s) under {sealer.source}", highlight=False)
