"""The operator's commands: enrol, identify, verify, roll-call, the gallery, the API server and its keys,
mask check, alignment, the model list and the demo.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from occluface.cli.common import (
    App,
    DetectorOpt, GalleryOpt, JsonOpt, ModelOpt, RecognizerOptions, app, console, err_console, fail, print_json,
    recognizer_options,
)
from occluface.settings import DEFAULT_DETECTOR

gallery_app = App(help="Inspect and edit the enrolment gallery.", no_args_is_help=True)


def _expand_images(paths: list[Path]) -> list[Path]:
    from occluface.data.images import is_image_file

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and is_image_file(q)))
        else:
            out.append(p)
    return out


# ----------------------------------------------------------------------------- recognition (gallery)
@app.command("enroll")
@recognizer_options
def enroll_command(
    recognizer: RecognizerOptions,
    name: str = typer.Argument(..., help="Person's name, or a folder-per-identity roster with --roster."),
    images: list[Path] = typer.Argument(None, help="Photos of the person (files or folders)."),
    roster: bool = typer.Option(False, "--roster", help="NAME is a folder with one sub-folder of photos per person."),
    force: bool = typer.Option(False, "--force", help="Enrol even if a face already matches another enrolled person."),
    as_json: bool = JsonOpt,
) -> None:
    """Enrol a person (or a whole roster) from photos; all-or-nothing per person. A face that already matches
    someone else enrolled is refused with their name (unless --force)."""
    from rich.progress import track

    rec = recognizer.build()
    if roster:
        root = Path(name)
        if not root.is_dir():
            fail(f"{root}: roster folder not found")
        people = sorted(p for p in root.iterdir() if p.is_dir())
        if not people:
            fail(f"{root}: no person folders inside")
        jobs = [(p.name, _expand_images([p])) for p in people]
    else:
        if not images:
            fail("give at least one photo of the person (or use --roster FOLDER)")
        jobs = [(name, _expand_images(images))]
    results = []
    from occluface.cli.admin import cli_actor

    for person, files in track(jobs, description="enrolling", console=err_console, disable=len(jobs) < 2):
        results.append(rec.enroll(person, files, force=force))
        rec.gallery.audit("enroll", actor=cli_actor(), names=[person])
    if as_json:
        print_json(results)
        return
    from rich.table import Table

    table = Table(title=f"Enrolled into {rec.gallery.location}")
    for col in ("name", "images", "new"):
        table.add_column(col)
    for r in results:
        table.add_row(r["name"], str(r["images"]), "yes" if r["created"] else "added")
    console.print(table)


@app.command("identify")
@recognizer_options
def identify_command(
    recognizer: RecognizerOptions,
    image: Path = typer.Argument(..., help="Photo with one or more faces."),
    top: int = typer.Option(3, "--top", "-k", min=1, help="Candidates per face."),
    annotate_out: Path = typer.Option(None, "--annotate", help="Also write the photo with boxes and names here."),
    as_json: bool = JsonOpt,
) -> None:
    """Who is in the photo: every face with its best matches, "unknown" below the calibrated threshold."""
    rec = recognizer.build()
    from occluface.recognition.service import read_image

    img = read_image(image)
    matches = rec.identify(image, k=top, image=img)
    if annotate_out:
        _write_annotated(img, matches, annotate_out)
    if as_json:
        print_json({"image": str(image), "threshold": rec.thresholds.identify, "faces": [m.to_dict() for m in matches]})
        return
    _print_matches(str(image), matches, rec.thresholds.identify)


def _print_matches(title: str, matches, threshold: float) -> None:
    from rich.table import Table

    table = Table(title=f"{title}: {len(matches)} face(s), threshold {threshold:.3f}")
    for col in ("#", "box", "name", "similarity", "mask", "next best"):
        table.add_column(col)
    for i, m in enumerate(matches, 1):
        nxt = ", ".join(f"{n} {s:.2f}" for n, s in m.candidates[1:3])
        style = "green" if m.name else "red"
        mask = f"{m.mask['label']} {m.mask['prob']:.2f}" if m.mask else "-"
        table.add_row(str(i), " ".join(f"{v:.0f}" for v in m.box), f"[{style}]{m.label}[/]", f"{m.similarity:.3f}",
                      mask, nxt)
    console.print(table)


def _write_annotated(img, matches, out: Path) -> None:
    from PIL import Image

    from occluface.recognition.service import annotate

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(annotate(img, matches)).save(out)
    err_console.print(f"annotated image written to {out}")


@app.command("annotate")
@recognizer_options
def annotate_command(
    recognizer: RecognizerOptions,
    image: Path = typer.Argument(..., help="Photo to annotate."),
    out: Path = typer.Option(None, "--out", "-o", help="Output image (default: <image>.annotated.png)."),
) -> None:
    """Write the photo with a box and a name on every face."""
    from occluface.recognition.service import read_image

    rec = recognizer.build()
    img = read_image(image)
    matches = rec.identify(image, image=img)
    _write_annotated(img, matches, out or image.with_name(image.stem + ".annotated.png"))
    _print_matches(str(image), matches, rec.thresholds.identify)


@app.command("verify")
@recognizer_options
def verify_command(
    recognizer: RecognizerOptions,
    a: Path = typer.Argument(..., help="First photo."),
    b: Path = typer.Argument(..., help="Second photo."),
    as_json: bool = JsonOpt,
) -> None:
    """Are the main faces of two photos the same person? Exit status 0 = same, 1 = different."""
    rec = recognizer.build()
    v = rec.verify(a, b)
    if as_json:
        print_json(v.to_dict())
    else:
        verdict = "[green]same person[/]" if v.same else "[red]different people[/]"
        console.print(f"{verdict}: similarity {v.similarity:.3f} (threshold {v.threshold:.3f}, {rec.model_id})")
    raise typer.Exit(0 if v.same else 1)


@app.command("rollcall")
@recognizer_options
def rollcall_command(
    recognizer: RecognizerOptions,
    image: Path = typer.Argument(..., help="Group photo."),
    roster: Path = typer.Option(None, "--roster", "-r", help="Roster: a text file of names (one per line) already "
                                "enrolled, or a folder-per-identity of photos to enrol first. Default: everyone enrolled."),
    method: str = typer.Option("global", "--method", help="global (one face per identity) or greedy."),
    confidence: str = typer.Option("softmax", "--confidence", help="softmax (similarities) or svm (calibrated SVM)."),
    threshold: float = typer.Option(0.6, "--threshold", help="Minimum confidence to mark a person present."),
    as_json: bool = JsonOpt,
) -> None:
    """Roll-call: who of the roster is present in a group photo, who is absent, who needs a look."""
    rec = recognizer.build()
    names = None
    if roster is not None:
        if roster.is_dir():
            names = []
            for person in sorted(p for p in roster.iterdir() if p.is_dir()):
                if person.name not in rec.gallery:
                    rec.enroll(person.name, _expand_images([person]))
                names.append(person.name)
        else:
            from occluface.rollcall.roster import read_roster

            names = read_roster(roster)
    result = rec.rollcall(image, names, method=method, confidence=confidence, threshold=threshold)
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title=f"Roll-call {image} ({method}, threshold {threshold})")
    for col in ("face", "box", "identity", "confidence", "status"):
        table.add_column(col)
    for f in result["faces"]:
        box = " ".join(f"{v:.0f}" for v in (f.get("box") or []))
        table.add_row(str(f["index"] + 1), box, f["identity"] or f"({f['candidate']}?)", f"{f['confidence']:.2f}", f["status"])
    console.print(table)
    console.print(f"[green]present[/]: {', '.join(result['present']) or '-'}")
    console.print(f"[red]absent[/]: {', '.join(result['absent']) or '-'}")
    console.print(f"[yellow]unresolved[/]: {', '.join(result['unresolved']) or '-'}")


@gallery_app.command("list")
def gallery_list_command(gallery: str = GalleryOpt, as_json: bool = JsonOpt) -> None:
    """Everyone enrolled, with embeddings per model."""
    from occluface.gallery.connect import open_gallery

    store = open_gallery(gallery)
    subjects = store.list_subjects()
    if as_json:
        print_json([{"name": s.name, "embeddings": s.embeddings, "created": s.created} for s in subjects])
        return
    from rich.table import Table

    table = Table(title=f"{store.location}: {len(subjects)} subject(s)")
    for col in ("name", "embeddings", "enrolled"):
        table.add_column(col)
    for s in subjects:
        table.add_row(s.name, ", ".join(f"{m}: {n}" for m, n in s.embeddings.items()), s.created)
    console.print(table)


@gallery_app.command("remove")
def gallery_remove_command(
    names: list[str] = typer.Argument(..., help="Names to delete with every trace of their data."),
    gallery: str = GalleryOpt,
) -> None:
    """Delete people and all their data (embeddings, thumbnails) from the gallery."""
    from occluface.gallery.connect import open_gallery
    from occluface.gallery.store import UnknownSubjectError

    store = open_gallery(gallery)
    unknown = [n for n in names if n not in store]
    if unknown:
        raise UnknownSubjectError(", ".join(unknown), store.location)
    for n in names:
        store.remove_subject(n, strict=True)
        console.print(f"removed {n}")


# ----------------------------------------------------------------------------- the API server
@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    gallery: str = GalleryOpt,
    model: str = ModelOpt,
    detector: str = DetectorOpt,
    keys_file: Path = typer.Option(None, "--keys", help="API keys file (hashes) made by `occluface apikey`.",
                                   envvar="OCCLUFACE_KEYS"),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest accepted photo."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes (each loads the models once, "
                                "about 0.5 GB each; they share the gallery). One per core is the most that helps."),
    model_threads: int = typer.Option(0, "--model-threads", min=0, help="Threads running model work in each "
                                      "process (0 = one per core the process gets)."),
    preview_dir: Path = typer.Option(None, "--preview-dir", help="Where `occluface watch --preview-dir` keeps camera previews (shown on the Check-ins tab)."),
    kiosk: bool = typer.Option(False, "--kiosk", help="Serve identify, verify, roll-call, mask check and check-ins "
                               "without a key to clients on this machine (only with --host 127.0.0.1 or ::1)."),
    rate_limit: float = typer.Option(20.0, "--rate-limit", min=0.0, help="Identify calls a second per key (bursts "
                                     "of twice that; per client address twice as many); 0 turns rate limits off."),
    keep_days: float = typer.Option(None, "--keep-days", min=0.0, envvar="OCCLUFACE_KEEP_DAYS",
                                    help="Retention: purge audit lines and check-ins older than this many days, at "
                                    "start-up and every hour (default: keep until `occluface audit purge`)."),
) -> None:
    """REST API + web page (OpenAPI docs at /docs). Every call needs an API key (X-API-Key header) with the
    route's scope: identify, enrol or admin (`occluface apikey create`).

    Several gates or hosts share one gallery with `--gallery postgresql://user@host/db` (or OCCLUFACE_GALLERY);
    a gallery file serves the processes of one machine."""
    import json
    import os

    import uvicorn

    from occluface.api.app import SETTINGS_ENV, ApiSettings
    from occluface.api.deps import LOOPBACK
    from occluface.api.keys import open_keys

    if kiosk and host not in LOOPBACK:
        fail(f"--kiosk serves callers without a key, so it listens on this machine only: --host 127.0.0.1, not {host}")
    keys = open_keys(gallery, keys_file, [os.environ.get("OCCLUFACE_API_KEY", "")])
    if not keys:
        err_console.print("[yellow]no API keys configured: every call except the page and /api/health is refused "
                          f"{'(the kiosk serves identify calls from this machine)' if kiosk else ''}; "
                          "create one with `occluface apikey create NAME --scope identify`[/]")
    settings = ApiSettings(gallery=gallery, model=model, detector=detector, workers=workers, model_threads=model_threads,
                           max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    os.environ[SETTINGS_ENV] = json.dumps({
        "gallery": None if gallery is None else str(gallery), "model": model, "detector": detector,
        "keys_file": None if keys_file is None else str(keys_file), "workers": workers,
        "model_threads": model_threads, "max_upload_bytes": settings.max_upload_bytes,
        "preview_dir": None if preview_dir is None else str(preview_dir), "kiosk": kiosk, "rate_limit": rate_limit,
        "keep_days": keep_days,
    })
    err_console.print(f"{workers} process(es) x {settings.resolved_model_threads()} model thread(s), "
                      f"{settings.op_threads()} thread(s) per model call")
    uvicorn.run("occluface.api.app:serve_app", factory=True, host=host, port=port, workers=workers, log_level="info")


# ----------------------------------------------------------------------------- faces, models, demo
@app.command("align")
def align_command(
    src: Path = typer.Argument(..., help="Dataset folder: one sub-folder of images per identity."),
    dst: Path = typer.Argument(..., help="Output folder: same layout, one aligned PNG per image, plus skipped.csv."),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", "-d", help="Face detector: auto-roi (default), auto, centerface, mtcnn, cnn, hog, ..."),
    size: int = typer.Option(112, "--size", min=16, help="Side of the square aligned face (the ArcFace template is scaled)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Parallel worker processes."),
    retry_skipped: bool = typer.Option(False, "--retry-skipped", help="Try again the images listed in DST/skipped.csv."),
) -> None:
    """Detect and align every face image of a folder-per-identity dataset (resumable; skips are listed)."""
    from occluface.faces.align_folder import SKIPPED_CSV, align_folder

    summary = align_folder(src, dst, detector=detector, size=size, workers=workers, retry_skipped=retry_skipped)
    console.print(
        f"{summary.total} images: {summary.aligned} aligned, {summary.existing} already done, "
        f"{len(summary.skipped)} skipped (listed in {dst / SKIPPED_CSV})",
        highlight=False,
    )


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Where the demo writes its gallery and images."),
    train: bool = typer.Option(False, "--train", help="Run the training demo (plain vs CBAM ResNet) instead."),
    epochs: int = typer.Option(6, "--epochs", help="Epochs of the training demo."),
) -> None:
    """The main job on the bundled sample data (what `make demo` runs)."""
    from rich.table import Table

    if train:
        from occluface.cli.demo import run_training_demo

        results = run_training_demo(out / "training", epochs=epochs)
        table = Table(title="Training demo: bundled Yale B sample, split by image")
        for col in ("model", "test accuracy", "report"):
            table.add_column(col)
        for model, r in results.items():
            acc = r["metrics"].get("closed_set", {}).get("accuracy")
            table.add_row(model, "n/a" if acc is None else f"{acc:.1%}", str(Path(r["run"]) / "report" / "report.md"))
        console.print(table)
        console.print(f"curves of both models: {out / 'training' / 'comparison' / 'curves.png'}")
        return

    from occluface.cli.demo import run_recognition_demo

    with console.status("enrolling the bundled roster and identifying its probes..."):
        res = run_recognition_demo(out)
    label = {"routed": "routed matcher", "dlib_resnet": "dlib baseline", "sface": "SFace matcher",
             "sface-erase": "SFace matcher, masked faces erased below the eyes"}.get(res.get("model", ""), res.get("model", ""))
    table = Table(title=f"Identification of held-out photos ({label}, threshold {res['threshold']:.3f})")
    for col in ("person", "clean probe", "sim", "surgical mask", "sim"):
        table.add_column(col)
    for r in res["rows"]:
        cells = [r["person"]]
        for cond in ("clean", "masked"):
            c = r[cond]
            if c is None:
                cells += ["(not masked: no landmarks)", ""]
            else:
                style = "green" if c["name"] == r["person"] else "red"
                cells += [f"[{style}]{c['name']}[/]", f"{c['similarity']:.2f}"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"correctly named (above the threshold): clean {res['correct']['clean']}/{res['probes']}, "
        f"masked {res['correct']['masked']}/{res['masked_probes']}; named as someone else: clean "
        f"{res['wrong']['clean']}, masked {res['wrong']['masked']}"
    )
    roll = res["rollcall"]
    console.print(
        f"roll-call on a composed group photo of {len(res['group_truth'])} people (every other one masked): "
        f"{len(roll['faces'])} faces found; [green]present[/] {len(roll['present'])}: {', '.join(roll['present']) or '-'}; "
        f"[red]absent[/] {len(roll['absent'])}: {', '.join(roll['absent']) or '-'}; "
        f"[yellow]to check[/]: {', '.join(roll['unresolved']) or '-'}"
    )
    console.print(f"real photo data/samples/fr_two_people_obama_biden.jpg: {', '.join(res['real_photo'])}")
    console.print("annotated images: " + ", ".join(res["files"]))


@app.command("mask-check")
def mask_check_command(
    image: Path = typer.Argument(..., help="Photo to check: every face in it is classified."),
    cam: Path | None = typer.Option(None, "--cam", help="Write the photo with each face's box, label and Grad-CAM heat map (PNG)."),
    weights: Path | None = typer.Option(None, "--weights", help="Mask-classifier weights (default: the shipped ones)."),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", "-d", help="Face detector: auto-roi (default), auto, centerface, mtcnn, cnn, hog, ..."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Is each face in IMAGE wearing a mask? Label, probability and (with --cam) where the model looked."""
    import json

    from occluface.maskcheck.predict import mask_check

    if not image.is_file():
        fail(f"{image}: no such image file")
    results, annotated = mask_check(image, weights=weights, detector=detector, cam=cam is not None)
    if cam is not None and annotated is not None:
        from PIL import Image

        cam.parent.mkdir(parents=True, exist_ok=True)
        try:
            Image.fromarray(annotated).save(cam, format="PNG")
        except OSError as exc:
            fail(f"{cam}: cannot write the heat-map image ({exc})")
    if as_json:
        console.print_json(json.dumps({"image": str(image), "faces": results, "cam": str(cam) if cam else None}))
        return
    if not results:
        console.print(f"{image}: no face found", highlight=False)
    for i, r in enumerate(results, 1):
        box = ", ".join(f"{v:.0f}" for v in r["box"])
        console.print(f"face {i} [{box}]: [bold]{r['label']}[/] {r['prob']:.3f}", highlight=False)
    if cam is not None:
        console.print(f"heat map: {cam}", highlight=False)


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    names: list[str] = typer.Option(None, "--name", "-n", help="Only these models (repeatable)."),
) -> None:
    """List every registered backbone with its parameters and GMACs next to the published figures."""
    import json

    from occluface.models import list_models
    from occluface.models.complexity import complexity_table, rich_table

    known = list_models()
    unknown = [n for n in names or [] if n.strip().lower() not in known]
    if unknown:
        fail(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")
    rows = complexity_table([n.strip().lower() for n in names] if names else None)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(rich_table(rows))
