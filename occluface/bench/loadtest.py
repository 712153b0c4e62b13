"""Load test of ``occluface serve``: concurrent identify requests against a real server process on 127.0.0.1.

A gate server must keep answering while busy and must not grow its memory with every request. This starts
the server as a child process (temporary gallery, random API key, free local port), enrols two people,
then sends a bounded number of concurrent ``/api/identify`` uploads with httpx and records per-request
latency and status, the server's resident memory (``VmRSS`` from ``/proc/<pid>/status``) over the run, and
how long ``/api/health`` takes to answer while the identify requests are queued. Only 127.0.0.1 is ever
contacted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occluface.bench.reports import save_report
from occluface.settings import REPO_DATA
from occluface.errors import OccluFaceError

SAMPLES = REPO_DATA / "samples"
HOST = "127.0.0.1"


@dataclass
class LoadResult:
    """Figures of one load run (latencies in milliseconds, memory in MiB)."""

    requests: int
    concurrency: int
    seconds: float
    throughput_rps: float
    latency_ms: dict[str, float]
    errors: int
    statuses: dict[str, int]
    rss_mib: dict[str, float]
    health_ms: dict[str, float]
    health_after_ok: bool
    faces_per_request: int
    detector: str
    error_samples: list[str] = field(default_factory=list)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan"), "max": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(arr, 50)), 1), "p99": round(float(np.percentile(arr, 99)), 1),
            "mean": round(float(arr.mean()), 1), "max": round(float(arr.max()), 1)}


class ServerProcess:
    """``occluface serve`` in a child process; stopped (SIGINT, then SIGKILL) on exit."""

    def __init__(self, gallery: Path, *, key: str, detector: str = "auto", model: str = "dlib_resnet",
                 port: int | None = None, log: Path | None = None, startup_timeout: float = 180.0):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.key = key
        self.log_path = log or gallery.parent / "server.log"
        self.startup_timeout = startup_timeout
        self.cmd = [sys.executable, "-m", "occluface.cli", "serve", "--host", HOST, "--port", str(self.port),
                    "--gallery", str(gallery), "--detector", detector, "--model", model]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        import httpx

        env = {**os.environ, "OCCLUFACE_API_KEY": self.key}
        env.pop("OCCLUFACE_KEYS", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise OccluFaceError(f"occluface serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise OccluFaceError(f"occluface serve did not answer within {self.startup_timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()


def enroll_people(url: str, key: str, people: dict[str, Path]) -> None:
    import httpx

    for name, photo in people.items():
        r = httpx.post(f"{url}/api/subjects", data={"name": name}, headers={"X-API-Key": key},
                       files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))], timeout=300.0)
        if r.status_code != 201:
            raise OccluFaceError(f"enrolling {name} from {photo} failed: {r.status_code} {r.text[:300]}")


async def _fire(url: str, image: bytes, *, requests: int | None, seconds: float | None, concurrency: int,
                pid: int, timeout: float) -> dict[str, Any]:
    """Send identify requests from ``concurrency`` workers until ``requests`` are sent or ``seconds`` pass."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    faces: list[int] = []
    rss: list[tuple[float, float]] = []
    health: list[float] = []
    sent = 0
    start = time.perf_counter()
    stop = asyncio.Event()

    def take() -> bool:
        nonlocal sent
        if requests is not None and sent >= requests:
            return False
        if seconds is not None and time.perf_counter() - start >= seconds:
            return False
        sent += 1
        return True

    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while take():
                t0 = time.perf_counter()
                try:
                    r = await client.post("/api/identify", files=[("file", ("probe.jpg", image, "image/jpeg"))])
                    code = str(r.status_code)
                    if r.status_code == 200:
                        faces.append(len(r.json()["faces"]))
                    elif len(errors) < 10:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                    if len(errors) < 10:
                        errors.append(f"{code}: {exc}")
                latencies.append((time.perf_counter() - t0) * 1000.0)
                statuses[code] = statuses.get(code, 0) + 1

        async def monitor() -> None:
            while not stop.is_set():
                rss.append((round(time.perf_counter() - start, 2), round(rss_mib(pid), 1)))
                t0 = time.perf_counter()
                try:
                    await client.get("/api/health")
                    health.append((time.perf_counter() - t0) * 1000.0)
                except httpx.HTTPError:
                    health.append(float("inf"))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass

        mon = asyncio.create_task(monitor())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        stop.set()
        await mon
    return {"latencies": latencies, "statuses": statuses, "errors": errors, "faces": faces, "rss": rss,
            "health": health, "elapsed": elapsed}


def run_load(*, requests: int | None = 200, seconds: float | None = None, concurrency: int = 8,
             detector: str = "auto", model: str = "dlib_resnet", image: Path | None = None,
             timeout: float = 120.0, workdir: Path | None = None) -> LoadResult:
    """Start a server, enrol Obama and Biden, fire the identify load, and measure it (bounded by count/time)."""
    if requests is None and seconds is None:
        raise OccluFaceError("give a bound: --requests N and/or --seconds S")
    if concurrency < 1 or (requests is not None and requests < 1) or (seconds is not None and seconds <= 0):
        raise OccluFaceError("--requests, --seconds and --concurrency must be positive")
    probe = image or SAMPLES / "fr_two_people_obama_biden.jpg"
    if not probe.is_file():
        raise OccluFaceError(f"{probe}: probe image not found")
    with tempfile.TemporaryDirectory(prefix="occluface-load-") as tmp:
        root = Path(workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        key = "ocf_" + secrets.token_urlsafe(24)
        server = ServerProcess(root / "gallery.sqlite3", key=key, detector=detector, model=model,
                               log=root / "server.log")
        with server:
            import httpx

            enroll_people(server.url, key, {"Obama": SAMPLES / "fr_obama.jpg", "Biden": SAMPLES / "fr_biden.jpg"})
            data = probe.read_bytes()
            warm = httpx.post(server.url + "/api/identify", files=[("file", ("probe.jpg", data, "image/jpeg"))],
                              timeout=timeout)
            if warm.status_code != 200:
                raise OccluFaceError(f"warm-up identify failed: {warm.status_code} {warm.text[:300]}")
            rss_start = rss_mib(server.pid)
            raw = asyncio.run(_fire(server.url, data, requests=requests, seconds=seconds, concurrency=concurrency,
                                    pid=server.pid, timeout=timeout))
            rss_end = rss_mib(server.pid)
            try:
                after = httpx.get(server.url + "/api/health", timeout=10.0)
                health_ok = after.status_code == 200 and after.json().get("status") == "ok"
            except httpx.HTTPError:
                health_ok = False
            samples = raw["rss"]
            mid = samples[len(samples) // 2][1] if samples else float("nan")
    n = len(raw["latencies"])
    errors = sum(v for k, v in raw["statuses"].items() if k != "200")
    faces = raw["faces"]
    return LoadResult(
        requests=n,
        concurrency=concurrency,
        seconds=round(raw["elapsed"], 2),
        throughput_rps=round(n / raw["elapsed"], 3) if raw["elapsed"] > 0 else 0.0,
        latency_ms=_percentiles(raw["latencies"]),
        errors=errors,
        statuses=raw["statuses"],
        rss_mib={"start": round(rss_start, 1), "middle": mid, "end": round(rss_end, 1),
                 "max": max((s[1] for s in samples), default=float("nan"))},
        health_ms=_percentiles([h for h in raw["health"] if h != float("inf")]) | {
            "failed": sum(1 for h in raw["health"] if h == float("inf")), "probes": len(raw["health"])},
        health_after_ok=health_ok,
        faces_per_request=int(max(set(faces), key=faces.count)) if faces else 0,
        detector=detector,
        error_samples=raw["errors"],
        rss_samples=samples,
    )


def write_report(result: LoadResult, out: Path) -> dict[str, Any]:
    """``load.md`` (the figures) and ``load.json`` (plus the memory samples) in ``out``."""
    r = result
    lines = [
        "# Load test: concurrent /api/identify against `occluface serve` (127.0.0.1)",
        "",
        f"{r.requests} requests, concurrency {r.concurrency}, detector `{r.detector}`, "
        f"{r.faces_per_request} faces per probe photo, {r.seconds} s",
        "",
        "| throughput (req/s) | p50 (ms) | p99 (ms) | mean (ms) | max (ms) | errors |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {r.throughput_rps} | {r.latency_ms['p50']} | {r.latency_ms['p99']} | {r.latency_ms['mean']} | "
        f"{r.latency_ms['max']} | {r.errors} |",
        "",
        "| server RSS start (MiB) | middle | end | max |",
        "|---:|---:|---:|---:|",
        f"| {r.rss_mib['start']} | {r.rss_mib['middle']} | {r.rss_mib['end']} | {r.rss_mib['max']} |",
        "",
        f"`/api/health` while loaded: p50 {r.health_ms['p50']} ms, max {r.health_ms['max']} ms over "
        f"{r.health_ms['probes']} probes ({r.health_ms['failed']} failed); answering after the run: "
        f"{'yes' if r.health_after_ok else 'NO'}",
        "",
        f"statuses: {', '.join(f'{k}: {v}' for k, v in sorted(r.statuses.items()))}",
    ]
    if r.error_samples:
        lines += ["", "First errors:", ""] + [f"- `{e}`" for e in r.error_samples]
    if r.command:
        lines += ["", f"Command: `{r.command}`"]
    return save_report(out, markdown=lines, data=r.to_dict(), markdown_name="load.md", json_name="load.json")
