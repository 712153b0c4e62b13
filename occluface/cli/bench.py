"""The `occluface bench` group and its accuracy and speed benchmarks (baseline, accuracy, openset, rollcall, search,
detect, speed, papers, maskcls, maskcls-checks); each writes a Markdown table, JSON and plots, then prints the
table. The service benchmarks (fuzz, load, sync, watch) are in :mod:`occluface.cli.bench_service`.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from occluface.cli.common import (App, MaskSplit, console, data_option, fail, int_list, mask_split_options,
                                  set_threads, show_report, str_list)
from occluface.errors import OccluFaceError
from occluface.settings import DEFAULT_DETECTOR

bench_app = App(help="Benchmarks: each writes a Markdown table, JSON and plots.", no_args_is_help=True)


@bench_app.command("baseline")
def bench_baseline_command(
    data: Path = data_option("Folder with one sub-folder of tight face crops per identity, Yale B layout", "yaleb"),
    identities: int | None = typer.Option(None, "--identities", min=2, help="Use only the first N identities (sorted); default all."),
    probes_per_identity: int = typer.Option(20, "--probes-per-identity", min=1, help="Seeded sample of probe images per identity."),
    occlusion: str = typer.Option(",".join(("plain", "surgical", "kn95", "cloth", "dust", "lowlight")), "--occlusion", help="Comma-separated occlusion kinds; clean probes are always measured."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the probe sample and the occlusions."),
    box_padding: float = typer.Option(0.0, "--box-padding", help="Grow the whole-image face box by this fraction per side."),
    out: Path = typer.Option(Path("reports/baseline"), "--out", help="Folder for baseline.md, baseline.json and baseline.png."),
) -> None:
    """Rank-1 of dlib's ResNet (one clean frontal-light gallery image per identity) on clean vs occluded probes."""
    from occluface.bench.baseline import run_baseline, write_report

    kinds = str_list(occlusion)
    result = run_baseline(
        data,
        identities=identities,
        probes_per_identity=probes_per_identity,
        occlusions=kinds,
        seed=seed,
        box_padding=box_padding,
    )
    paths = write_report(result, out)
    show_report(paths)


@bench_app.command("accuracy")
def bench_accuracy_command(
    data: Path = data_option("Data folder with yaleb/ and lfw_dev/, or the bundled data/ with lfw/"),
    models: str = typer.Option("dlib_resnet,occluface_resnet", "--models", help="Comma-separated models; the first is the baseline. name@file uses another fine-tuned delta file; 'routed' is the mask-routed matcher (dlib for bare faces, occluface_resnet + masked templates for masked ones)."),
    occlusion: str = typer.Option("plain,surgical,kn95,dust,lowlight", "--occlusion", help="Comma-separated occlusion kinds; clean probes are always measured."),
    yaleb_holdout: int = typer.Option(10, "--yaleb-holdout", min=0, help="Held-out Yale B identities (same seeded set as occluface finetune)."),
    lfw_holdout: int = typer.Option(300, "--lfw-holdout", min=0, help="Held-out LFW identities (same seeded set as occluface finetune)."),
    probes_per_identity: int = typer.Option(20, "--probes-per-identity", min=1, help="Yale B probes per identity (seeded sample)."),
    lfw_people: int | None = typer.Option(None, "--lfw-people", min=2, help="Score only the first N of the LFW people (quick runs)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the held-out split, probe sample and occlusions."),
    identities: str = typer.Option("heldout", "--identities", help="heldout (the test) or training: as many of the fine-tuning's own training people, a ceiling check that is never a result."),
    exact_dlib: bool = typer.Option(False, "--exact-dlib", help="Run dlib_resnet with dlib's own code (slow) instead of its exact PyTorch port."),
    flip: bool = typer.Option(False, "--flip", help="Test-time augmentation: average each chip's embedding with its mirror image's (every model; 2x the work)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    out: Path = typer.Option(Path("reports/accuracy"), "--out", help="Folder for report.md, metrics.json and the plots."),
    cache: Path | None = typer.Option(None, "--cache", help="Keep the probes' dlib chips here, so re-running with other models skips the occlusion + chip work."),
) -> None:
    """dlib baseline vs occluface models on held-out identities, clean and occluded: rank-1, AUC, TAR@FAR=1e-3."""
    set_threads(threads)
    from occluface.bench.accuracy import run_accuracy, write_report

    names = str_list(models)
    kinds = str_list(occlusion)
    result = run_accuracy(
        data, models=names, occlusions=kinds, yaleb_holdout=yaleb_holdout, lfw_holdout=lfw_holdout,
        probes_per_identity=probes_per_identity, lfw_people=lfw_people, seed=seed, exact_dlib=exact_dlib,
        device=device, cache=cache, identities=identities, flip=flip,
    )
    paths = write_report(result, out)
    show_report(paths)


@bench_app.command("openset")
def bench_openset_command(
    data: Path = data_option("Data folder with lfw_dev/, yaleb/ and lfw_single/ (distractors)"),
    matchers: str = typer.Option("dlib_resnet,routed,sface,sface-erase", "--matchers", help="Comma-separated matchers, each run as the product runs it."),
    split: str = typer.Option("heldout", "--split", help="heldout (the test: held-out people, held-out mask styles), tuning (people and styles that thresholds may be chosen on) fresh (LFW people outside the held-out set that no tuning run or calibration drew, held-out styles: a second test once the held-out one has been scored) or fresh2 (the fresh pool's people the first fresh draw of 300 left)."),
    styles: str = typer.Option("", "--styles", help="Comma-separated mask styles of that split (default: all of them)."),
    lfw_people: int = typer.Option(300, "--lfw-people", min=0, help="LFW people (held-out: the first N of the 300 held-out ones)."),
    yaleb_people: int = typer.Option(10, "--yaleb-people", min=0, help="Yale B people (held-out: at most 10)."),
    probes_per_person: int = typer.Option(8, "--probes-per-person", min=1, help="Probe photos per person (Yale B: seeded sample)."),
    gallery_sizes: str = typer.Option("100,1000,5000", "--gallery-sizes", help="Open-set gallery sizes (enrolled people + distractors)."),
    same_mask_people: int = typer.Option(100, "--same-mask-people", min=0, help="People in the same-mask impostor check."),
    erase_rows: str = typer.Option("", "--erase-rows", help="Tuning only: chip rows to try erasing from (e.g. 56,64,72)."),
    erase_from: int | None = typer.Option(None, "--calibrate-erase-from", help="Tuning only: calibrate sface-erase's masked path for this erase row (one of --erase-rows)."),
    write_thresholds: Path | None = typer.Option(None, "--write-thresholds", help="Tuning only: write the SFace matchers' calibrated thresholds (named wrong <= 0.1 % of probes) into this folder."),
    seed: int = typer.Option(0, "--seed", min=0),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (one per core)."),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Face detector (the service's default: auto-roi)."),
    out: Path = typer.Option(Path("reports/openset"), "--out"),
    cache: Path | None = typer.Option(None, "--cache", help="Keep every photo's vectors here: a re-run only re-scores."),
) -> None:
    """Matchers side by side, open set: rank-1, named-right and NAMED-WRONG rates at 100/1,000/5,000-person
    galleries, per mask style, and the same-mask impostor check."""
    from occluface.bench.openset import calibrate, run_openset, write_report
    from occluface.recognition.thresholds import Thresholds, save_thresholds

    def ints(text: str) -> list[int]:
        return int_list(text, f"expected comma-separated whole numbers, got {text!r}")

    result = run_openset(
        data, matchers=str_list(matchers), split=split, styles=str_list(styles) or None, lfw_people=lfw_people,
        yaleb_people=yaleb_people, probes_per_person=probes_per_person, gallery_sizes=ints(gallery_sizes),
        same_mask_people=same_mask_people, erase_rows=ints(erase_rows), seed=seed, workers=workers, cache=cache,
        keep_raw=write_thresholds is not None, detector=detector,
    )
    if write_thresholds is not None:
        for model_id, th in calibrate(result, erase_from=erase_from).items():
            path = save_thresholds(Thresholds.from_dict(th), Path(write_thresholds) / f"{model_id}.json")
            console.print(f"{model_id}: threshold {th['identify']:.4f} -> {path}")
        result.pop("_raw", None)
    paths = write_report(result, out)
    show_report(paths)


@bench_app.command("rollcall")
def bench_rollcall_command(
    data: Path = data_option("Folder with one sub-folder of photos per identity, LFW layout", "lfw_dev"),
    roster_size: int = typer.Option(20, "--roster-size", min=2, help="Students on the class roster (seeded choice)."),
    faces_per_image: int = typer.Option(8, "--faces-per-image", min=1, help="Faces in each composed group photo (students + strangers)."),
    images: int = typer.Option(50, "--images", min=1, help="Group photos to compose (each scored clean and masked)."),
    strangers: int = typer.Option(2, "--strangers", min=0, help="Faces per photo of people not on the roster."),
    masked_fraction: float = typer.Option(0.5, "--masked-fraction", min=0.0, max=1.0, help="Share of faces masked in the masked copy of each photo."),
    mask_kind: str = typer.Option("surgical", "--mask-kind", help="Occlusion kind for masked faces (occluface.data.occlusion: surgical, mask, ...)."),
    embedder: str = typer.Option("dlib_resnet", "--embedder", help="Registered model that embeds the faces."),
    min_images: int = typer.Option(4, "--min-images", min=2, help="Only identities with at least this many photos."),
    enrol_images: int = typer.Option(3, "--enrol-images", min=1, help="Enrolment photos per student (their first ones; one is always held out)."),
    threshold: float = typer.Option(0.6, "--threshold", min=0.0, max=0.999, help="Confidence a face needs to be marked present (paper: 0.6)."),
    confidence: str = typer.Option("svm,softmax", "--confidence", help="Comma-separated confidence models: svm (calibrated), softmax."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for roster, photos, masks and layout."),
    out: Path = typer.Option(Path("reports/rollcall"), "--out", help="Folder for rollcall.md, rollcall.json and the PNGs."),
) -> None:
    """Classroom roll-call: ER/UR of greedy per-face argmax vs global one-to-one assignment, clean vs masked."""
    from occluface.bench.rollcall import run_rollcall_bench, write_report

    models = str_list(confidence, lower=True)
    if masked_fraction > 0:
        from occluface.data.occlusion import KINDS

        if mask_kind not in KINDS:
            fail(f"unknown --mask-kind {mask_kind!r}; known: {', '.join(KINDS)}")
    command = "occluface bench rollcall " + " ".join(sys.argv[sys.argv.index("rollcall") + 1 :]) if "rollcall" in sys.argv else None
    result = run_rollcall_bench(
        data, roster_size=roster_size, faces_per_image=faces_per_image, images=images, strangers=strangers,
        masked_fraction=masked_fraction, mask_kind=mask_kind, embedder=embedder, min_images=min_images,
        enrol_images=enrol_images, threshold=threshold, confidences=models, seed=seed,
    )
    paths = write_report(result, out, command=command)
    show_report(paths)


@bench_app.command("search")
def bench_search_command(
    sizes: str = typer.Option("10000,100000,1000000", "--sizes", help="Comma-separated gallery sizes (synthetic vectors)."),
    dim: int = typer.Option(128, "--dim", min=2, help="Embedding dimension (128: dlib baseline, 512: trained backbones)."),
    queries: int = typer.Option(1000, "--queries", min=1, help="Queries per size, timed one at a time."),
    k: int = typer.Option(5, "--k", min=1, help="Neighbours returned per query."),
    approx: str = typer.Option("ivf", "--approx", help="Approximate FAISS indexes to include: ivf, hnsw or ivf,hnsw (HNSW builds slowly at 1M)."),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads per query for numpy and FAISS (0 = library default). 1 is fastest for one-at-a-time queries on a busy 2-core machine: OpenMP spin-waits cost more than they gain."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the synthetic gallery and queries."),
    query_noise: float = typer.Option(1.0, "--query-noise", min=0.0, help="Noise norm added to each query's source row (1.0: cosine ~0.71, like an occluded face)."),
    out: Path = typer.Option(Path("reports/search"), "--out", help="Folder for search.md, search.json and search.png."),
) -> None:
    """Query latency (p50/p95/p99), build time, memory and recall@1 of exact numpy, FAISS flat and FAISS approximate search."""
    import shlex

    from occluface.bench.search import run_search_bench, write_report

    size_list = int_list(sizes, f"--sizes must be comma-separated integers, got {sizes!r}", underscores=True)
    if not size_list or min(size_list) < 1:
        fail(f"--sizes needs at least one positive size, got {sizes!r}")
    kinds = str_list(approx, lower=True)
    if any(a not in ("ivf", "hnsw") for a in kinds):
        fail(f"--approx takes ivf and/or hnsw, got {approx!r}")
    result = run_search_bench(
        size_list, dim=dim, n_queries=queries, k=k, seed=seed, approx=kinds, threads=threads or None, query_noise=query_noise
    )
    command = (
        f"occluface bench search --sizes {','.join(map(str, size_list))} --dim {dim} --queries {queries} --k {k} "
        f"--approx {','.join(kinds)} --threads {threads} --seed {seed} --query-noise {query_noise:g} --out {shlex.quote(str(out))}"
    )
    paths = write_report(result, out, command=command)
    show_report(paths)


@bench_app.command("detect")
def bench_detect_command(
    data: Path = data_option("Shared data folder with yaleb/, mask_cls/, rwmfd_masked/"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images per subset (default: 200 Yale B, 150 per mask_cls class, 150 RWMFD)."),
    detectors: str = typer.Option("hog,cnn,centerface,mtcnn,auto", "--detectors", help="Comma-separated detector names."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the image samples and synthetic masks."),
    out: Path = typer.Option(Path("reports/detection"), "--out", help="Folder for detection.md, detection.json, detection.png."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Parallel single-threaded worker processes."),
) -> None:
    """Detection rate of each face detector on clean, synthetically masked and real masked faces."""
    from occluface.bench.detection import run_detection_benchmark

    names = str_list(detectors, lower=True)
    if not names:
        fail("--detectors is empty")
    run_detection_benchmark(
        data, out, names,
        n_yaleb=min(200, limit or 200), n_mask_cls=min(150, limit or 150), n_rwmfd=min(150, limit or 150), seed=seed,
        workers=workers,
    )
    show_report([out / "detection.md", out / "detection.json", out / "detection.png"])


@bench_app.command("speed")
def bench_speed_command(
    faces: int = typer.Option(64, "--faces", min=1, help="Number of face chips each backend embeds per timed pass."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for every backend (torch, ONNX Runtime, BLAS)."),
    batch: int = typer.Option(32, "--batch", min=1, help="Batch size of the batched backends."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed passes per backend (the median is reported)."),
    backends: str | None = typer.Option(None, "--backends", help="Comma-separated backend ids (default: dlib-single, dlib-batch, port-eager, port-fast, port-onnx, plus port-compile with --compile and CUDA ones when a GPU is present); pipeline:MATCHER or pipeline:MATCHER@DETECTOR times the whole service pipeline on photos, e.g. pipeline:sface-erase@auto-224."),
    model: list[str] = typer.Option([], "--model", help="Also time this registry model (untrained weights; repeatable)."),
    checkpoint: list[Path] = typer.Option([], "--checkpoint", help="Also time this fine-tuned checkpoint (repeatable)."),
    use_compile: bool = typer.Option(False, "--compile/--no-compile", help="Add torch.compile to the default backends (its compile takes minutes on 2 cores and did not beat eager here)."),
    data: Path | None = typer.Option(None, "--data", help="Folder with samples/, lfw/, yaleb/ images to take the face chips from (default: the bundled data/)."),
    out: Path = typer.Option(Path("reports/speed"), "--out", help="Folder for speed.md, speed.json and speed.png."),
) -> None:
    """Faces/s and peak memory: dlib vs the PyTorch port (eager, channels-last, compile, ONNX Runtime, CUDA)."""
    from occluface.bench.speed import default_backends, run_speed, write_report

    names = str_list(backends) if backends else default_backends(compile=use_compile)
    names += [f"model:{m}" for m in model] + [f"checkpoint:{c.resolve()}" for c in checkpoint]
    missing = [str(c) for c in checkpoint if not c.is_file()]
    if missing:
        fail(f"checkpoint file(s) not found: {', '.join(missing)}")
    result = run_speed(
        faces=faces, threads=threads, batch=batch, repeats=repeats, backends=names,
        **({"data_dir": data} if data is not None else {}),
        progress=lambda b: console.print(f"timing {b} ...", highlight=False),
    )
    paths = write_report(result, out)
    show_report(paths)


@bench_app.command("papers")
def bench_papers_command(
    data: Path = data_option("Dataset folder, one sub-folder of face crops per identity, Yale B layout", "yaleb"),
    scale: str = typer.Option("smoke", "--scale", help="smoke: few people, small inputs, minutes on one CPU core; decide: all people, 3 seeds, paired tests, hours on 2 cores; real: the papers' networks and settings (for a GPU)."),
    mask_data: Path | None = typer.Option(None, "--mask-data", help="Folder for the mask experiment (default: --data at smoke scale, ../shared/data/lfw_dev at decide and real)."),
    synth_data: Path | None = typer.Option(None, "--synth-data", help="Shared data folder (mask_cls/, rwmfd_masked/, lfw_dev/, mask_textures/) for the synthesis comparison (default: the shared data folder)."),
    experiments: str | None = typer.Option(None, "--experiments", help="Comma-separated: coal (ResNet vs CBAM ResNet on dust), mask (IResNet vs ResSaNet, masked vs unmasked), synth (Py-WGAN-div vs GAN and WGAN; decide scale). Default: coal,mask (+synth at decide)."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Training iterations per model (overrides the scale preset)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Train for this many epochs instead of --iterations."),
    input_size: int | None = typer.Option(None, "--input-size", min=16, help="Square input side in pixels (overrides the preset)."),
    max_identities: int | None = typer.Option(None, "--max-identities", min=2, help="Use only the first N identities (sorted)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=2, help="Images per iteration."),
    eval_every: int | None = typer.Option(None, "--eval-every", min=1, help="Iterations between held-out evaluations (curve points)."),
    lr: float | None = typer.Option(None, "--lr", help="Initial SGD learning rate for both experiments (default: the preset's)."),
    margin_scale: float | None = typer.Option(None, "--margin-scale", help="ArcFace scale s of the mask experiment (default 64)."),
    margin: float | None = typer.Option(None, "--margin", help="ArcFace margin m of the mask experiment (default 0.5)."),
    coal_models: str | None = typer.Option(None, "--coal-models", help="Two comma-separated registry names (default smoke: resnet18,cbam_resnet18; real: resnet50,cbam_resnet50)."),
    mask_models: str | None = typer.Option(None, "--mask-models", help="Two comma-separated registry names (default: iresnet50,ressanet50)."),
    coal_occlusion: str | None = typer.Option(None, "--coal-occlusion", help="Occlusion kinds applied in turn for the coal-mine scene, e.g. dust or dust,lowlight (default: dust)."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="One seed for occlusions, split, initialisation and data order (default: the scale's seeds)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds, each a full run of both models (default: smoke 0; decide 0,1,2)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Data-loading worker processes."),
    work: Path = typer.Option(Path("runs/papers"), "--work", help="Folder for the occlusion caches and training runs (a rerun resumes them)."),
    out: Path = typer.Option(Path("reports/papers"), "--out", help="Folder for papers.md, papers.json and the PNG figures."),
    reuse: Path | None = typer.Option(None, "--reuse", help="An earlier report (papers.json or its folder) at the same scale: the comparisons this call does not run are taken from it."),
) -> None:
    """The papers' comparisons re-run here: ResNet vs CBAM ResNet on dust, IResNet vs ResSaNet on masks, Py-WGAN-div
    vs GAN and WGAN placing masks (decide scale); seeds, paired tests and a verdict each."""
    import shlex

    set_threads(threads)
    from occluface.bench.papers import reuse_report, run_papers, write_report

    def names(text: str | None) -> list[str] | None:
        return None if text is None else str_list(text)

    overrides = {
        "iterations": iterations, "epochs": epochs, "input_size": input_size, "max_identities": max_identities,
        "batch_size": batch_size, "eval_every": eval_every, "lr": lr, "margin_scale": margin_scale,
        "margin": margin, "coal_models": names(coal_models), "mask_models": names(mask_models),
        "coal_occlusion": names(coal_occlusion),
    }
    parts = ["occluface", "bench", "papers", "--scale", scale, "--data", str(data)]
    parts += ["--mask-data", str(mask_data)] if mask_data is not None else []
    experiments = experiments or ("coal,mask,synth" if scale.lower() == "decide" else "coal,mask")
    parts += ["--experiments", experiments] if experiments != "coal,mask" else []
    for opt, value in overrides.items():
        if value is not None:
            parts += [f"--{opt.replace('_', '-')}", ",".join(value) if isinstance(value, list) else str(value)]
    try:
        seed_list = None if seeds is None else [int(x) for x in str_list(seeds)]
    except ValueError:
        raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    parts += (["--seed", str(seed)] if seed is not None else []) + (["--seeds", seeds] if seeds else [])
    parts += (["--device", device] if device else []) + (["--threads", str(threads)] if threads else [])
    parts += ["--work", str(work), "--out", str(out)]
    if reuse is not None:  # a bad earlier report fails now, not after hours of training
        parts += ["--reuse", str(reuse)]
        reuse_report({"scale": scale.lower(), "experiments": []}, reuse)
    result = run_papers(
        data, work, scale=scale.lower(), experiments=names(experiments) or [], seed=seed, seeds=seed_list,
        mask_data=mask_data, synth_data=synth_data, device=device,
        num_workers=workers, progress=True, log=lambda m: console.print(m, highlight=False), **overrides,
    )
    result = reuse_report(result, reuse) if reuse is not None else result
    paths = write_report(result, out, command=shlex.join(parts))
    show_report(paths)


@bench_app.command("maskcls")
@mask_split_options
def bench_maskcls_command(
    split: MaskSplit,
    weights: Path | None = typer.Option(None, "--weights", help="Weights to score (default: the shipped ones)."),
    out: Path = typer.Option(Path("reports/maskcls"), "--out", help="Folder for report.md, metrics.json, confusion PNGs."),
) -> None:
    """Confusion matrix, precision/recall/F1/accuracy on the held-out split and accuracy on never-seen sets."""
    from occluface.bench.maskcheck import evaluate
    from occluface.maskcheck.model import load_weights

    with console.status("building / loading the cropped-face cache..."):
        ds = split.build(progress=False)
    evaluate(load_weights(weights), ds, out)
    show_report([out / "report.md", out / "metrics.json", out / "confusion.png"])


@bench_app.command("maskcls-checks")
def bench_maskcls_checks_command(
    weights: list[Path] = typer.Option(None, "--weights", help="Weight files to check (repeatable; default: the shipped classifier and the routing classifier)."),
    data: Path = data_option("Shared data folder: its yaleb/ for the harsh-light check, skipped when missing"),
    threads: int = typer.Option(1, "--threads", min=0, help="CPU threads for torch (0 = torch's default)."),
    out: Path = typer.Option(Path("reports/maskcls-checks"), "--out", help="Folder for report.md and metrics.json."),
) -> None:
    """Grad-CAM share on synthetic masks (bundled faces) and bare harsh-light Yale B faces called masked."""
    import json

    set_threads(threads)
    from occluface.recognition.routed import ROUTING_CLASSIFIER
    from occluface.bench.maskcheck_checks import gradcam_on_mask, harsh_light, render
    from occluface.maskcheck.data import yaleb_training_people
    from occluface.maskcheck.model import DEFAULT_WEIGHTS, load_weights

    rows = []
    try:
        for w in weights or [DEFAULT_WEIGHTS, ROUTING_CLASSIFIER]:
            model = load_weights(w)
            row = {"weights": Path(w).name, "gradcam": gradcam_on_mask(model)}
            if (data / "yaleb").is_dir() and yaleb_training_people(data)[1]:  # else: no Yale B people to check
                row["harsh_light"] = harsh_light(model, data)
            rows.append(row)
        out.mkdir(parents=True, exist_ok=True)
    except (OccluFaceError, OSError) as exc:
        fail(str(exc))
    (out / "metrics.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "report.md").write_text(render(rows))
    show_report([out / "report.md", out / "metrics.json"])
