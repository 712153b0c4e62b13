"""`occluface bench speed`: faces/s and peak memory of dlib vs the PyTorch port vs other backbones.

Why: the port exists to be faster than dlib's one-face-at-a-time CPU path; this measures by how much, and
which runtime wins (eager, channels-last + inference_mode, torch.compile, ONNX Runtime, CUDA when present).

Fairness: every backend embeds the same aligned 150x150 chips (dlib's own chips of the bundled faces,
repeated up to `faces`; other backbones get them resized to their input size), with the same thread count,
and the uint8 -> float conversion is inside the timed loop. Each backend runs in its own fresh Python process
so thread settings (OMP/MKL/OpenBLAS variables are set before anything is imported) and peak RSS
(VmHWM, which includes the interpreter and libraries) are its own. Timing: one warm-up pass, then
`repeats` timed passes over all faces; faces/s uses the median pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from occluface.bench.reports import report_dir, save_report
from occluface.settings import REPO_DATA
from occluface.errors import OccluFaceError

__all__ = ["SpeedRow", "SpeedResult", "bundled_chips", "default_backends", "run_speed", "write_report"]

DATA_DIR = REPO_DATA


@dataclass
class SpeedRow:
    """One backend's measurement (or why it could not be measured)."""

    backend: str
    description: str
    faces_per_s: float | None = None
    best_faces_per_s: float | None = None
    ms_per_face: float | None = None
    peak_rss_mib: float | None = None
    peak_gpu_mib: float | None = None
    setup_s: float | None = None
    batch: int = 1
    input: str = "150x150"
    error: str | None = None


@dataclass
class SpeedResult:
    faces: int
    threads: int
    batch: int
    repeats: int
    rows: list[SpeedRow]
    environment: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"}, "rows": [asdict(r) for r in self.rows]}


# ----------------------------------------------------------------------------------------- chips
def bundled_chips(data_dir: str | Path = DATA_DIR, limit: int = 24, per_source: int | None = None) -> np.ndarray:
    """dlib chips (N x 150 x 150 x 3 uint8) of up to `limit` real faces from the bundled sample images.

    Faces come from samples/ (every face dlib's HOG detector finds), then lfw/, then yaleb/ (whole-image box
    when nothing is found: tight crops); `per_source` caps how many each folder contributes.
    """
    import cv2
    import dlib

    from occluface.data.images import is_image_file, load_rgb
    from occluface.faces.chips import dlib_chip, full_image_box

    data_dir = Path(data_dir)
    sources = [(sub, p) for sub in ("samples", "lfw", "yaleb") for p in sorted((data_dir / sub).rglob("*"))]
    files = [(sub, p) for sub, p in sources if is_image_file(p)]
    if not files:
        raise OccluFaceError(f"{data_dir}: no sample images found (expected samples/, lfw/ or yaleb/ inside)")
    detector = dlib.get_frontal_face_detector()
    chips: list[np.ndarray] = []
    taken: dict[str, int] = {}
    for sub, path in files:
        if per_source is not None and taken.get(sub, 0) >= per_source:
            continue
        image = load_rgb(path)
        # Detect on a copy at most 640 px wide (fast); the chip itself comes from the full-size image.
        scale = min(1.0, 640.0 / max(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = list(detector(small, 0))
        boxes = [tuple(v / scale for v in (r.left(), r.top(), r.right(), r.bottom())) for r in found]
        boxes = boxes or [full_image_box(image)]
        for box in boxes[: None if per_source is None else per_source - taken.get(sub, 0)]:
            chips.append(dlib_chip(image, box))
            taken[sub] = taken.get(sub, 0) + 1
            if len(chips) >= limit:
                return np.stack(chips)
    return np.stack(chips)


def _repeat_to(chips: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(chips))
    return np.concatenate([chips] * reps)[:n]


# ----------------------------------------------------------------------------------------- backends
def default_backends(compile: bool = False, cuda: bool | None = None) -> list[str]:
    """Backend ids measured by default: dlib (single, batch), the port's CPU variants, CUDA if available."""
    names = ["dlib-single", "dlib-batch", "port-eager", "port-fast"]
    if compile:
        names.append("port-compile")
    names += ["port-onnx", "finetuned-fast", "routed-fast"]  # finetuned-*: occluface_resnet, dlib's net fine-tuned for occlusion
    if cuda is None:
        import importlib.util

        cuda = False
        if importlib.util.find_spec("torch") is not None:
            import torch

            cuda = torch.cuda.is_available()
    if cuda:
        names += ["port-cuda", "port-cuda-fp16", "finetuned-cuda", "dlib-cuda" if _dlib_has_cuda() else None]
    return [n for n in names if n]


def _dlib_has_cuda() -> bool:
    try:
        import dlib

        return bool(getattr(dlib, "DLIB_USE_CUDA", False))
    except ImportError:
        return False


DESCRIPTIONS = {
    "dlib-single": "dlib compute_face_descriptor, one chip per call",
    "dlib-batch": "dlib compute_face_descriptor, list of chips per call",
    "dlib-cuda": "dlib batch call on its CUDA build",
    "port-eager": "port, fp32 eager, NCHW, torch.no_grad",
    "port-fast": "port, fp32, channels-last + torch.inference_mode",
    "port-compile": "port, torch.compile (inductor) + channels-last + inference_mode",
    "port-onnx": "port exported to ONNX, ONNX Runtime CPU",
    "port-cuda": "port, fp32 on CUDA, channels-last",
    "port-cuda-fp16": "port, fp16 autocast on CUDA, channels-last",
    "finetuned-fast": "occluface_resnet (fine-tuned port), fp32, channels-last + inference_mode",
    "finetuned-cuda": "occluface_resnet (fine-tuned port), fp32 on CUDA, channels-last",
    "routed-fast": "routed matcher, bare-face path (the costlier one): mask classifier on 112x112 + port + "
                   "occluface_resnet, fp32, channels-last + inference_mode",
}


def _short(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _label(backend: str) -> str:
    """Backend id for tables: checkpoints by run folder + file, not their full path."""
    return f"checkpoint:{_short(backend[11:])}" if backend.startswith("checkpoint:") else backend


def _pipeline(backend: str) -> tuple[str, str]:
    """``pipeline:MATCHER`` or ``pipeline:MATCHER@DETECTOR`` -> (matcher, detector; the service's default if not named)."""
    from occluface.faces.detect import DEFAULT_DETECTOR

    matcher, _, detector = backend[len("pipeline:"):].partition("@")
    return matcher, detector or DEFAULT_DETECTOR


def _known(backend: str) -> bool:
    return backend in DESCRIPTIONS or backend.startswith(("model:", "checkpoint:", "pipeline:"))


def _describe(backend: str) -> str:
    if backend.startswith("pipeline:"):
        matcher, detector = _pipeline(backend)
        return (f"whole pipeline, Recognizer(model={matcher}, detector={detector}).identify on decoded 250x250 one-face "
                "photos: detect, align, mask state, embed, search, threshold (bundled 12-person gallery)")
    if backend.startswith("model:"):
        return f"registry model {backend[6:]} (untrained weights; speed only), channels-last + inference_mode"
    if backend.startswith("checkpoint:"):
        return f"fine-tuned checkpoint {_short(backend[11:])}, channels-last + inference_mode"
    return DESCRIPTIONS.get(backend, backend)


# ----------------------------------------------------------------------------------------- worker
def _time_passes(run_pass: Callable[[], None], repeats: int) -> list[float]:
    run_pass()  # warm-up (allocators, lazy init, JIT)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_pass()
        times.append(time.perf_counter() - t0)
    return times


def _peak_rss_mib() -> float:
    """Peak resident memory of this process. Linux: VmHWM, which starts afresh at exec (ru_maxrss does not:
    it carries the parent's peak over fork + exec, so every worker would report the parent's figure)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one backend over the chips in spec["chips"] (a .npy file); returns timings and peak memory."""
    backend, batch, repeats = spec["backend"], int(spec["batch"]), int(spec["repeats"])
    if not _known(backend):
        raise OccluFaceError(f"unknown speed backend {backend!r}")
    chips = np.load(spec["chips"])
    n = len(chips)
    result: dict[str, Any] = {"batch": batch}
    t_setup = time.perf_counter()
    if backend.startswith("pipeline:"):
        # The product end to end, one photo at a time (what a gate does): faces/s = photos/s (one face each).
        import torch

        from occluface.data.images import load_rgb
        from occluface.runtime import limit_threads
        from occluface.gallery.connect import open_gallery
        from occluface.recognition.service import Recognizer

        torch.set_num_threads(int(spec["threads"]))
        limit_threads(int(spec["threads"]))
        import cv2

        cv2.setNumThreads(int(spec["threads"]))
        lfw = sorted((DATA_DIR / "lfw").glob("*/*.jpg"))
        tmpdir = tempfile.mkdtemp(prefix="occluface-pipeline-")
        matcher, detector = _pipeline(backend)
        rec = Recognizer(open_gallery(Path(tmpdir) / "g.sqlite3"), model=matcher, detector=detector)
        people: dict[str, list[Path]] = {}
        for f in lfw:
            people.setdefault(f.parent.name, []).append(f)
        for name, files in people.items():
            rec.enroll(name, files[:1], thumbnails=False)
        images = [load_rgb(f) for f in lfw]
        reps = max(1, n // len(images))
        work = (images * reps)[: max(n, len(images))]
        n = len(work)
        result["batch"] = 1
        result["input"] = "250x250 photo"
        rec.identify(work[0], image=work[0])

        def run_pass() -> None:
            for im in work:
                rec.identify(im, image=im)

        result["setup_s"] = time.perf_counter() - t_setup
        times = _time_passes(run_pass, repeats)
    elif backend.startswith("dlib"):
        import dlib

        from occluface.models.files import dlib_model

        net = dlib.face_recognition_model_v1(str(dlib_model("resnet")))
        chip_list = [np.ascontiguousarray(c) for c in chips]
        if backend == "dlib-single":
            result["batch"] = 1

            def run_pass() -> None:
                for c in chip_list:
                    net.compute_face_descriptor(c)

        else:

            def run_pass() -> None:
                for s in range(0, n, batch):
                    net.compute_face_descriptor(chip_list[s : s + batch])

        result["setup_s"] = time.perf_counter() - t_setup
        times = _time_passes(run_pass, repeats)
    elif backend == "routed-fast":
        # The bare-face path of occluface.recognition.routed: the mask classifier, then both networks (a masked face
        # needs only one). The classifier gets the chip resized to 112x112 (at run time, its own aligned crop).
        import cv2
        import torch

        from occluface.maskcheck.model import load_weights, to_tensor
        from occluface.models import create

        torch.set_num_threads(int(spec["threads"]))
        nets = [create(name).eval().to(memory_format=torch.channels_last)
                for name in ("dlib_resnet_torch", "occluface_resnet")]
        from occluface.recognition.routed import ROUTING_CLASSIFIER

        classifier = load_weights(ROUTING_CLASSIFIER).eval()
        small = np.stack([cv2.resize(c, (classifier.input_size,) * 2, interpolation=cv2.INTER_AREA) for c in chips])
        pairs = [(torch.from_numpy(chips[s : s + batch]), small[s : s + batch]) for s in range(0, n, batch)]

        def run_pass() -> None:
            with torch.inference_mode():
                for b, crops in pairs:
                    classifier(to_tensor(crops)).softmax(1)
                    x = b.permute(0, 3, 1, 2).float().div_(255.0)
                    for net in nets:
                        net(x)

        result["setup_s"] = time.perf_counter() - t_setup
        times = _time_passes(run_pass, repeats)
    elif backend == "port-onnx":
        # Only numpy + onnxruntime in this process (the parent exported the file), so the peak RSS is what an
        # ONNX Runtime deployment needs.
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(spec["threads"])
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(spec["onnx"], opts, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run_pass() -> None:
            for s in range(0, n, batch):
                x = chips[s : s + batch].transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)
                session.run(None, {input_name: x})

        result["setup_s"] = time.perf_counter() - t_setup
        times = _time_passes(run_pass, repeats)
    else:
        import torch

        torch.set_num_threads(int(spec["threads"]))
        device = "cuda" if "cuda" in backend else "cpu"
        if backend.startswith("checkpoint:"):
            from occluface.models.checkpoint import load_model

            model = load_model(backend[11:]).backbone
        elif backend.startswith("model:"):
            from occluface.models import create

            model = create(backend[6:])
        else:
            from occluface.models import create

            model = create("occluface_resnet" if backend.startswith("finetuned") else "dlib_resnet_torch")
        model.eval()
        size = tuple(getattr(model, "input_size", (150, 150)))
        result["input"] = f"{size[0]}x{size[1]}"
        if size != chips.shape[1:3]:
            import cv2

            chips = np.stack([cv2.resize(c, (size[1], size[0]), interpolation=cv2.INTER_AREA) for c in chips])
        # Trainable backbones take ArcFace-normalised pixels; dlib-style models take [0, 1].
        dlib_style = getattr(model, "chip", None) == "dlib"
        mean, std = (0.0, 1.0) if dlib_style else (0.5, 0.5)
        batches = [torch.from_numpy(chips[s : s + batch]) for s in range(0, n, batch)]
        channels_last = backend != "port-eager"
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        fn = torch.compile(model) if backend == "port-compile" else model
        fp16 = backend.endswith("fp16")
        ctx = torch.no_grad if backend == "port-eager" else torch.inference_mode

        def run_pass() -> None:
            amp = torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()
            with ctx(), amp:
                for b in batches:
                    # NHWC uint8 -> NCHW float: permute gives channels-last strides for free.
                    x = b.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
                    if mean or std != 1.0:
                        x = (x - mean) / std
                    if not channels_last:
                        x = x.contiguous()
                    out = fn(x)
                if device == "cuda":
                    out.float().cpu()
                    torch.cuda.synchronize()

        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if backend == "port-compile":
            run_pass()  # compilation happens on the first call: counted as setup time, not throughput
        result["setup_s"] = time.perf_counter() - t_setup
        times = _time_passes(run_pass, repeats)
        if device == "cuda":
            result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    med, best = statistics.median(times), min(times)
    result.update(
        faces_per_s=n / med, best_faces_per_s=n / best, ms_per_face=1000.0 * med / n, peak_rss_mib=_peak_rss_mib()
    )
    return result


def _run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Measure one backend in a fresh interpreter with thread variables set before any import."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(spec["threads"])
    cmd = [sys.executable, "-m", "occluface.bench.speed", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------- driver
def run_speed(
    faces: int = 64,
    threads: int = 2,
    batch: int = 32,
    repeats: int = 3,
    backends: Sequence[str] | None = None,
    data_dir: str | Path = DATA_DIR,
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> SpeedResult:
    """Measure every backend on the same `faces` chips; a failing backend gets an error row, not an abort."""
    if faces < 1 or threads < 1 or batch < 1 or repeats < 1:
        raise OccluFaceError(f"faces, threads, batch and repeats must be >= 1 (got {faces}, {threads}, {batch}, {repeats})")
    backends = list(backends) if backends is not None else default_backends()
    distinct = bundled_chips(data_dir)
    chips = _repeat_to(distinct, faces)
    env = {
        "distinct_faces": len(distinct),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }
    rows: list[SpeedRow] = []
    with tempfile.TemporaryDirectory(prefix="occluface-speed-") as tmp:
        chips_path = Path(tmp) / "chips.npy"
        np.save(chips_path, chips)
        onnx_path, onnx_error = Path(tmp) / "port.onnx", None
        if "port-onnx" in backends:
            from occluface.export import export_onnx

            try:
                export_onnx(onnx_path, "dlib_resnet_torch")
            except OccluFaceError as exc:
                onnx_error = str(exc)
        for backend in backends:
            if progress:
                progress(backend)
            spec = {"backend": backend, "chips": str(chips_path), "batch": batch, "threads": threads,
                    "repeats": repeats, "onnx": str(onnx_path)}  # fmt: skip
            if not _known(backend):
                got = {"error": f"unknown backend; known: {', '.join(DESCRIPTIONS)}, model:NAME, checkpoint:PATH"}
            elif backend == "port-onnx" and onnx_error:
                got = {"error": onnx_error}
            else:
                got = _run_worker(spec, timeout)
            row = SpeedRow(backend=_label(backend), description=_describe(backend), batch=int(got.get("batch", batch)))
            for key in ("faces_per_s", "best_faces_per_s", "ms_per_face", "peak_rss_mib", "peak_gpu_mib", "setup_s",
                        "error", "input"):  # fmt: skip
                if key in got:
                    setattr(row, key, got[key])
            rows.append(row)
    env["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return SpeedResult(faces=faces, threads=threads, batch=batch, repeats=repeats, rows=rows, environment=env)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------- report
def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def write_report(result: SpeedResult, out_dir: str | Path) -> dict[str, Any]:
    """speed.md (table), speed.json (everything) and speed.png (faces/s bar chart) in `out_dir`."""
    out_dir = report_dir(out_dir)
    ref = next((r.faces_per_s for r in result.rows if r.backend == "dlib-single" and r.faces_per_s), None)
    env = result.environment
    lines = [
        "# Embedding speed: dlib vs the PyTorch port",
        "",
        f"{result.faces} faces ({env.get('distinct_faces', '?')} distinct dlib chips of the bundled sample faces, "
        f"repeated), {result.threads} threads, batch "
        f"{result.batch}, median of {result.repeats} timed passes after one warm-up; each backend in a fresh "
        "process. Peak RSS is the whole process (interpreter + libraries + model).",
        "",
        f"CPU: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} logical cores); GPU: {env.get('cuda') or 'none'}; "
        f"load average before/after: {env.get('load_average_before')} / {env.get('load_average_after')} "
        "(other work on the machine makes all numbers noisy).",
        "",
        "| backend | what | input | batch | faces/s | best faces/s | ms/face | x dlib single | peak RSS MiB | peak GPU MiB "
        "| setup s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        if r.error:
            lines.append(f"| {r.backend} | {r.description} | {r.input} | {r.batch} | failed: {r.error} | | | | | | |")
            continue
        speedup = _fmt(r.faces_per_s / ref, ".2f") if ref and r.faces_per_s else "-"
        lines.append(
            f"| {r.backend} | {r.description} | {r.input} | {r.batch} | {_fmt(r.faces_per_s, '.1f')} | "
            f"{_fmt(r.best_faces_per_s, '.1f')} | {_fmt(r.ms_per_face, '.1f')} | {speedup} | "
            f"{_fmt(r.peak_rss_mib, '.0f')} | {_fmt(r.peak_gpu_mib, '.0f')} | {_fmt(r.setup_s, '.1f')} |"
        )
    ports = [r for r in result.rows if r.backend.startswith("port-") and r.faces_per_s and "cuda" not in r.backend]
    if ref and ports:
        best = max(ports, key=lambda r: r.faces_per_s or 0.0)
        ratio = (best.faces_per_s or 0.0) / ref
        lines += [
            "",
            f"Fastest CPU backend of the port: **{best.backend}** ({best.description}) at {best.faces_per_s:.1f} faces/s, "
            f"{ratio:.2f}x dlib's one-by-one {ref:.1f} faces/s ({'meets' if ratio >= 3 else 'misses'} the 3x target).",
        ]
    png = out_dir / "speed.png"
    _bar_chart(result, png)
    return save_report(out_dir, markdown=lines, data=result.as_dict(), markdown_name="speed.md", json_name="speed.json",
                       figures=[png])


def _bar_chart(result: SpeedResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.faces_per_s]
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(rows), 2) + 1.2))
    names = [r.backend for r in rows]
    values = [r.faces_per_s for r in rows]
    colors = ["#999999" if n.startswith("dlib") else "#1f77b4" if n.startswith("port") else "#ff7f0e" for n in names]
    ax.barh(names, values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"faces/s ({result.threads} threads, batch {result.batch}; higher is better)")
    ax.set_title("Face embedding throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # worker entry point used by run_speed (one backend per process)
    try:
        print(json.dumps(_measure(json.loads(sys.argv[1]))), flush=True)
    except Exception as exc:  # reported as this backend's error row by the parent
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
