"""The audit trail (list, export, the retention rule that purges old audit lines and check-ins), the API keys,
and the gallery key of templates encrypted at rest (make one, seal a plain gallery under it)."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from occluface.cli.common import App, GalleryOpt, JsonOpt, Listing, console, fail, listing_options, print_json

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

    with open_gallery(gallery) as store:
        gone = store.purge_older(keep_days)
        store.audit("purge", actor=cli_actor(), names=[])
    console.print(f"purged {gone['audit']} audit line(s) and {gone['checkins']} check-in(s) older than {gone['before']}")


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


# ----------------------------------------------------------------------------- API keys
apikey_app = App(help="API keys with scopes (identify, enrol, admin): create, list, revoke, expire. Only hashes are "
                 "stored: in the gallery database (default; every server on it sees a change within a second) or "
                 "in a --keys file.", no_args_is_help=True)
KeysFileOpt = typer.Option(None, "--keys", help="Keep the key in this JSON file instead of the gallery database.",
                           envvar="OCCLUFACE_KEYS")


def _keys(gallery: str | None, keys_file):
    from occluface.api.keys import open_keys

    return open_keys(gallery, keys_file, database=keys_file is None)


def _audit_key_change(keys, action: str, name: str) -> None:
    """Key changes go into the gallery's audit trail (keys-file changes too, when the gallery is there)."""
    if keys.database is not None:
        keys.database.audit(action, actor=cli_actor(), names=[], route=f"key {name}")


@apikey_app.command("create")
def apikey_create_command(
    name: str = typer.Argument(..., help="A label for the key (who or what uses it, e.g. gate-1)."),
    scope: str = typer.Option("identify", "--scope", "-s", help="Comma-separated scopes: identify (identify, verify, "
                              "roll-call, mask check, check-ins), enrol (enrol, delete own), admin (everything)."),
    expires: str = typer.Option(None, "--expires", help="When it stops working: a duration (30d, 12h) or an ISO time."),
    gallery: str = GalleryOpt,
    keys_file: Path = KeysFileOpt,
) -> None:
    """Create an API key: prints it once; only its SHA-256 is stored."""
    from occluface.api.keys import parse_expiry
    from occluface.gallery.postgres import redact

    keys = _keys(gallery, keys_file)
    key = keys.add(name, scope, parse_expiry(expires))
    _audit_key_change(keys, "key-created", name)
    where = str(keys_file) if keys_file is not None else redact(keys.database.location)
    record = keys.all()[name.strip()]
    console.print(f"API key {record.name!r} (scopes {', '.join(record.scopes)}; expires {record.expires or 'never'}; "
                  f"shown once, stored hashed in {where}):\n{key}", highlight=False)


@apikey_app.command("list")
def apikey_list_command(gallery: str = GalleryOpt, keys_file: Path = KeysFileOpt, as_json: bool = JsonOpt) -> None:
    """Every key: name, scopes, state (active, revoked, expired) and times; never the key or its hash."""
    from rich.table import Table

    rows = [k.public() for k in _keys(gallery, keys_file).all().values()]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} API key(s)")
    for col in ("name", "scopes", "state", "created", "expires", "revoked", "where"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], ",".join(r["scopes"]), r["state"], r["created"] or "-", r["expires"] or "never",
                      r["revoked"] or "-", r["where"])
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke_command(name: str = typer.Argument(..., help="The key's name."), gallery: str = GalleryOpt,
                          keys_file: Path = KeysFileOpt) -> None:
    """Revoke a key at once (its record stays, so the audit trail keeps its name)."""
    keys = _keys(gallery, keys_file)
    keys.update(name, revoked=True)
    _audit_key_change(keys, "key-revoked", name)
    console.print(f"revoked API key {name!r}")


@apikey_app.command("expire")
def apikey_expire_command(
    name: str = typer.Argument(..., help="The key's name."),
    at: str = typer.Option("0m", "--at", help="When: a duration from now (30d, 12h, 0m = now) or an ISO time; "
                           "'never' removes the expiry."),
    gallery: str = GalleryOpt,
    keys_file: Path = KeysFileOpt,
) -> None:
    """Set (or clear) a key's expiry time."""
    from occluface.api.keys import parse_expiry

    keys = _keys(gallery, keys_file)
    record = keys.update(name, expires=None if at.strip().lower() == "never" else parse_expiry(at))
    _audit_key_change(keys, "key-expiry-set", name)
    console.print(f"API key {name!r} expires {record.expires or 'never'}")
