"""Fuzzing the two places where untrusted bytes enter occluface: image decoding and the REST upload path.

A gate or kiosk accepts photos from anyone, so every input must end in a result or a clear error, never a
crash, a hang or a memory blow-up. Two harnesses:

* ``decode``: ``load_rgb(bytes)`` must return an ``H x W x 3`` uint8 array or raise :class:`ImageError`;
* ``api``: a multipart upload to ``/api/identify``, ``/api/verify``, ``/api/rollcall`` or ``/api/subjects``
  (through FastAPI's TestClient, with the real recognizer) must answer JSON with a 2xx/4xx status, never 500.

Engines: ``atheris`` (coverage-guided libFuzzer; runs in a child process because libFuzzer ends the process
when done; per-input timeout and RSS limit catch hangs and memory bombs) and ``random`` (a seeded mutation
fuzzer in pure Python, for machines without atheris and for quick checks in tests). Both start from a seed
corpus of small valid images in many formats/modes, so mutations reach deep into the decoders.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occluface.bench.reports import save_report
from occluface.io import write_json
from occluface.settings import REPO_DATA
from occluface.errors import ImageError, OccluFaceError

TARGETS = ("decode", "api")
ENGINES = ("atheris", "random")
#: HTTP statuses a well-behaved endpoint may answer to arbitrary uploads (500 means an unhandled error).
ALLOWED_STATUSES = frozenset({200, 201, 400, 401, 403, 404, 409, 413, 422})
FUZZ_KEY = "ocf_fuzz-key"
SAMPLES = REPO_DATA / "samples"


@dataclass
class FuzzResult:
    """What one fuzz run tried and found (``crashes`` hold a message and the input's file, if saved)."""

    target: str
    engine: str
    inputs: int
    seconds: float
    crashes: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- seed corpus
def seed_corpus() -> list[bytes]:
    """Small valid images in the formats and modes uploads come in (16-bit, CMYK, palette, EXIF-rotated...)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    seeds: list[bytes] = []

    def add(img: Image.Image, fmt: str, **kw: Any) -> None:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        seeds.append(buf.getvalue())

    add(rgb, "JPEG", quality=80)
    add(rgb, "JPEG", progressive=True)
    add(rgb, "PNG")
    add(rgb.convert("L"), "PNG")
    add(rgb.convert("P"), "PNG")
    add(rgb.convert("RGBA"), "PNG")
    add(rgb.convert("1"), "PNG")
    add(Image.fromarray((np.arange(24 * 32).reshape(24, 32) * 80).astype(np.uint16)), "PNG")
    add(rgb.convert("CMYK"), "JPEG")
    add(rgb.convert("CMYK"), "TIFF")
    add(rgb, "TIFF", compression="tiff_lzw")
    add(rgb, "BMP")
    add(rgb, "WEBP", quality=70)
    add(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P").rotate(90)])
    add(rgb, "PPM")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    add(rgb, "JPEG", exif=exif.tobytes())
    face = SAMPLES / "fr_obama.jpg"
    if face.exists():  # a real face so the api harness also reaches detection and embedding
        img = Image.open(face).convert("RGB")
        img.thumbnail((160, 160))
        add(img, "JPEG", quality=85)
    return seeds


# ----------------------------------------------------------------------------- harnesses
def check_decode(data: bytes) -> str:
    """One decode input: the outcome name, or AssertionError / any other exception for a real bug."""
    from occluface.data.images import load_rgb

    try:
        arr = load_rgb(data, name="fuzz-input")
    except ImageError as exc:
        if "fuzz-input" not in str(exc):
            raise AssertionError(f"ImageError does not name the input: {exc}") from None
        return "ImageError"
    if not (isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8):
        raise AssertionError(f"load_rgb returned {type(arr).__name__} {getattr(arr, 'shape', '')}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise AssertionError(f"load_rgb returned an empty image {arr.shape}")
    return "decoded"


def make_api_client(gallery: Path, *, enroll_sample: bool = True, detector: str = "auto") -> Any:
    """A TestClient on a fresh app with one key and (when the sample exists) one enrolled person."""
    from fastapi.testclient import TestClient

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore

    settings = ApiSettings(gallery=gallery, detector=detector, keys=KeyStore.load(None, [FUZZ_KEY]),
                           max_upload_bytes=1024 * 1024, max_files=4).with_rate_limit(0)
    client = TestClient(create_app(settings), raise_server_exceptions=False, headers={"X-API-Key": FUZZ_KEY})
    face = SAMPLES / "fr_obama.jpg"
    if enroll_sample and face.exists():
        r = client.post("/api/subjects", data={"name": "Obama"}, headers={"X-API-Key": FUZZ_KEY},
                        files=[("files", ("obama.jpg", face.read_bytes(), "image/jpeg"))])
        if r.status_code != 201:
            raise OccluFaceError(f"fuzz setup: enrolling the sample face failed ({r.status_code}: {r.text})")
    return client


def check_api(client: Any, data: bytes) -> str:
    """One upload: the first byte picks the endpoint and the file name; the rest is the file's content."""
    selector = data[0] if data else 0
    body = data[1:]
    names = ("photo.jpg", "photo.png", "x", "../../etc/passwd", "名前.jpeg", "a" * 300 + ".png")
    filename = names[(selector >> 2) % len(names)]
    endpoint = selector % 4
    if endpoint == 0:
        r = client.post("/api/identify", files=[("file", (filename, body, "image/jpeg"))], data={"top": "3"})
    elif endpoint == 1:
        r = client.post("/api/verify", files=[("a", (filename, body, "image/jpeg")), ("b", (filename, body, "image/png"))])
    elif endpoint == 2:
        r = client.post("/api/rollcall", files=[("file", (filename, body, "image/jpeg"))], data={"roster": "Obama"})
    else:
        name = body[:12].decode("utf-8", "replace") or "fuzz"
        r = client.post("/api/subjects", data={"name": name}, headers={"X-API-Key": FUZZ_KEY},
                        files=[("files", (filename, body, "image/jpeg"))])
        if r.status_code == 201:  # keep the gallery small: undo what a valid face upload enrolled
            client.delete(f"/api/subjects/{r.json()['name']}", headers={"X-API-Key": FUZZ_KEY})
    if r.status_code not in ALLOWED_STATUSES:
        raise AssertionError(f"endpoint #{endpoint} answered {r.status_code}: {r.text[:300]}")
    try:
        payload = r.json()
    except ValueError:
        raise AssertionError(f"endpoint #{endpoint} answered non-JSON {r.status_code}: {r.text[:200]!r}") from None
    if r.status_code >= 400 and not (isinstance(payload, dict) and payload.get("error")):
        raise AssertionError(f"endpoint #{endpoint} error {r.status_code} without an 'error' message: {payload}")
    return str(r.status_code)


def make_checker(target: str, workdir: Path, detector: str = "auto") -> Callable[[bytes], str]:
    if target == "decode":
        return check_decode
    if target == "api":
        client = make_api_client(workdir / "fuzz-gallery.sqlite3", detector=detector)
        return lambda data: check_api(client, data)
    raise OccluFaceError(f"unknown fuzz target {target!r}; choose one of: {', '.join(TARGETS)}")


# ----------------------------------------------------------------------------- random engine
def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four byte-level edits: flips, overwrites with boundary values, inserts, deletes, truncation, splices."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 7))
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = int(rng.integers(0, n))
            buf[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:  # interesting values (sizes, lengths)
            i = int(rng.integers(0, n))
            val = [0x00, 0xFF, 0x7F, 0x80, 0x01][int(rng.integers(0, 5))]
            buf[i : i + int(rng.integers(1, 5))] = bytes([val]) * int(rng.integers(1, 5))
        elif op == 2:  # insert random bytes
            i = int(rng.integers(0, n + 1))
            buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif op == 3 and n > 1:  # delete a run
            i = int(rng.integers(0, n))
            del buf[i : i + int(rng.integers(1, 64))]
        elif op == 4 and n > 1:  # truncate
            del buf[int(rng.integers(0, n)) :]
        elif op == 5 and n > 8:  # duplicate a chunk
            i, j = sorted(int(v) for v in rng.integers(0, n, 2))
            buf[j:j] = buf[i : min(j, i + 256)]
        elif n:  # random bytes overwrite
            i = int(rng.integers(0, n))
            k = int(rng.integers(1, 16))
            buf[i : i + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
    return bytes(buf)


def run_random(target: str, *, runs: int | None, seconds: float | None, seed: int = 0,
               artifacts: Path | None = None, stop_on_crash: bool = False, detector: str = "auto") -> FuzzResult:
    """Seeded mutation fuzzing in this process (no coverage guidance); every seed is tried unmutated first."""
    if runs is None and seconds is None:
        raise OccluFaceError("give a bound: --runs N and/or --seconds S")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="occluface-fuzz-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on every odd EXIF tag
        check = make_checker(target, Path(tmp), detector)
        corpus = seed_corpus()
        if target == "api":  # the first byte picks endpoint and file name: spread the seeds over all of them
            corpus = [bytes([(i * 5) % 256]) + s for i, s in enumerate(corpus)]
        result = FuzzResult(target=target, engine="random", inputs=0, seconds=0.0)
        start = time.perf_counter()
        i = 0
        while True:
            if runs is not None and i >= runs:
                break
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
            data = corpus[i] if i < len(corpus) else mutate(corpus[int(rng.integers(0, len(corpus)))], rng)
            i += 1
            try:
                outcome = check(data)
            except Exception as exc:  # noqa: BLE001 - any escape here is exactly what fuzzing looks for
                outcome = "crash"
                saved = ""
                if artifacts is not None:
                    artifacts.mkdir(parents=True, exist_ok=True)
                    path = artifacts / f"crash-{target}-{i:06d}.bin"
                    path.write_bytes(data)
                    saved = str(path)
                result.crashes.append({"input": saved, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                if stop_on_crash:
                    result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
                    break
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        result.inputs = i
        result.seconds = round(time.perf_counter() - start, 2)
    return result


# ----------------------------------------------------------------------------- atheris engine
def _instrument(prefixes: tuple[str, ...]) -> int:
    """Coverage instrumentation for the code under test only (all of torch would take minutes)."""
    import gc
    import types

    import atheris

    count = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and str(getattr(obj, "__module__", "") or "").startswith(prefixes):
            try:
                atheris.instrument_func(obj)
                count += 1
            except Exception:  # noqa: BLE001 - instrumentation is an optimisation, never a reason to stop
                pass
    sys.stderr.write(f"INFO: instrumented {count} functions of {', '.join(prefixes)}\n")
    return count


def _atheris_child(target: str, detector: str, instrument: bool, stats_path: Path, libfuzzer_args: list[str]) -> None:
    """Runs inside the child: set up the harness, then hand control to libFuzzer (which exits the process)."""
    import atheris

    warnings.simplefilter("ignore")  # Pillow warns on every odd EXIF tag; the log should show results
    workdir = Path(os.environ.get("OCCLUFACE_FUZZ_WORKDIR") or tempfile.mkdtemp(prefix="occluface-fuzz-"))
    check = make_checker(target, workdir, detector)
    from PIL import Image

    Image.init()  # import every format plugin now, so their code is instrumented below
    if instrument:
        _instrument(("PIL", "occluface.data", "occluface.api", "occluface.recognition.service", "starlette", "multipart",
                     "python_multipart", "fastapi"))
    counts: dict[str, int] = {}
    state = {"n": 0, "last": 0.0}

    def dump() -> None:
        write_json(stats_path, {"inputs": state["n"], "outcomes": counts}, indent=None)

    def one_input(data: bytes) -> None:
        state["n"] += 1
        outcome = check(bytes(data))  # any exception propagates: atheris reports it and saves the input
        counts[outcome] = counts.get(outcome, 0) + 1
        now = time.monotonic()
        if now - state["last"] > 0.5:
            state["last"] = now
            dump()

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def run_atheris(target: str, *, runs: int | None, seconds: float | None, artifacts: Path,
                timeout_per_input: int = 20, rss_limit_mb: int = 3072, seed: int = 0,
                detector: str = "auto", instrument: bool = True) -> FuzzResult:
    """Coverage-guided fuzzing with atheris/libFuzzer in a child process, bounded by ``runs`` and/or ``seconds``."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        raise OccluFaceError("atheris is not installed (pip install 'occluface[test]' or pip install atheris); "
                             "or use --engine random") from None
    if runs is None and seconds is None:
        raise OccluFaceError("give a bound: --runs N and/or --seconds S")
    artifacts.mkdir(parents=True, exist_ok=True)
    # libFuzzer adds every input that finds new coverage to the corpus folder: keep that out of the reports
    work = Path(tempfile.mkdtemp(prefix=f"occluface-fuzz-{target}-"))  # corpus + the api harness's gallery
    corpus_dir = work / "corpus"
    corpus_dir.mkdir()
    for i, data in enumerate(seed_corpus()):
        (corpus_dir / f"seed-{i:02d}").write_bytes(data if target == "decode" else bytes([(i * 5) % 256]) + data)
    stats = artifacts / f"stats-{target}.json"
    stats.unlink(missing_ok=True)
    args = [f"-timeout={timeout_per_input}", f"-rss_limit_mb={rss_limit_mb}", f"-seed={seed + 1}",
            f"-artifact_prefix={artifacts}/", "-max_len=65536", "-print_final_stats=1"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={max(1, int(seconds))}")
    args.append(str(corpus_dir))
    cmd = [sys.executable, "-m", "occluface.bench.fuzz", "--child", target, detector, "1" if instrument else "0",
           str(stats), *args]
    start = time.perf_counter()
    hard_limit = (seconds or 0) + 600 if seconds else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=hard_limit, check=False,
                              env={**os.environ, "OCCLUFACE_FUZZ_WORKDIR": str(work)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    lines = log.splitlines()
    (artifacts / f"atheris-{target}.log").write_text("\n".join(lines[:40] + ["..."] + lines[-200:]) + "\n")
    done = re.findall(r"Done (\d+) runs in", log)
    mine = json.loads(stats.read_text()) if stats.exists() else {"inputs": 0, "outcomes": {}}
    stats.unlink(missing_ok=True)  # its figures go into fuzz.json (outcomes as last sampled, every 0.5 s)
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    inputs = int(done[-1]) if done else int(execs[-1]) if execs else int(mine["inputs"])
    result = FuzzResult(target=target, engine="atheris", inputs=inputs, seconds=round(elapsed, 2),
                        outcomes=mine.get("outcomes", {}))
    if proc.returncode != 0 or "Uncaught Python exception" in log or "ERROR: libFuzzer" in log:
        crash_files = re.findall(r"Test unit written to (\S+)", log)
        tb = log[log.find("=== Uncaught Python exception"):][:3000] if "Uncaught Python exception" in log else ""
        kind = re.findall(r"ERROR: libFuzzer: ([^\n]+)", log)
        result.crashes.append({"input": crash_files[-1] if crash_files else "",
                               "error": tb or (kind[-1] if kind else f"child exited with {proc.returncode}"),
                               "log_tail": log[-1500:]})
    return result


def run_fuzz(target: str, *, engine: str = "atheris", runs: int | None = None, seconds: float | None = None,
             artifacts: Path | str = "reports/fuzz", seed: int = 0, detector: str = "auto",
             instrument: bool = True) -> FuzzResult:
    """Fuzz ``target`` ("decode" or "api") with ``engine`` for a bounded number of inputs and/or time."""
    if target not in TARGETS:
        raise OccluFaceError(f"unknown fuzz target {target!r}; choose one of: {', '.join(TARGETS)}")
    if engine not in ENGINES:
        raise OccluFaceError(f"unknown fuzz engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if runs is not None and runs < 1 or seconds is not None and seconds <= 0:
        raise OccluFaceError("--runs and --seconds must be positive")
    artifacts = Path(artifacts)
    if engine == "atheris":
        return run_atheris(target, runs=runs, seconds=seconds, artifacts=artifacts, seed=seed, detector=detector,
                           instrument=instrument)
    return run_random(target, runs=runs, seconds=seconds, seed=seed, artifacts=artifacts, detector=detector)


def write_report(results: list[FuzzResult], out: Path) -> dict[str, Any]:
    """``fuzz.md`` (a table) and ``fuzz.json`` in ``out``."""
    lines = ["# Fuzzing", "", "| target | engine | inputs tried | wall s (with start-up) | crashes | outcomes |",
             "|---|---|---:|---:|---:|---|"]
    for r in results:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(r.outcomes.items()))
        lines.append(f"| {r.target} | {r.engine} | {r.inputs} | {r.seconds} | {len(r.crashes)} | {outcomes} |")
    for r in results:
        for c in r.crashes:
            lines += ["", f"## crash in {r.target} ({r.engine})", "", f"input: `{c['input']}`", "", "```",
                      c["error"][:2000], "```"]
    if any(r.engine == "atheris" for r in results):
        lines += ["", "Inputs tried are libFuzzer's own count; outcomes are sampled every 0.5 s, so they can sum to "
                  "slightly less. decode: ImageError = clear refusal; api: HTTP status answered."]
    if results and results[0].command:
        lines += ["", f"Command: `{results[0].command}`"]
    return save_report(out, markdown=lines, data=[r.to_dict() for r in results], markdown_name="fuzz.md",
                       json_name="fuzz.json")


if __name__ == "__main__":  # child process of run_atheris: python -m occluface.bench.fuzz --child TARGET STATS ARGS...
    if len(sys.argv) >= 6 and sys.argv[1] == "--child":
        _atheris_child(sys.argv[2], sys.argv[3], sys.argv[4] == "1", Path(sys.argv[5]), sys.argv[6:])
    else:
        sys.exit("internal entry point: use `occluface bench fuzz`")
