"""Search benchmark: query latency, build time, memory and recall@1 of each index on synthetic galleries.

Synthetic but face-like: rows are grouped into identities (several noisy rows around an identity centre, same-
identity cosine ~0.7 as for real embeddings) and each query is a noisy copy of a random gallery row, so the
nearest neighbour is meaningful and near-duplicates compete with it. Latency is measured one query at a time,
as a live recognition loop issues them, under a fixed thread budget (``threads``, default 2 cores).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from occluface.bench.reports import report_dir, save_report
from occluface.progress import progress_bar
from occluface.gallery.search import ExactIndex, FaissIndex, VectorIndex, make_index

#: Issue targets (2 cores): p99 latency per gallery size, and recall@1 against exact search.
P99_TARGET_MS = {100_000: 20.0, 1_000_000: 100.0}
RECALL_TARGET = 0.99
ROWS_PER_IDENTITY = 4
#: Norm of the noise added to identity centres (rows: same-identity cosine ~0.73) and to source rows
#: (queries: cosine to their source ~0.71, a typical genuine score for an occluded face; 0.3 made every index
#: look perfect).
ROW_NOISE = 0.6
QUERY_NOISE = 1.0


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int], norm: float) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(norm / np.sqrt(shape[1]))


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_gallery(
    n: int, dim: int, n_queries: int, seed: int = 0, *, query_noise: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gallery N x D, queries Q x D, source row per query)``, all float32 unit vectors, seeded.

    Generated in chunks so 1M x 512 needs no float64 copy.
    """
    if n < 1 or dim < 2 or n_queries < 1:
        raise ValueError(f"need n >= 1, dim >= 2, queries >= 1 (got {n}, {dim}, {n_queries})")
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // ROWS_PER_IDENTITY)
    centres = _normalise(rng.standard_normal((n_ids, dim), dtype=np.float32))
    gallery = np.empty((n, dim), np.float32)
    chunk = 65_536
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ids = np.arange(start, stop) % n_ids
        gallery[start:stop] = _normalise(centres[ids] + _unit_noise(rng, (stop - start, dim), ROW_NOISE))
    source = rng.integers(0, n, n_queries)
    noise = QUERY_NOISE if query_noise is None else query_noise
    queries = _normalise(gallery[source] + _unit_noise(rng, (n_queries, dim), noise))
    return gallery, queries, source


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if platform.system() != "Darwin" else peak / (1024.0 * 1024.0)


def _limit_threads(stack: ExitStack, threads: int | None) -> None:
    """Pin BLAS (numpy) and OpenMP (FAISS) to ``threads`` so figures mean 'on N cores'."""
    if not threads:
        return
    from threadpoolctl import threadpool_limits

    stack.enter_context(threadpool_limits(limits=threads))
    try:
        import faiss
    except ImportError:  # pragma: no cover
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    stack.callback(faiss.omp_set_num_threads, before)


def _new_index(kind: str, seed: int) -> VectorIndex:
    return ExactIndex() if kind == "exact" else FaissIndex(kind, seed=seed)


def run_search_bench(
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    *,
    dim: int = 128,
    n_queries: int = 1000,
    k: int = 5,
    seed: int = 0,
    approx: Sequence[str] = ("ivf",),
    threads: int | None = 1,
    query_noise: float = QUERY_NOISE,
    warmup: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark exact numpy, FAISS flat and the approximate FAISS kinds at each gallery size."""
    import faiss

    for kind in approx:
        if kind not in ("hnsw", "ivf"):
            raise ValueError(f"approximate index kinds are hnsw and ivf, got {kind!r}")
    load_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    rows: list[dict[str, Any]] = []
    n_steps = len(sizes) * (2 + len(approx))
    with ExitStack() as stack:
        _limit_threads(stack, threads)
        bar = stack.enter_context(progress_bar(progress, transient=True, elapsed=True))
        task = bar.add_task("search bench", total=n_steps * n_queries)
        for n in sizes:
            bar.update(task, description=f"{n:,} x {dim}: generating")
            gallery, queries, source = synthetic_gallery(n, dim, n_queries, seed, query_noise=query_noise)
            truth_s, truth_i = ExactIndex().build(gallery).search(queries, 1)
            default_kind = make_index(n, dim).kind
            for kind in ("exact", "flat", *approx):
                index = _new_index(kind, seed)  # one at a time: at 1M each holds its own 0.5 GB copy
                bar.update(task, description=f"{n:,} x {dim}: build {index.kind}")
                t0 = time.perf_counter()
                index.build(gallery)
                build_s = time.perf_counter() - t0
                bar.update(task, description=f"{n:,} x {dim}: query {index.kind}")
                for i in range(min(warmup, n_queries)):
                    index.search(queries[i : i + 1], k)
                lat = np.empty(n_queries)
                top1 = np.empty(n_queries, np.int64)
                top1_s = np.empty(n_queries, np.float32)
                for i in range(n_queries):
                    t0 = time.perf_counter()
                    s, ix = index.search(queries[i : i + 1], k)
                    lat[i] = time.perf_counter() - t0
                    top1[i], top1_s[i] = ix[0, 0], s[0, 0]
                    if i % 50 == 49:
                        bar.advance(task, 50)
                bar.advance(task, n_queries % 50)
                # a hit is the exact top-1 row, or a row tied with it in score (float rounding)
                hit = (top1 == truth_i[:, 0]) | (np.abs(top1_s - truth_s[:, 0]) <= 1e-6)
                ms = lat * 1000.0
                rows.append(
                    {
                        "size": int(n),
                        "index": index.kind,
                        "config": index.describe(),
                        "chosen_by_make_index": index.kind == default_kind,
                        "build_s": round(build_s, 4),
                        "index_mb": round(index.nbytes() / 2**20, 2),
                        "peak_rss_mb": None if (p := _peak_rss_mb()) is None else round(p, 1),
                        "p50_ms": round(float(np.percentile(ms, 50)), 4),
                        "p95_ms": round(float(np.percentile(ms, 95)), 4),
                        "p99_ms": round(float(np.percentile(ms, 99)), 4),
                        "mean_ms": round(float(ms.mean()), 4),
                        "recall_at_1": round(float(hit.mean()), 5),
                        "source_found_at_1": round(float((top1 == source).mean()), 5),
                    }
                )
                del index
            del gallery, queries, source
    return {
        "config": {
            "sizes": [int(s) for s in sizes],
            "dim": dim,
            "queries": n_queries,
            "k": k,
            "seed": seed,
            "approx": list(approx),
            "threads": threads,
            "rows_per_identity": ROWS_PER_IDENTITY,
            "row_noise": ROW_NOISE,
            "query_noise": query_noise,
            "query_source_cosine": round(1.0 / float(np.sqrt(1.0 + query_noise**2)), 3),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "faiss": getattr(faiss, "__version__", "?"),
            "load_average_at_start": load_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "targets": {"p99_ms": {str(k_): v for k_, v in P99_TARGET_MS.items()}, "recall_at_1": RECALL_TARGET},
        "results": rows,
    }


def _verdict(row: dict[str, Any]) -> str:
    target = P99_TARGET_MS.get(row["size"])
    ok_recall = row["recall_at_1"] >= RECALL_TARGET
    if target is None:
        return "ok" if ok_recall else "recall < 0.99"
    ok_lat = row["p99_ms"] < target
    if ok_lat and ok_recall:
        return f"meets p99 < {target:g} ms"
    return "; ".join(x for x, bad in ((f"p99 >= {target:g} ms", not ok_lat), ("recall < 0.99", not ok_recall)) if bad)


def to_markdown(result: dict[str, Any], command: str | None = None) -> str:
    c, m = result["config"], result["machine"]
    lines = [
        "# Gallery search benchmark",
        "",
        f"Synthetic unit vectors, dim {c['dim']}, {c['rows_per_identity']} rows per identity; {c['queries']} queries "
        f"(noisy copies of random gallery rows, cosine ~{c['query_source_cosine']} to their source), one query at a "
        f"time, top-{c['k']}; seed {c['seed']}; "
        f"{c['threads'] or 'default'} thread(s) per query on a {m['cpu_count']}-CPU {m['processor']} machine "
        f"(numpy {m['numpy']}, faiss {m['faiss']}; load average {m.get('load_average_at_start')} at the start, "
        f"{m.get('load_average_at_end')} at the end: other work on the same cores inflates latencies).",
        "Recall@1 is measured against exact search; * marks the index `make_index` picks at that size.",
        "",
        "| size | index | build s | index MB | p50 ms | p95 ms | p99 ms | recall@1 | verdict |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["results"]:
        star = " *" if r["chosen_by_make_index"] else ""
        lines.append(
            f"| {r['size']:,} | {r['config']}{star} | {r['build_s']:.2f} | {r['index_mb']:.1f} | {r['p50_ms']:.3f} | "
            f"{r['p95_ms']:.3f} | {r['p99_ms']:.3f} | {r['recall_at_1']:.4f} | {_verdict(r)} |"
        )
    lines += [
        "",
        "Targets (issue): p99 < 20 ms at 100k and < 100 ms at 1M on 2 cores, recall@1 >= 0.99 against exact search.",
    ]
    if command:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def plot_latency(result: dict[str, Any], out_png: str | Path) -> Path:
    """p50 (dashed) and p99 (solid) latency against gallery size, log-log, with the issue's targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    kinds = list(dict.fromkeys(r["index"] for r in result["results"]))
    for i, kind in enumerate(kinds):
        rs = sorted((r for r in result["results"] if r["index"] == kind), key=lambda r: r["size"])
        color = f"C{i}"
        ax.plot([r["size"] for r in rs], [r["p99_ms"] for r in rs], "o-", color=color, label=f"{kind} p99")
        ax.plot([r["size"] for r in rs], [r["p50_ms"] for r in rs], "s--", color=color, alpha=0.6, label=f"{kind} p50")
    for size, target in P99_TARGET_MS.items():
        ax.plot([size], [target], marker="v", color="red", linestyle="none", markersize=9)
    ax.plot([], [], marker="v", color="red", linestyle="none", label="p99 target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gallery size (vectors)")
    ax.set_ylabel("query latency (ms, one query)")
    c = result["config"]
    ax.set_title(f"Search latency vs gallery size (dim {c['dim']}, {c['threads'] or 'default'} thread(s))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def write_report(result: dict[str, Any], out: str | Path, command: str | None = None) -> dict[str, Any]:
    """Write ``search.md``, ``search.json`` and ``search.png`` into ``out``."""
    out = report_dir(out)
    if command:
        result = {**result, "command": command}
    png = plot_latency(result, out / "search.png")
    return save_report(out, markdown=to_markdown(result, command), data=result, markdown_name="search.md",
                       json_name="search.json", figures=[png])
