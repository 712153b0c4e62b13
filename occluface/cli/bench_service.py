"""The service benchmarks of `occluface bench`: fuzz, load, sync and watch (the product under attack, under
load, across gates and on a camera), registered on the one ``bench`` group of :mod:`occluface.cli.bench`.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from occluface.cli.bench import bench_app
from occluface.cli.common import (DetectorOpt, ModelOpt, console, err_console, fail, int_list, report_files, show_report,
                                  str_list)


@bench_app.command("fuzz")
def bench_fuzz_command(
    target: list[str] = typer.Option(["decode", "api"], "--target", "-t",
                                     help="decode (load_rgb on bytes) and/or api (uploads via TestClient)."),
    engine: str = typer.Option("atheris", "--engine", help="atheris (coverage-guided) or random (seeded mutations)."),
    runs: int = typer.Option(None, "--runs", min=1, help="Stop after this many inputs per target."),
    seconds: float = typer.Option(None, "--seconds", min=1, help="Stop after this many seconds per target."),
    detector: str = DetectorOpt,
    seed: int = typer.Option(0, "--seed", help="Fuzzer seed."),
    instrument: bool = typer.Option(True, "--instrument/--no-instrument",
                                    help="atheris: coverage-instrument Pillow and the API stack (slower start)."),
    out: Path = typer.Option(Path("reports/fuzz"), "--out", help="Report folder (fuzz.md, fuzz.json, crash inputs)."),
) -> None:
    """Fuzz image decoding and the API upload path for a bounded time; exit 1 if anything crashed."""
    import shlex

    from occluface.bench.fuzz import run_fuzz, write_report

    if runs is None and seconds is None:
        fail("give a bound: --runs N and/or --seconds S")
    results = []
    for t in target:
        console.print(f"fuzzing {t} with {engine} ...", highlight=False)
        r = run_fuzz(t, engine=engine, runs=runs, seconds=seconds, artifacts=out, seed=seed, detector=detector,
                     instrument=instrument)
        parts = ["occluface", "bench", "fuzz", *[a for x in target for a in ("-t", x)], "--engine", engine,
                 "--detector", detector, "--seed", str(seed), "--out", str(out)]
        parts += [] if instrument else ["--no-instrument"]
        parts += (["--runs", str(runs)] if runs else []) + (["--seconds", f"{seconds:g}"] if seconds else [])
        r.command = " ".join(shlex.quote(p) for p in parts)
        results.append(r)
        console.print(f"{t}: {r.inputs} inputs in {r.seconds} s, {len(r.crashes)} crash(es); {r.outcomes}",
                      highlight=False)
    written = report_files(write_report(results, out))
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if any(r.crashes for r in results):
        for r in results:
            for c in r.crashes:
                err_console.print(f"[bold red]crash[/] in {r.target}: input {c['input'] or '-'}\n{c['error']}",
                                  highlight=False, markup=False)
        raise typer.Exit(1)


@bench_app.command("load")
def bench_load_command(
    requests: int = typer.Option(None, "--requests", "-n", min=1, help="Identify requests to send (one run)."),
    concurrency: str = typer.Option("8", "--concurrency", "-c", help="Requests in flight at once; a list (1,4,8,16) runs each."),
    seconds: float = typer.Option(None, "--seconds", min=1, help="Length of each run (or a cap on -n)."),
    workers: str = typer.Option("1", "--workers", help="Server processes (serve --workers); a list (1,2) runs each."),
    backends: str = typer.Option("sqlite", "--gallery", help="Gallery backends: sqlite, postgresql (a throwaway local server) or both."),
    detector: str = DetectorOpt,
    model: str = ModelOpt,
    image: Path = typer.Option(None, "--image", help="Probe photo (default: a one-face 640x480 photo made from a bundled sample)."),
    out: Path = typer.Option(Path("reports/load"), "--out", help="Report folder (load.md, load.json, load.png)."),
) -> None:
    """Start `occluface serve` on 127.0.0.1, enrol two people, fire concurrent identify requests, report.

    With lists (or --gallery postgresql) it runs every combination for --seconds each and also checks two
    separate servers on one gallery: a person enrolled through one, identified through the other."""
    import shlex

    from occluface.bench.loadtest import run_load, run_load_matrix, write_matrix_report, write_report

    levels = int_list(concurrency, f"--concurrency must be comma-separated integers, got {concurrency!r}")
    procs = int_list(workers, f"--workers must be comma-separated integers, got {workers!r}")
    kinds = str_list(backends, lower=True)
    parts = ["occluface", "bench", "load", "-c", concurrency, "--workers", workers, "--gallery", backends,
             "--detector", detector, "--model", model, "--out", str(out)]
    parts += (["-n", str(requests)] if requests else []) + (["--seconds", f"{seconds:g}"] if seconds else [])
    parts += ["--image", str(image)] if image else []
    command = " ".join(shlex.quote(p) for p in parts)
    if len(levels) == 1 and len(procs) == 1 and kinds == ["sqlite"]:
        if requests is None and seconds is None:
            requests = 200
        result = run_load(requests=requests, seconds=seconds, concurrency=levels[0], detector=detector,
                          model=model, image=image, workers=procs[0])
        result.command = command
        show_report(write_report(result, out))
        if result.errors or not result.health_after_ok:
            raise typer.Exit(1)
        return
    if seconds is None:
        fail("a run over several settings needs --seconds (the length of each run)")
    matrix = run_load_matrix(concurrency=levels, workers=procs, backends=kinds, seconds=seconds, detector=detector,
                             model=model, image=image)
    show_report(write_matrix_report(matrix, out, command=command))
    if any(r["errors"] for r in matrix["runs"]) or not all(c["identified"] for c in matrix["cross_server"].values()):
        raise typer.Exit(1)


@bench_app.command("sync")
def bench_sync_command(
    rows: int = typer.Option(1_000_000, "--rows", min=100, help="Enrolled vectors (synthetic, 4 per person)."),
    dim: int = typer.Option(258, "--dim", min=2, help="Embedding size (258: the default sface-erase matcher's)."),
    gallery: str = typer.Option(None, "--gallery", help="An empty postgresql:// database to fill (default: a temporary SQLite file)."),
    queries: int = typer.Option(1000, "--queries", min=10, help="Searches timed one at a time."),
    enrolments: int = typer.Option(20, "--enrolments", min=1, help="New enrolments timed until searchable."),
    seed: int = typer.Option(0, "--seed", min=0),
    out: Path = typer.Option(Path("reports/sync"), "--out", help="Report folder (sync.md, sync.json, sync.png)."),
) -> None:
    """How soon a new enrolment is searchable from another connection, and search p99, in a large gallery."""
    import shlex

    from occluface.bench.gallery_sync import run_gallery_sync_bench, write_report

    result = run_gallery_sync_bench(rows, dim=dim, gallery=gallery, queries=queries, enrolments=enrolments, seed=seed)
    parts = ["occluface", "bench", "sync", "--rows", str(rows), "--dim", str(dim), "--queries", str(queries),
             "--enrolments", str(enrolments), "--seed", str(seed), "--out", str(out)]
    show_report(write_report(result, out, command=shlex.join(parts + (["--gallery", "URL"] if gallery else []))))
    if not result["meets_targets"]:
        raise typer.Exit(1)


@bench_app.command("watch")
def bench_watch_command(
    seconds: float = typer.Option(60.0, "--seconds", min=5.0, help="Length of the generated video."),
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    every_frame: bool = typer.Option(False, "--every-frame", help="Process every frame instead of playing in real time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (no report files)."),
    out: Path = typer.Option(Path("reports/watch"), "--out", help="Report folder (watch.md, watch.json)."),
) -> None:
    """Generate a walk-past video (8 enrolled people, half masked, 2 strangers), watch it, score the check-ins."""
    import json
    import shlex

    from occluface.bench.watch import run_watch_bench, write_report

    result = run_watch_bench(seconds=seconds, model=model, detector=detector, realtime=not every_frame)
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "events"}))
        return
    parts = ["occluface", "bench", "watch", "--seconds", f"{seconds:g}", "--model", model, "--detector", detector,
             "--out", str(out)] + (["--every-frame"] if every_frame else [])
    show_report(write_report(result, out, command=shlex.join(parts)))
