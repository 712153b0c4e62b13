"""Camera commands: watch a camera or video and check people in, list the check-ins, shift attendance."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import typer

from occluface.cli.common import Listing, RecognizerOptions, app, console, err_console, listing_options, recognizer_options


@app.command("watch")
@recognizer_options
def watch_command(
    recognizer: RecognizerOptions,
    source: str = typer.Argument(..., help="A video file, a webcam index (0) or an rtsp:// / http:// stream."),
    camera: str = typer.Option("camera-1", "--camera", help="This camera's name (stored with every check-in)."),
    window_hours: float = typer.Option(8.0, "--window-hours", min=0.0, help="One check-in per person per this many hours (a shift)."),
    thumbnails: bool = typer.Option(False, "--thumbnails", help="Keep a face thumbnail with each unknown-person event."),
    every_frame: bool = typer.Option(False, "--every-frame", help="Process every frame of a file instead of playing it in real time."),
    as_json: bool = typer.Option(False, "--json", help="Print each event as one JSON line."),
    preview_dir: Path = typer.Option(None, "--preview-dir", help="Keep the annotated frame in DIR/CAMERA.jpg (about twice a second) for `serve --preview-dir DIR`."),
) -> None:
    """Recognise people walking past: one check-in per person, one event per unknown person. Ctrl-C stops."""
    from occluface.camera.source import FrameSource
    from occluface.camera.watch import WatchConfig, watch

    rec = recognizer.build()
    frames = FrameSource(source, realtime=not every_frame)

    def stop(signum, _frame) -> None:  # finish the open tracks, then exit
        err_console.print(f"[yellow]{signal.Signals(signum).name}: stopping after the open tracks[/]")
        frames.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def report(event) -> None:  # called only once the event is committed
        if as_json:
            sys.stdout.write(json.dumps(event.to_dict()) + "\n")
            sys.stdout.flush()
        else:
            who = event.name or "[yellow]unknown person[/]"
            console.print(f"{event.time}  {event.camera}  {who}  similarity {event.similarity:.3f}  {event.mask}  "
                          f"{event.frames} frames")

    preview = None
    if preview_dir is not None:
        from occluface.api.settings import preview_file

        preview = str(preview_file(preview_dir, camera))
    cfg = WatchConfig(camera=camera, window_s=window_hours * 3600.0, thumbnails=thumbnails, preview=preview)
    result = watch(frames, rec, cfg, on_event=report)
    err_console.print(f"{result['processed_frames']} frames processed ({result['frames_per_s']}/s), "
                      f"{result['dropped_frames']} dropped; {sum(1 for e in result['events'] if not e['suppressed'])} events stored")


@app.command("checkins")
@listing_options
def checkins_command(
    listing: Listing,
    camera: str = typer.Option(None, "--camera", help="Only this camera's."),
) -> None:
    """The stored check-in events, oldest first."""
    from rich.table import Table

    with listing.open() as store:
        rows = store.checkins(since=listing.since, until=listing.until, camera=camera)
    keys = ["time", "camera", "name", "similarity", "mask", "frames", "first_seen"]
    if listing.emit(rows, keys):
        return
    table = Table(title=f"{len(rows)} check-in(s)")
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*[("unknown" if r[k] is None and k == "name" else str(r[k])) for k in keys])
    console.print(table)


@app.command("attendance")
@listing_options
def attendance_command(
    listing: Listing,
    roster: Path = typer.Option(..., "--roster", "-r", help="Who is expected: a text file of names or a folder per person."),
    camera: str = typer.Option(None, "--camera", help="Only this camera's check-ins."),
) -> None:
    """Shift attendance (--since/--until: the shift): who checked in (first seen), who did not, who was seen at
    several cameras."""
    from rich.table import Table

    from occluface.camera.attendance import attendance
    from occluface.rollcall.roster import read_roster

    with listing.open() as store:
        result = attendance(store, read_roster(roster), since=listing.since, until=listing.until, camera=camera)
    keys = ["name", "present", "first_seen", "first_camera", "checkins", "cameras", "several_cameras"]
    if listing.emit(result["rows"], keys, data=result):
        return
    table = Table(title=f"present {len(result['present'])}, absent {len(result['absent'])}")
    for k in ("name", "present", "first seen", "camera", "check-ins", "cameras"):
        table.add_column(k)
    for r in result["rows"]:
        table.add_row(r["name"], "yes" if r["present"] else "[red]no[/]", r["first_seen"] or "-", r["first_camera"] or "-",
                      str(r["checkins"]), ", ".join(r["cameras"]) + (" [yellow](several)[/]" if r["several_cameras"] else ""))
    console.print(table)
    if result["not_on_roster"]:
        console.print(f"checked in but not on the roster: {', '.join(result['not_on_roster'])}")
