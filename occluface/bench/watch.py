"""Camera check-in benchmark: the generated walk-past video (``bench.video``) through ``occluface watch``.

Enrols the video's enrolled people in a temporary gallery, plays the video in real time (frames the watcher has
no time for are dropped, as a live camera drops them), and scores the stored events against the ground truth:
each event is matched to the appearance whose visible interval holds the track's first frame.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def score_events(events: list[dict], truth: dict[str, Any]) -> dict[str, Any]:
    """Check-ins per enrolled person, strangers named as someone, unknown events, delays (stored events only)."""
    apps = truth["appearances"]
    stored = [e for e in events if not e.get("suppressed")]

    def appearance(e: dict) -> dict | None:
        t = e["first_t"]
        return next((a for a in apps if a["start"] - 0.5 <= t <= a["end"] + 0.5), None)

    per_person = {a["name"]: 0 for a in apps if a["enrolled"]}
    wrong, stranger_named, stranger_unknown, unknown_enrolled, delays = [], 0, 0, 0, []
    for e in stored:
        a = appearance(e)
        if e["name"] is None:
            if a is not None and not a["enrolled"]:
                stranger_unknown += 1
            elif a is not None:
                unknown_enrolled += 1
            continue
        if a is None or e["name"] != a["name"]:
            wrong.append({"named": e["name"], "was": a["name"] if a else None})
            if a is not None and not a["enrolled"]:
                stranger_named += 1
            continue
        per_person[e["name"]] += 1
        delays.append(e["video_t"] - a["start"])
    strangers = [a for a in apps if not a["enrolled"]]
    return {
        "enrolled": len(per_person),
        "checked_in_once": sum(1 for v in per_person.values() if v == 1),
        "checked_in_twice_or_more": sum(1 for v in per_person.values() if v > 1),
        "missed": sorted(n for n, v in per_person.items() if v == 0),
        "strangers": len(strangers),
        "strangers_checked_in": stranger_named,
        "unknown_events": sum(1 for e in stored if e["name"] is None),
        "strangers_with_one_unknown_event": stranger_unknown,
        "unknown_events_of_enrolled_people": unknown_enrolled,
        "wrong_names": wrong,
        "event_delay_s": round(float(np.median(delays)), 2) if delays else None,
        "event_delay_max_s": round(float(np.max(delays)), 2) if delays else None,
        "per_person": per_person,
    }


def run_watch_bench(*, seconds: float = 60.0, size: tuple[int, int] = (1280, 720), fps: float = 10.0,
                    model: str | None = None, detector: str | None = None, realtime: bool = True, seed: int = 0,
                    workdir: Path | None = None) -> dict[str, Any]:
    from occluface.bench.video import make_checkin_video
    from occluface.camera.source import FrameSource
    from occluface.camera.watch import WatchConfig, watch
    from occluface.gallery import open_gallery
    from occluface.recognition.service import DEFAULT_MODEL, Recognizer

    with tempfile.TemporaryDirectory(prefix="occluface-watch-") as tmp:
        root = Path(workdir or tmp)
        truth = make_checkin_video(root / "walk-past.mp4", seconds=seconds, size=size, fps=fps, seed=seed)
        rec = Recognizer(open_gallery(root / "gallery.sqlite3"), model=model or DEFAULT_MODEL, detector=detector)
        for name, photos in truth["enrol"].items():
            rec.enroll(name, photos)
        rec.identify(np.full((64, 64, 3), 128, np.uint8))  # load every model before the clock starts
        source = FrameSource(truth["path"], realtime=realtime)
        run = watch(source, rec, WatchConfig(camera="gate-1"))
        stored = rec.gallery.checkins()
        rec.gallery.close()
    score = score_events(run["events"], truth)
    return {**score, "frames_per_s": run["frames_per_s"], "processed_frames": run["processed_frames"],
            "dropped_frames": run["dropped_frames"], "video": {"seconds": seconds, "size": list(size), "fps": fps},
            "realtime": realtime, "wall_s": run["seconds"], "stored_events": len(stored),
            "model": rec.model_id, "detector": rec.detector.name, "events": run["events"]}


def write_report(result: dict[str, Any], out: str | Path, command: str = "") -> dict[str, Any]:
    from occluface.bench.reports import save_report

    r = result
    lines = [
        f"# Camera check-in: a generated {r['video']['seconds']:g} s {r['video']['size'][0]}x{r['video']['size'][1]} "
        f"walk-past video at {r['video']['fps']:g} fps",
        "",
        f"{r['enrolled']} enrolled people (every other one masked) and {r['strangers']} strangers (one masked) walk "
        f"past once each; model `{r['model']}`, detector `{r['detector']}`, "
        f"{'played in real time (frames dropped when behind)' if r['realtime'] else 'every frame processed'}.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| enrolled people checked in exactly once | {r['checked_in_once']} / {r['enrolled']} |",
        f"| enrolled people checked in more than once | {r['checked_in_twice_or_more']} |",
        f"| strangers checked in as someone | {r['strangers_checked_in']} / {r['strangers']} |",
        f"| unknown-person events (strangers: {r['strangers_with_one_unknown_event']}) | {r['unknown_events']} |",
        f"| processed frames per second | {r['frames_per_s']} ({r['processed_frames']} processed, {r['dropped_frames']} dropped) |",
        f"| delay from a face's first frame to its check-in (median / max, s) | {r['event_delay_s']} / {r['event_delay_max_s']} |",
    ]
    if r["missed"]:
        lines += ["", f"Not checked in: {', '.join(r['missed'])}."]
    if r["wrong_names"]:
        lines += ["", "Wrong names: " + "; ".join(f"{w['was']} named {w['named']}" for w in r["wrong_names"]) + "."]
    if command:
        lines += ["", f"Command: `{command}`"]
    return save_report(out, markdown=lines, data=r, markdown_name="watch.md", json_name="watch.json")


__all__ = ["run_watch_bench", "score_events", "write_report"]
