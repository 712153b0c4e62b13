"""Camera check-in: faces tracked across frames, each track's identity voted over its frames, one event per visit.

Per processed frame: detect (the recognizer's detector) -> track (ByteTrack, from the ``trackers`` package) ->
for every track not yet decided, its face goes through the same path as a photo (``Recognizer.identify_faces``:
one chip, the mask state once, the matcher, the gallery search, the calibrated threshold), all faces of the frame
in one batch. Each frame's answer is a vote weighted by its quality (detection score x face size, so a small,
blurred face counts less); masked and bare frames both vote.

A track is **decided** as soon as ``decide_votes`` frames have voted and one name holds ``agreement`` of the
weight (a check-in for that person); a track that ends (unseen for ``lost_after_s``) undecided becomes a check-in
if it still meets a softer rule, else one **unknown person** event (tracks shorter than ``min_frames`` are
noise and give nothing). A person checked in at this camera within ``window_s`` is not checked in again.

Every event is committed to the gallery database before it is reported, so a killed watcher loses nothing it
had reported.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np

from occluface.camera.source import Frame


@dataclass
class WatchConfig:
    camera: str = "camera-1"
    window_s: float = 8 * 3600.0  # one check-in per person per window (a shift)
    decide_votes: int = 4
    agreement: float = 0.6
    min_frames: int = 3
    lost_after_s: float = 1.5
    thumbnails: bool = False  # keep a face thumbnail with unknown-person events (off: no face images stored)
    min_face: int = 40  # faces smaller than this (pixels, box height) are tracked but do not vote
    preview: str | None = None  # write the annotated frame here (a JPEG, replaced about twice a second)
    preview_every_s: float = 0.5


@dataclass
class Track:
    id: int
    first_t: float
    last_t: float
    frames: int = 0
    votes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unknown: float = 0.0
    voted: int = 0
    best_similarity: dict[str, float] = field(default_factory=dict)
    masked: int = 0
    bare: int = 0
    thumb: tuple[float, bytes] | None = None
    decided: bool = False
    name: str | None = None  # who it was decided to be

    def leader(self) -> tuple[str | None, float]:
        """The name with most vote weight and its share of all weight (unknown frames included)."""
        total = sum(self.votes.values()) + self.unknown
        if not self.votes or total <= 0:
            return None, 0.0
        name = max(self.votes, key=self.votes.get)
        return name, self.votes[name] / total

    def mask_label(self) -> str:
        if self.masked and self.bare:
            return "mixed"
        return "masked" if self.masked else "unmasked"


@dataclass
class Event:
    time: str
    camera: str
    name: str | None
    similarity: float
    mask: str
    frames: int
    first_seen: str
    track: int
    video_t: float  # when it was decided, in source time
    first_t: float  # the track's first frame, in source time
    id: int | None = None
    suppressed: bool = False  # a repeat within the window: not stored

    @property
    def delay_s(self) -> float:
        return self.video_t - self.first_t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delay_s": round(self.delay_s, 3)}


def _jpeg(image: np.ndarray, box) -> bytes:
    from PIL import Image

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    crop = image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
    buf = io.BytesIO()
    im = Image.fromarray(crop)
    im.thumbnail((96, 96))
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class Watcher:
    """Turns frames into check-in events (see the module docstring). ``on_event`` sees each stored event."""

    def __init__(self, recognizer: Any, config: WatchConfig | None = None, *, frame_rate: float = 10.0,
                 start: datetime | None = None, on_event: Callable[[Event], None] | None = None):
        from trackers import ByteTrackTracker

        self.rec = recognizer
        self.store = recognizer.gallery
        self.cfg = config or WatchConfig()
        self.start = start or datetime.now(timezone.utc)
        self.on_event = on_event
        self.tracker = ByteTrackTracker(frame_rate=frame_rate, lost_track_buffer=int(max(1, self.cfg.lost_after_s * frame_rate)),
                                        track_activation_threshold=0.5, minimum_consecutive_frames=1)
        self.tracks: dict[int, Track] = {}
        self.events: list[Event] = []
        self.frames = 0
        self.threshold = float(recognizer.thresholds.identify)
        self._last_preview = float("-inf")

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> list[Event]:
        import supervision as sv

        self.frames += 1
        faces = self.rec.detect(frame.image)
        if faces:
            dets = sv.Detections(xyxy=np.array([f.box for f in faces], float),
                                 confidence=np.array([f.score for f in faces], float), class_id=np.zeros(len(faces), int))
        else:
            dets = sv.Detections.empty()
        tracked = self.tracker.update(dets)
        ids = tracked.tracker_id if len(tracked) else np.zeros(0, int)
        voters, voter_tracks = [], []
        for face, tid in zip(faces, ids):  # the tracker keeps the detections' order
            if tid < 0:
                continue
            track = self.tracks.get(int(tid))
            if track is None:
                track = self.tracks[int(tid)] = Track(int(tid), frame.t, frame.t)
            track.last_t = frame.t
            track.frames += 1
            if not track.decided and face.box[3] - face.box[1] >= self.cfg.min_face:
                voters.append(face)
                voter_tracks.append(track)
        out: list[Event] = []
        if voters:
            for face, track, match in zip(voters, voter_tracks, self.rec.identify_faces(frame.image, voters, k=1)):
                out += self._vote(frame, face, track, match)
        if self.cfg.preview and frame.t - self._last_preview >= self.cfg.preview_every_s:
            self._last_preview = frame.t
            self._write_preview(frame, [(f, self.tracks.get(int(t))) for f, t in zip(faces, ids) if t >= 0])
        out += self._close_lost(frame.t)
        return out

    def _write_preview(self, frame: Frame, tracked: list) -> None:
        """The frame with each tracked face's box and who it is so far (green: checked in), for the page's preview."""
        from occluface.io import write_bytes
        from occluface.recognition.service import Match, annotate

        marks = []
        for face, track in tracked:
            if track is None:
                continue
            name = track.name if track.decided else None
            sim = track.best_similarity.get(name, 0.0) if name else max(track.best_similarity.values(), default=0.0)
            marks.append(Match(box=[float(v) for v in face.box], detection_score=float(face.score), name=name,
                               similarity=float(sim)))
        buf = io.BytesIO()
        from PIL import Image

        Image.fromarray(annotate(frame.image, marks)).save(buf, format="JPEG", quality=80)
        write_bytes(self.cfg.preview, buf.getvalue(), permissions=0o600)  # faces: owner-only

    def _vote(self, frame: Frame, face: Any, track: Track, match: Any) -> list[Event]:
        height = float(face.box[3] - face.box[1])
        weight = float(face.score) * min(1.0, height / 112.0)
        track.voted += 1
        if match.mask and match.mask.get("label") == "masked":
            track.masked += 1
        else:
            track.bare += 1
        if match.name is not None:
            track.votes[match.name] += weight
            track.best_similarity[match.name] = max(track.best_similarity.get(match.name, 0.0), match.similarity)
        else:
            track.unknown += weight
        if self.cfg.thumbnails and (track.thumb is None or weight > track.thumb[0]):
            track.thumb = (weight, _jpeg(frame.image, face.box))
        name, share = track.leader()
        if name is not None and track.voted >= self.cfg.decide_votes and share >= self.cfg.agreement:
            return [self._emit(track, name, frame.t)]
        return []

    def _close_lost(self, now: float) -> list[Event]:
        out = []
        for tid in [t for t, tr in self.tracks.items() if now - tr.last_t > self.cfg.lost_after_s]:
            out += self._finish(self.tracks.pop(tid), now)
        return out

    def _finish(self, track: Track, now: float) -> list[Event]:
        if track.decided or track.frames < self.cfg.min_frames or track.voted == 0:
            return []
        name, share = track.leader()
        if name is not None and track.voted >= 2 and share >= 0.5:
            return [self._emit(track, name, now)]
        return [self._emit(track, None, now)]

    def flush(self, now: float | None = None) -> list[Event]:
        """Decide every open track (end of the video, Ctrl-C, SIGTERM)."""
        t = max((tr.last_t for tr in self.tracks.values()), default=0.0) if now is None else now
        out = []
        for tid in list(self.tracks):
            out += self._finish(self.tracks.pop(tid), t)
        return out

    # ------------------------------------------------------------------ events
    def _wall(self, t: float) -> str:
        return (self.start + timedelta(seconds=t)).isoformat(timespec="milliseconds")

    def _emit(self, track: Track, name: str | None, t: float) -> Event:
        track.decided, track.name = True, name
        sim = track.best_similarity.get(name, 0.0) if name else max(track.best_similarity.values(), default=0.0)
        event = Event(time=self._wall(t), camera=self.cfg.camera, name=name, similarity=round(float(sim), 4),
                      mask=track.mask_label(), frames=track.frames, first_seen=self._wall(track.first_t),
                      track=track.id, video_t=round(t, 3), first_t=round(track.first_t, 3))
        if name is not None:
            since = self._wall(t - self.cfg.window_s)
            if self.store.checkins(since=since, camera=self.cfg.camera, name=name):
                event.suppressed = True
                self.events.append(event)
                return event
        thumb = track.thumb[1] if (self.cfg.thumbnails and name is None and track.thumb) else None
        event.id = self.store.add_checkin(time=event.time, camera=event.camera, name=name, similarity=event.similarity,
                                          mask=event.mask, frames=event.frames, first_seen=event.first_seen,
                                          thumbnail=thumb)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event


def watch(source: Any, recognizer: Any, config: WatchConfig | None = None, *,
          on_event: Callable[[Event], None] | None = None, start: datetime | None = None) -> dict[str, Any]:
    """Run a :class:`Watcher` over a :class:`occluface.camera.source.FrameSource` until it ends or is stopped;
    returns the events and the processing figures."""
    import time

    watcher = None
    t0 = time.monotonic()
    last_t = 0.0
    try:
        for frame in source.frames():
            if watcher is None:
                watcher = Watcher(recognizer, config, frame_rate=source.fps or 10.0, start=start, on_event=on_event)
            watcher.process(frame)
            last_t = frame.t
    finally:
        if watcher is not None:
            watcher.flush(last_t)
    elapsed = time.monotonic() - t0
    events = watcher.events if watcher else []
    return {"events": [e.to_dict() for e in events], "processed_frames": watcher.frames if watcher else 0,
            "dropped_frames": source.dropped, "seconds": round(elapsed, 2),
            "frames_per_s": round((watcher.frames if watcher else 0) / elapsed, 2) if elapsed > 0 else 0.0}


__all__ = ["Event", "Track", "WatchConfig", "Watcher", "watch"]
