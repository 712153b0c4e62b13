"""The main job on bundled data: what `make demo` runs, so a new user sees the system work end to end.

Recognition demo (default): enrol the bundled roster, identify its held-out photos with and without a
synthetic surgical mask, run a roll-call on a group photo composed from those probes, and write the
annotated images. Training demo (``--train``): train the coal-mine paper's plain and improved ResNet for a
few epochs on the bundled Yale B sample, evaluate both and draw their curves on one figure.
"""

from __future__ import annotations

from occluface.settings import REPO_DATA

from pathlib import Path
from typing import Any



def run_recognition_demo(out_dir: Path, *, data_dir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Enrol people from ``data/lfw`` (all but the last photo each), probe with the last photo."""
    import numpy as np
    from PIL import Image

    from occluface.data.folder import scan_folder
    from occluface.data.occlusion import apply as occlude
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer, annotate, read_image
    from occluface.rollcall.compose import compose_group

    data_dir = Path(data_dir) if data_dir else REPO_DATA
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gallery_path = out_dir / "gallery.sqlite3"
    for stale in out_dir.glob("gallery.sqlite3*"):
        stale.unlink()
    rec = Recognizer(open_gallery(gallery_path))

    by_person: dict[str, list[Path]] = {}
    for s in scan_folder(data_dir / "lfw"):
        by_person.setdefault(s.label, []).append(s.path)
    probes: dict[str, Path] = {}
    for person, paths in sorted(by_person.items()):
        rec.enroll(person, paths[:-1])
        probes[person] = paths[-1]
    for name, file in (("Barack_Obama", "fr_obama.jpg"), ("Joe_Biden", "fr_biden.jpg")):
        rec.enroll(name, [data_dir / "samples" / file])

    rows = []
    probe_images, masked_images = [], []
    for i, (person, path) in enumerate(sorted(probes.items())):
        image = read_image(path)
        try:
            masked = occlude(image, "surgical", seed=seed + i)
        except Exception:  # no landmarks: keep the probe clean and say so
            masked = None
        probe_images.append(image)
        masked_images.append(masked)
        row = {"person": person}
        for cond, img in (("clean", image), ("masked", masked)):
            if img is None:
                row[cond] = None
                continue
            matches = rec.identify(img, image=img, k=1)
            best = max(matches, key=lambda m: m.similarity, default=None)
            row[cond] = {"name": best.label if best else "no face", "similarity": best.similarity if best else 0.0}
        rows.append(row)

    # A group photo composed from the probes, every other face masked, then a real roll-call on it.
    people = sorted(probes)
    group = compose_group(
        probe_images, None, people, seed=seed,
        occlusions=["surgical" if i % 2 else None for i in range(len(people))],
    )
    Image.fromarray(group.image).save(out_dir / "group_composed.png")
    roll = rec.rollcall(group.image, people)
    matches = rec.identify(group.image, image=group.image)
    Image.fromarray(annotate(group.image, matches)).save(out_dir / "group_annotated.png")
    real = read_image(data_dir / "samples" / "fr_two_people_obama_biden.jpg")
    real_matches = rec.identify(real, image=real)
    Image.fromarray(annotate(real, real_matches)).save(out_dir / "two_people_annotated.png")
    correct = {
        cond: sum(1 for r in rows if r[cond] and r[cond]["name"] == r["person"]) for cond in ("clean", "masked")
    }
    wrong = {  # named as somebody else: the failure that lets a stranger through a gate
        cond: sum(1 for r in rows if r[cond] and r[cond]["name"] not in (r["person"], "unknown", "no face"))
        for cond in ("clean", "masked")
    }
    return {
        "gallery": str(gallery_path),
        "model": rec.model_id,
        "threshold": rec.thresholds.identify,
        "threshold_source": rec.thresholds.source,
        "rows": rows,
        "correct": correct,
        "wrong": wrong,
        "probes": len(rows),
        "masked_probes": sum(1 for m in masked_images if m is not None),
        "rollcall": roll,
        "group_truth": [i for i in group.identities],
        "group_occlusions": group.occlusions,
        "real_photo": [m.label for m in real_matches],
        "files": [str(out_dir / n) for n in ("group_composed.png", "group_annotated.png", "two_people_annotated.png")],
        "mean_similarity": float(np.mean([r["clean"]["similarity"] for r in rows if r["clean"]])),
    }


def run_training_demo(out_dir: Path, *, data_dir: Path | None = None, epochs: int = 6, progress: bool = True) -> dict:
    """Plain vs improved (CBAM) ResNet on the bundled Yale B sample: train, evaluate, compare curves."""
    from occluface.bench.report import compare_runs, evaluate_checkpoint
    from occluface.models.config import TrainConfig
    from occluface.train.trainer import train

    data_dir = Path(data_dir) if data_dir else REPO_DATA / "yaleb"
    out_dir = Path(out_dir)
    results = {}
    for model in ("resnet18", "cbam_resnet18"):
        run = out_dir / model
        config = TrainConfig(
            model=model, data=str(data_dir), out=str(run), epochs=epochs, batch_size=16, lr=0.05,
            schedule="step", step_size=max(1, epochs * 2 // 3), input_size=64, embedding_size=128,
            split_by="image", test_fraction=0.2, seed=0, eval_every=10, log_every=1,
        )
        train(config, progress=progress)
        metrics = evaluate_checkpoint(run / "last.pt", data_dir, run / "report", split="test", progress=progress)
        results[model] = {"run": run, "metrics": metrics}
    compare_runs([out_dir / m for m in results], out_dir / "comparison", labels=list(results))
    return results
