"""Shift attendance from check-in events: who of a roster checked in (first seen), who did not, who was seen at
more than one camera, and who checked in without being on the roster."""

from __future__ import annotations

from typing import Any


def attendance(store: Any, roster: list[str], *, since: str | None = None, until: str | None = None,
               camera: str | None = None) -> dict[str, Any]:
    """The attendance of ``roster`` from the gallery's check-ins in ``[since, until)`` (ISO-8601 UTC)."""
    events = [e for e in store.checkins(since=since, until=until, camera=camera) if e["name"] is not None]
    by_name: dict[str, list[dict]] = {}
    for e in events:
        by_name.setdefault(e["name"], []).append(e)
    rows = []
    for name in roster:
        seen = by_name.get(name, [])
        cameras = sorted({e["camera"] for e in seen})
        rows.append({"name": name, "present": bool(seen), "first_seen": seen[0]["first_seen"] if seen else None,
                     "first_camera": seen[0]["camera"] if seen else None, "checkins": len(seen), "cameras": cameras,
                     "several_cameras": len(cameras) > 1})
    on_roster = set(roster)
    return {
        "since": since, "until": until, "camera": camera, "rows": rows,
        "present": [r["name"] for r in rows if r["present"]],
        "absent": [r["name"] for r in rows if not r["present"]],
        "several_cameras": [r["name"] for r in rows if r["several_cameras"]],
        "not_on_roster": sorted(set(by_name) - on_roster),
        "unknown_events": sum(1 for e in store.checkins(since=since, until=until, camera=camera) if e["name"] is None),
    }
