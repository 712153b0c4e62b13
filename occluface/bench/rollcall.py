"""Roll-call benchmark: greedy per-face argmax vs global one-to-one assignment, on clean and masked group photos.

Protocol (after Zhu et al., "Classroom Roll-Call System Based on ResNet Networks"):

1. Identities with >= `min_images` photos in an identity-per-folder dataset; a seeded `roster_size` of them are
   the class, the others a pool of strangers.
2. Each student is enrolled from their first `enrol_images` photos (never all of them), each embedded as its
   face chip and its mirror image (the mirror stays in the photo's calibration fold).
3. Each group photo holds `faces_per_image - strangers` distinct students (a held-out photo each) plus
   `strangers` people not on the roster, composed by `occluface.rollcall.compose`. The same photo is made
   twice: clean, and with `masked_fraction` of its faces wearing a synthetic mask.
4. Faces are embedded at their known boxes -- no face detector, so detection misses do not blur the
   comparison -- and every confidence model x assignment method gets ER and UR (`occluface.rollcall.metrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.bench.reports import report_dir, save_report
from occluface.progress import progress_bar
from occluface.errors import DatasetError, OccluFaceError
from occluface.rollcall.assign import METHODS, rollcall
from occluface.rollcall.compose import ComposedImage, compose_group, default_face_box
from occluface.rollcall.confidence import CONFIDENCE_MODELS, make_confidence
from occluface.rollcall.metrics import aggregate, er_ur

__all__ = ["run_rollcall_bench", "write_report", "CONDITIONS"]

CONDITIONS = ("clean", "masked")


def _identities(data: Path, min_images: int) -> dict[str, list[Path]]:
    from occluface.data.folder import scan_folder

    by_id: dict[str, list[Path]] = {}
    for s in scan_folder(data):
        by_id.setdefault(s.label, []).append(Path(s.path))
    return {k: sorted(v) for k, v in sorted(by_id.items()) if len(v) >= min_images}


def _load(path: Path) -> np.ndarray:
    from occluface.data.images import load_rgb

    return load_rgb(path)


def _embed_cached(embedder, chips: list[np.ndarray], seen: dict[bytes, np.ndarray]) -> np.ndarray:
    """Embeddings of ``chips``, computing only those whose exact pixels were not embedded before."""
    import hashlib

    keys = [hashlib.sha1(np.ascontiguousarray(c).tobytes()).digest() + bytes(str(c.shape), "ascii") for c in chips]
    todo = [i for i, key in enumerate(keys) if key not in seen]
    if todo:
        for i, e in zip(todo, embedder.embed_chips([chips[i] for i in todo])):
            seen[keys[i]] = e
    return np.stack([seen[key] for key in keys])


def run_rollcall_bench(
    data: str | Path,
    *,
    roster_size: int = 20,
    faces_per_image: int = 8,
    images: int = 50,
    strangers: int = 2,
    masked_fraction: float = 0.5,
    mask_kind: str = "surgical",
    embedder: str = "dlib_resnet",
    min_images: int = 4,
    enrol_images: int = 3,
    threshold: float = 0.6,
    confidences: Sequence[str] = CONFIDENCE_MODELS,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    progress: bool = True,
    embedder_obj: Any = None,
) -> dict:
    """Run the benchmark; returns a JSON-ready dict (config, notes, pooled ER/UR per cell, example photo).

    `embedder_obj` (anything with `chip(image, box)` and `embed_chips(chips)`) replaces the named embedder.
    """
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: not a folder (expected one sub-folder of photos per identity)")
    if roster_size < 2 or faces_per_image < 1 or images < 1 or strangers < 0 or enrol_images < 1 or min_images < 2:
        raise OccluFaceError("need roster_size >= 2, faces_per_image >= 1, images >= 1, strangers >= 0, "
                             "enrol_images >= 1 and min_images >= 2")
    if strangers >= faces_per_image:
        raise OccluFaceError(f"strangers ({strangers}) must be fewer than faces per image ({faces_per_image})")
    if not 0.0 <= masked_fraction <= 1.0:
        raise OccluFaceError(f"masked fraction must lie in [0, 1], got {masked_fraction}")
    students_per_image = faces_per_image - strangers
    if students_per_image > roster_size:
        raise OccluFaceError(f"{students_per_image} students per photo but a roster of only {roster_size}")
    for c in confidences:
        make_confidence(c)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise OccluFaceError(f"unknown assignment method(s) {', '.join(bad)}; known: {', '.join(METHODS)}")

    ids = _identities(data, min_images)
    if len(ids) < roster_size + (1 if strangers else 0):
        raise DatasetError(f"{data}: {len(ids)} identities have >= {min_images} photos; need {roster_size} for the "
                           f"roster{' plus at least one stranger' if strangers else ''}")
    rng = np.random.default_rng(seed)
    names = list(ids)
    order = rng.permutation(len(names))
    roster = sorted(names[i] for i in order[:roster_size])
    stranger_pool = [names[i] for i in order[roster_size:]]
    if strangers and len(stranger_pool) < strangers:
        raise DatasetError(f"{data}: only {len(stranger_pool)} non-roster identities for {strangers} strangers per photo")
    enrol = {r: ids[r][: min(enrol_images, len(ids[r]) - 1)] for r in roster}
    held = {r: ids[r][len(enrol[r]) :] for r in roster}

    if embedder_obj is None:
        from occluface.faces.embed import FaceEmbedder

        embedder_obj = FaceEmbedder(embedder)
    notes = [
        "faces are embedded at their known (ground-truth) boxes in the composed photo: no face detector is run, "
        "so detection misses do not enter ER/UR",
        f"each student is enrolled from their first {enrol_images} photo(s) (fewer if they have <= {enrol_images}, "
        "keeping one for testing) plus the mirror image of each chip",
    ]


    boxes_cache: dict[Path, tuple] = {}

    def box_of(path: Path, img: np.ndarray):
        if path not in boxes_cache:
            boxes_cache[path] = default_face_box(img)
        return boxes_cache[path]

    with progress_bar(progress, transient=True) as bar:
        n_enrol = sum(len(v) for v in enrol.values())
        task = bar.add_task("enrolling roster", total=n_enrol)
        chips, labels, groups = [], [], []
        for r in roster:
            for p in enrol[r]:
                img = _load(p)
                chip = embedder_obj.chip(img, box_of(p, img))
                chips += [chip, np.ascontiguousarray(chip[:, ::-1])]
                labels += [r, r]
                groups += [str(p), str(p)]
                bar.advance(task)
        enrol_emb = embedder_obj.embed_chips(chips)

        models = {}
        for c in confidences:
            models[c] = make_confidence(c, seed=seed) if c == "svm" else make_confidence(c)
            models[c].fit(enrol_emb, labels, groups)
            notes.append(f"confidence '{c}': {models[c].note}")

        cells: dict[tuple[str, str, str], list[dict]] = {}
        example: dict[str, Any] | None = None
        task = bar.add_task("group photos", total=images)
        compose_notes: list[str] = []
        for k in range(images):
            members = [roster[i] for i in rng.choice(len(roster), students_per_image, replace=False)]
            others = [stranger_pool[i] for i in rng.choice(len(stranger_pool), strangers, replace=False)] if strangers else []
            people = members + others
            paths = [held[p][int(rng.integers(len(held[p])))] if p in held else ids[p][int(rng.integers(len(ids[p])))]
                     for p in people]
            perm = rng.permutation(len(people))
            people, paths = [people[i] for i in perm], [paths[i] for i in perm]
            imgs = [_load(p) for p in paths]
            bxs = [box_of(p, im) for p, im in zip(paths, imgs)]
            n_mask = int(round(masked_fraction * len(people)))
            masked = set(rng.choice(len(people), n_mask, replace=False).tolist()) if n_mask else set()
            photo_seed = int(rng.integers(0, 2**31 - 1))
            truth = [p if p in held else None for p in people]
            seen: dict[bytes, np.ndarray] = {}  # unmasked faces are pixel-identical in both copies: embed once
            for cond in CONDITIONS:
                occ = [mask_kind if (cond == "masked" and i in masked) else None for i in range(len(people))]
                comp = compose_group(imgs, bxs, people, seed=photo_seed, occlusions=occ)
                compose_notes += [f"photo {k} ({cond}): {n}" for n in comp.notes]
                emb = _embed_cached(embedder_obj, [embedder_obj.chip(comp.image, b) for b in comp.boxes], seen)
                for c, model in models.items():
                    prob = model.predict_proba(emb)
                    for m in methods:
                        res = rollcall(emb, model, roster, threshold=threshold, method=m, boxes=comp.boxes, probabilities=prob)
                        cells.setdefault((c, m, cond), []).append(er_ur(res.assigned, truth, roster))
                        if example is None and cond == "masked" and m == "global" and c == confidences[0]:
                            example = {"photo": k, "composed": comp, "result": res, "truth": truth}
            bar.advance(task)
    if compose_notes:
        notes.append(f"{len(compose_notes)} face(s) could not be masked and stayed clean, e.g. {compose_notes[0]}")
    rows = []
    for (c, m, cond), per in cells.items():
        agg = aggregate(per)
        rows.append({"confidence": c, "method": m, "condition": cond, **agg,
                     "per_image_er": [round(r["er"], 4) for r in per], "per_image_ur": [round(r["ur"], 4) for r in per]})
    return {
        "config": {
            "data": str(data), "roster_size": roster_size, "faces_per_image": faces_per_image, "images": images,
            "strangers_per_image": strangers, "masked_fraction": masked_fraction, "mask_kind": mask_kind,
            "embedder": getattr(embedder_obj, "model_name", embedder), "min_images": min_images,
            "enrol_images": enrol_images, "threshold": threshold, "seed": seed,
            "confidences": list(confidences), "methods": list(methods),
        },
        "roster": roster,
        "notes": notes,
        "rows": rows,
        "example": example,
    }


# ----------------------------------------------------------------------------- report
def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _table(rows: list[dict]) -> str:
    head = ("| confidence | method | photos | ER (wrong / attendance) | UR (unrecognised / faces) | student UR | "
            "student accuracy | strangers named | photos with a duplicate name |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['confidence']} | {r['method']} | {r['images']} | {_pct(r['er'])} ({r['wrong']}/{r['attendance']}) | "
            f"{_pct(r['ur'])} ({r['unrecognised']}/{r['faces']}) | {_pct(r['student_ur'])} | {_pct(r['accuracy'])} | "
            f"{r['strangers_named']}/{r['strangers']} | {r['images_with_duplicates']} |"
        )
    return "\n".join(lines)


def _plot_example(example: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    comp: ComposedImage = example["composed"]
    res = example["result"]
    h, w = comp.image.shape[:2]
    fig, ax = plt.subplots(figsize=(w / 100, h / 100 + 0.4), dpi=100)
    ax.imshow(comp.image)
    for f, box, truth in zip(res.faces, comp.boxes, example["truth"]):
        if f.identity is None:
            color, text = "gold", f"? {f.candidate} {f.confidence:.2f}" + ("" if truth else " [stranger]")
        elif f.identity == truth:
            color, text = "lime", f"{f.identity} {f.confidence:.2f}"
        else:
            color, text = "red", f"{f.identity} {f.confidence:.2f} (is {truth or 'stranger'})"
        x1, y1, x2, y2 = box
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2))
        ax.text(x1, y1 - 3, text, color="black", fontsize=7, bbox={"facecolor": color, "alpha": 0.8, "pad": 1})
    ax.set_title(f"global assignment, masked photo {example['photo']}: green correct, red wrong, yellow uncertain",
                 fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_rates(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['confidence']}\n{r['method']}\n{r['condition']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows)), 4))
    ax.bar(x - 0.2, [100 * r["er"] for r in rows], 0.4, label="ER (wrong / attendance list)")
    ax.bar(x + 0.2, [100 * r["ur"] for r in rows], 0.4, label="UR (unrecognised / faces)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("%")
    ax.set_title("Roll-call error and unrecognised rates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict, out: str | Path, command: str | None = None) -> dict[str, Any]:
    """rollcall.md, rollcall.json, rollcall_example.png (annotated group photo), rollcall_rates.png."""
    out = report_dir(out)
    cond_order = {c: i for i, c in enumerate(CONDITIONS)}
    rows = sorted(result["rows"], key=lambda r: (cond_order[r["condition"]], r["confidence"], METHODS.index(r["method"])))
    cfg = result["config"]
    figures: list[Path] = []
    md = [
        "# Roll-call benchmark: greedy vs global assignment",
        "",
        f"Data `{cfg['data']}`; roster of {cfg['roster_size']} students; {cfg['images']} composed group photos of "
        f"{cfg['faces_per_image']} faces ({cfg['strangers_per_image']} strangers not on the roster); embedder "
        f"`{cfg['embedder']}`; confidence threshold {cfg['threshold']}; seed {cfg['seed']}. The masked photos are "
        f"the same photos with {100 * cfg['masked_fraction']:.0f} % of the faces wearing a synthetic "
        f"`{cfg['mask_kind']}` mask.",
        "",
        "ER = wrong identities / attendance list (faces given a name); UR = (faces - correct - wrong) / faces, "
        "as in Zhu et al.; a stranger given any name is wrong, a stranger left unnamed counts in UR (student UR "
        "counts only roster members' faces). Student accuracy = correctly named students / student faces. "
        "greedy = per-face argmax (> threshold); global = one-to-one max-product assignment (Hungarian on -log p), "
        "matches <= threshold uncertain; paper = confident unique faces first, then max-product matching of the "
        "rest to the still-absent students, every match accepted (the paper's game stage).",
        "",
    ]
    for cond in CONDITIONS:
        sub = [r for r in rows if r["condition"] == cond]
        if sub:
            md += [f"## {cond.capitalize()} photos", "", _table(sub), ""]
    md += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    if command:
        md += ["## Command", "", f"`{command}`", ""]
    if result.get("example"):
        figures.append(out / "rollcall_example.png")
        _plot_example(result["example"], figures[-1])
        md.insert(2, "![annotated group photo](rollcall_example.png)\n\n![ER and UR](rollcall_rates.png)\n")
    js = {k: v for k, v in result.items() if k != "example"}
    js["rows"] = rows
    if result.get("example"):
        ex = result["example"]
        js["example"] = {"photo": ex["photo"], "truth": ex["truth"], "boxes": ex["composed"].boxes,
                         "occlusions": ex["composed"].occlusions, "result": ex["result"].to_dict()}
    if command:
        js["command"] = command
    figures.append(out / "rollcall_rates.png")
    _plot_rates(rows, figures[-1])
    return save_report(out, markdown=md, data=js, markdown_name="rollcall.md", json_name="rollcall.json", figures=figures)
