"""The baseline benchmark: how far dlib's pretrained ResNet falls when probes are occluded.

Protocol (closed-set identification, the one the reference figures were measured with): for every identity the
gallery is ONE clean image -- the frontal-light one (`P00A+000E+00` in Yale B file names: light azimuth 0,
elevation 0) -- and the probes are a seeded sample of that identity's other images. Every probe is embedded
clean and once per occlusion kind; rank-1 is the share of probes whose most cosine-similar gallery identity is
their own. Yale B images are tight face crops, so the face box is the whole image (optionally grown by
`box_padding`); dlib's 5-point chip is re-fitted on the occluded image, as it would be in deployment.

Occlusion kinds: "plain" (a flat grey polygon over nose and mouth, below) and every kind of
`occluface.data.occlusion.apply` ("surgical", "kn95", "cloth", "dust", "lowlight", ...).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.bench.reports import pct, pyplot, report_dir, save_figure, save_report
from occluface.progress import progress_bar
from occluface.data.identities import FRONTAL_LIGHT, light_subset, list_identities, split_identity
from occluface.errors import DatasetError, OccluFaceError

__all__ = ["DEFAULT_OCCLUSIONS", "occlude", "run_baseline", "write_report"]

DEFAULT_OCCLUSIONS: tuple[str, ...] = ("plain", "surgical", "kn95", "cloth", "dust", "lowlight")



# ----------------------------------------------------------------------------- occlusions
def occlude(image: np.ndarray, kind: str, *, seed: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """Occluded copy of ``image``: "plain" here, every other kind via `occluface.data.occlusion.apply`."""
    if kind != "plain":
        _occlusion_module([kind])
    from occluface.data.occlusion.core import occlude as _occlude

    return _occlude(image, kind, seed=seed, landmarks=landmarks)


def _occlusion_module(kinds: Sequence[str]):
    """`occluface.data.occlusion`, or a clear error naming the kinds that need it."""
    try:
        from occluface.data import occlusion
    except ModuleNotFoundError as exc:
        if exc.name != "occluface.data.occlusion":
            raise
        occlusion = None
    if occlusion is None or not callable(getattr(occlusion, "apply", None)):
        raise OccluFaceError(
            f"occlusion kind(s) {', '.join(kinds)} need occluface.data.occlusion.apply, which is not available; "
            "use --occlusion plain"
        )
    return occlusion


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    """Normalise and validate occlusion names before the long run starts (fail in a second, not an hour)."""
    out: list[str] = []
    for kind in kinds:
        kind = str(kind).strip().lower()
        if not kind or kind == "clean":
            continue  # clean probes are always measured
        if kind not in out:
            out.append(kind)
    others = [k for k in out if k != "plain"]
    if others:
        occlusion = _occlusion_module(others)
        known = getattr(occlusion, "KINDS", None)
        if known is not None:
            unknown = [k for k in others if k not in set(known)]
            if unknown:
                raise OccluFaceError(
                    f"unknown occlusion kind(s) {', '.join(unknown)}; known: plain, {', '.join(known)}"
                )
    return out


# ----------------------------------------------------------------------------- benchmark
def run_baseline(
    data: str | Path,
    *,
    identities: int | None = None,
    probes_per_identity: int = 20,
    occlusions: Sequence[str] = DEFAULT_OCCLUSIONS,
    seed: int = 0,
    box_padding: float = 0.0,
    model: str = "dlib_resnet",
    embedder: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Rank-1 of ``model`` on clean and occluded probes (protocol in the module docstring); returns a dict.

    `identities=N` uses the first N identity folders (sorted) that have at least 2 images. Pass a ready
    `FaceEmbedder` as `embedder` to measure a trained occluface model under exactly the same protocol.
    """

    from occluface.data.images import load_rgb
    from occluface.bench.metrics import rank1_from_gallery
    from occluface.faces.chips import full_image_box
    from occluface.faces.embed import FaceEmbedder
    from occluface.faces.landmarks import landmarks68

    if probes_per_identity < 1:
        raise OccluFaceError(f"probes per identity must be >= 1, got {probes_per_identity}")
    if identities is not None and identities < 2:
        raise OccluFaceError(f"need at least 2 identities for identification, got {identities}")
    if not -0.4 <= box_padding <= 1.0:
        raise OccluFaceError(f"box padding must be within [-0.4, 1.0] of the image size, got {box_padding}")
    if seed < 0:
        raise OccluFaceError(f"seed must be >= 0, got {seed}")
    all_ids = list_identities(data)
    kinds = _check_kinds(occlusions)
    conditions = ["clean", *kinds]
    usable = [n for n, files in all_ids.items() if len(files) >= 2]
    skipped = [n for n in all_ids if n not in usable]  # one image cannot be both gallery and probe
    names = usable[:identities] if identities else usable
    if len(names) < 2:
        raise DatasetError(f"{data}: need at least 2 identities with 2 or more images, found {len(names)}")
    splits = {name: split_identity(name, all_ids[name], probes_per_identity, seed) for name in names}
    n_probes = sum(len(p) for _, p in splits.values())

    if embedder is None:
        embedder = FaceEmbedder(model)
    model = str(getattr(embedder, "model_name", model))
    gallery_emb, gallery_lab = [], []
    probe_emb: dict[str, list[np.ndarray]] = {c: [] for c in conditions}
    probe_lab: list[str] = []
    probe_subset: list[str] = []
    started = time.perf_counter()

    with progress_bar(progress) as bar:
        task = bar.add_task(f"{model} on {len(names)} identities", total=n_probes)
        for id_index, name in enumerate(names):
            gallery, probes = splits[name]
            g_img = load_rgb(gallery)
            gallery_emb.append(embedder.embed_image(g_img, full_image_box(g_img, box_padding)))
            gallery_lab.append(name)
            chips: dict[str, list[np.ndarray]] = {c: [] for c in conditions}
            for p_index, path in enumerate(probes):
                img = load_rgb(path)
                box = full_image_box(img, box_padding)
                lm = landmarks68(img, box)
                chips["clean"].append(embedder.chip(img, box))
                occ_seed = int(np.random.SeedSequence([int(seed), id_index, p_index]).generate_state(1)[0])
                for kind in kinds:
                    occluded = occlude(img, kind, seed=occ_seed, landmarks=lm)
                    chips[kind].append(embedder.chip(occluded, box))
                probe_lab.append(name)
                probe_subset.append(light_subset(path.name))
                bar.advance(task)
            for c in conditions:
                probe_emb[c].append(embedder.embed_chips(chips[c]))

    g = np.stack(gallery_emb)
    labels, subsets = np.asarray(probe_lab), np.asarray(probe_subset)
    rows = []
    for c in conditions:
        emb = np.concatenate(probe_emb[c])
        res = rank1_from_gallery(g, gallery_lab, emb, labels)
        correct = sum(v["rank1_correct"] for v in res["per_identity"].values())
        by_light = {}
        for subset in sorted(set(probe_subset)):
            keep = subsets == subset
            by_light[subset] = {
                "rank1": rank1_from_gallery(g, gallery_lab, emb[keep], labels[keep])["rank1"],
                "n_probes": int(keep.sum()),
            }
        rows.append(
            {
                "condition": c,
                "rank1": res["rank1"],
                "rank5": res["rank5"],
                "correct": int(correct),
                "n_probes": res["n_probes"],
                "rank1_by_light_subset": by_light,
                "per_identity_correct": {k: v["rank1_correct"] for k, v in res["per_identity"].items()},
            }
        )
    clean = rows[0]["rank1"] or 0.0
    for row in rows:
        row["ratio_to_clean"] = (row["rank1"] / clean) if clean else None

    return {
        "benchmark": "baseline",
        "model": model,
        "data": str(data),
        "n_identities": len(names),
        "identities": names,
        "skipped_identities": skipped,
        "probes_per_identity": int(probes_per_identity),
        "n_probes": n_probes,
        "seed": int(seed),
        "box": "whole image" if box_padding == 0 else f"whole image grown by {box_padding:g} of its size per side",
        "box_padding": float(box_padding),
        "gallery": f"one clean image per identity: {FRONTAL_LIGHT} (frontal light), else the smallest light angle",
        "gallery_files": {n: splits[n][0].name for n in names},
        "similarity": "cosine",
        "conditions": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ----------------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return pct(x, "%")


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write `baseline.md` (table), `baseline.json` and `baseline.png` (bar chart) into ``out``."""
    plt = pyplot()
    out = report_dir(out)

    rows = result["conditions"]
    lines = [
        f"# Baseline: {result['model']} rank-1, clean vs occluded probes",
        "",
        f"- data: `{result['data']}`, {result['n_identities']} identities, {result['n_probes']} probes "
        f"(up to {result['probes_per_identity']} per identity, seed {result['seed']})",
        f"- gallery: {result['gallery']}",
        f"- face box: {result['box']} (tight crops); chips re-fitted on each occluded image",
        f"- similarity: {result['similarity']}, closed-set identification",
    ]
    if result.get("skipped_identities"):
        lines.append(f"- skipped (fewer than 2 images): {', '.join(result['skipped_identities'])}")
    lines += [
        "",
        "| condition | rank-1 | correct / probes | rank-5 | ratio to clean |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "n/a" if r["ratio_to_clean"] is None else f"{r['ratio_to_clean']:.3f}"
        cells = [r["condition"], _pct(r["rank1"]), f"{r['correct']} / {r['n_probes']}", _pct(r["rank5"]), ratio]
        lines.append("| " + " | ".join(cells) + " |")
    subsets = sorted({k for r in rows for k in r.get("rank1_by_light_subset", {})})
    if len(subsets) > 1 or subsets not in ([], ["?"]):
        lines += [
            "",
            "Rank-1 by Yale B lighting subset (angle between light and camera: 1 <= 12 deg, 2 <= 25, 3 <= 50, "
            "4 <= 77, 5 beyond; probes per subset in brackets):",
            "",
            "| condition | " + " | ".join(
                f"subset {k} ({rows[0]['rank1_by_light_subset'][k]['n_probes']})" for k in subsets
            ) + " |",
            "|---|" + "---:|" * len(subsets),
        ]
        for r in rows:
            cells = [_pct(r["rank1_by_light_subset"].get(k, {}).get("rank1")) for k in subsets]
            lines.append(f"| {r['condition']} | " + " | ".join(cells) + " |")
    labels = [r["condition"] for r in rows]
    values = [100 * (r["rank1"] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 2.5, 3.8))
    colors = ["tab:green"] + ["tab:orange"] * (len(rows) - 1)
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2, fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel("rank-1 (%)")
    ax.set_title(f"{result['model']}: rank-1, {result['n_identities']} identities, {result['n_probes']} probes")
    png = save_figure(fig, out / "baseline.png")
    return save_report(out, markdown=lines, data=result, markdown_name="baseline.md", json_name="baseline.json",
                       figures=[png])
