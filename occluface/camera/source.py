"""Where frames come from: a video file, a webcam index or an RTSP/HTTP stream, read with OpenCV's FFmpeg backend.

* A **file** is played at its own frame rate (``realtime=True``): when processing falls behind, the frames it
  had no time for are skipped, as a live camera would have dropped them; ``realtime=False`` hands over every
  frame (tests, offline analysis).
* A **live source** (webcam, stream) is read by a background thread that keeps only the newest frame, so a slow
  frame never queues the next ones and a stalled decoder stalls nothing else. A stream that ends or fails is
  reopened with back-off (1, 2, 4 ... 30 s) until the watcher stops.

Each frame comes with its time in seconds since the source opened (a file's: its position in the video).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occluface.errors import OccluFaceError


@dataclass
class Frame:
    index: int
    t: float  # seconds since the start (video time for files, wall time for live sources)
    image: np.ndarray  # HxWx3 uint8 RGB


def _open(spec: str | int):
    import cv2

    from occluface.runtime import quiet_opencv

    quiet_opencv()
    cap = cv2.VideoCapture(spec) if isinstance(spec, int) else cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG)
    return cap


def parse_source(source: str) -> str | int:
    """A webcam index (``"0"``), a URL (``rtsp://``, ``http://``) or a video file that must exist."""
    text = str(source).strip()
    if text.isdigit():
        return int(text)
    if "://" in text:
        return text
    path = Path(text)
    if not path.is_file():
        raise OccluFaceError(f"{path}: video file not found (give a file, a webcam index such as 0, or an rtsp:// URL)")
    return str(path)


class FrameSource:
    """Frames of one camera or video (see the module docstring); ``stop()`` ends :meth:`frames` cleanly."""

    def __init__(self, source: str, *, realtime: bool = True, reconnect: bool = True, max_backoff: float = 30.0):
        self.spec = parse_source(source)
        self.is_file = isinstance(self.spec, str) and "://" not in self.spec
        self.realtime = realtime
        self.reconnect = reconnect and not self.is_file
        self.max_backoff = max_backoff
        self.dropped = 0
        self.reopened = 0
        self._stop = threading.Event()
        self.fps = 0.0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def frames(self) -> Iterator[Frame]:
        return self._file_frames() if self.is_file else self._live_frames()

    # ------------------------------------------------------------------ files
    def _file_frames(self) -> Iterator[Frame]:
        import cv2

        cap = _open(self.spec)
        if not cap.isOpened():
            raise OccluFaceError(f"{self.spec}: OpenCV cannot open this video")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        start = time.monotonic()
        index = -1
        try:
            while not self._stop.is_set():
                if self.realtime:  # the frame a live camera would show now; skip what there was no time for
                    due = int((time.monotonic() - start) * self.fps)
                    while index + 1 < due:
                        if not cap.grab():
                            return
                        index += 1
                        self.dropped += 1
                ok, bgr = cap.read()
                if not ok:
                    return
                index += 1
                t = index / self.fps
                if self.realtime:  # not before its time
                    wait = start + t - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                yield Frame(index, t, np.ascontiguousarray(bgr[:, :, ::-1]))
        finally:
            cap.release()

    # ------------------------------------------------------------------ cameras and streams
    def _live_frames(self) -> Iterator[Frame]:
        latest: list[Frame | None] = [None]
        ready = threading.Condition()
        failure: list[str] = []

        def reader() -> None:
            backoff, index, start = 1.0, 0, time.monotonic()
            while not self._stop.is_set():
                cap = _open(self.spec)
                if cap.isOpened():
                    backoff = 1.0
                    while not self._stop.is_set():
                        ok, bgr = cap.read()
                        if not ok:
                            break
                        with ready:
                            if latest[0] is not None:
                                self.dropped += 1
                            latest[0] = Frame(index, time.monotonic() - start, np.ascontiguousarray(bgr[:, :, ::-1]))
                            index += 1
                            ready.notify()
                cap.release()
                if not self.reconnect:
                    failure.append(f"{self.spec}: the stream ended")
                    break
                self.reopened += 1
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
            with ready:
                ready.notify_all()

        thread = threading.Thread(target=reader, name="occluface-camera", daemon=True)
        thread.start()
        try:
            while not self._stop.is_set():
                with ready:
                    while latest[0] is None and not self._stop.is_set() and thread.is_alive():
                        ready.wait(0.5)
                    frame, latest[0] = latest[0], None
                if frame is None:
                    if not thread.is_alive():
                        return
                    continue
                yield frame
        finally:
            self._stop.set()
            thread.join(timeout=5)


__all__ = ["Frame", "FrameSource", "parse_source"]
