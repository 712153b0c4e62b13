"""``occluface synth-eval``: the landmark overlay against the learned warps, on the same faces and masks.

Per method, on held-out unmasked faces (each given one mask picture, the same one for every method):

* **SSIM** (scikit-image) of the composite against a real masked face. The data holds no masked/unmasked
  photo pairs of the same person (``mask_cls`` names that recur in both classes are different people),
  so the reference is the *nearest* held-out real masked face in pixel space (36x36 colour thumbnails).
* **placement IoU** between the warped mask's alpha (> 0.5) and the nose-mouth-chin region that the 68
  landmarks of the clean face give (:func:`occluface.data.occlusion.masks.mask_region`). The landmark
  overlay fits its mask to that very outline, so it scores high by construction: read this as "how
  close to where the landmarks say", not as ground truth. Split into frontal and turned faces (yaw proxy).
* **perceptual stand-ins** (LPIPS and the Inception Score need ImageNet weights that cannot be downloaded
  here): the Frechet distance between the 128-d embeddings of the project's face backbone (dlib ResNet)
  of composites and of real masked faces ("FD-dlib", an FID analogue), and the mean distance from each
  composite to its nearest real masked face in that space;
* **realism stand-ins**: the project's mask classifier's probability that the composite shows a masked
  face, and identity preservation (cosine of the backbone embeddings of clean face and composite).

Writes ``report.md``, ``metrics.json`` and ``grid.png`` (rows = faces, frontal and turned; columns =
clean, landmark overlay, each learned method).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from occluface.bench.reports import save_report
from occluface.errors import CheckpointError, DatasetError

ORDER = ("gan", "dcgan", "wgan", "wgan-div")
TURNED = 0.15  # |yaw proxy| at or above this: a turned face


# ----------------------------------------------------------------------------- methods


def find_checkpoints(paths: list[str | Path]) -> list[tuple[str, Path]]:
    """(label, generator file) for every file given, or ``generator.pt`` in each folder / sub-folder given."""
    from occluface.train.masksynth import label

    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "generator.pt").is_file():
            found.append(p / "generator.pt")
        elif p.is_dir():
            found += sorted(p.glob("*/generator.pt"))
        else:
            raise CheckpointError(f"{p}: no such generator file or run folder")
    if not found:
        raise CheckpointError("no generator.pt found under " + ", ".join(map(str, paths)))
    out = []
    for f in found:
        from occluface.models.checkpoint import load_checkpoint

        meta = load_checkpoint(f).get("meta") or {}
        loss = meta.get("loss", "?")
        out.append((loss, meta.get("label") or label(loss, bool(meta.get("pyconv", True))), f))
    out.sort(key=lambda t: (ORDER.index(t[0]) if t[0] in ORDER else 99, t[1]))
    return [(lab, f) for _, lab, f in out]


def learned_composites(gen, faces: np.ndarray, pictures: np.ndarray, steps: int | None = None, batch: int = 32,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(composites uint8 N x 144 x 144 x 3, alpha N x 144 x 144, params N x 8) from the identity warp."""
    import torch

    from occluface.data.masksynth.data import to_tensor_images
    from occluface.data.masksynth.stn import warp

    steps = int(steps or getattr(gen, "meta", {}).get("steps") or 2)
    comps, alphas, params = [], [], []
    with torch.no_grad():
        for i in range(0, len(faces), batch):
            f = to_tensor_images(faces[i : i + batch])
            m = to_tensor_images(pictures[i : i + batch])
            p, c = gen.refine(f, m, None, steps)
            comps.append((c[-1].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
            alphas.append(warp(m, p, f.shape[-2:])[:, 3].numpy())
            params.append(p.numpy())
    return np.concatenate(comps), np.concatenate(alphas), np.concatenate(params)


def overlay_alpha(shape: tuple[int, int], lm68: np.ndarray, texture: str, seed: int) -> np.ndarray:
    """The landmark overlay's mask alpha: the same mask composited unshaded over black and over white."""
    from occluface.data.occlusion import apply

    black = np.zeros((*shape, 3), np.uint8)
    white = np.full((*shape, 3), 255, np.uint8)
    a = apply(black, "texture", seed=seed, landmarks=lm68, texture=texture, shading=0.0).astype(np.float32)
    b = apply(white, "texture", seed=seed, landmarks=lm68, texture=texture, shading=0.0).astype(np.float32)
    return np.clip(1 - (b - a).mean(axis=2) / 255.0, 0, 1)


def overlay_composites(faces: np.ndarray, lm68: np.ndarray, textures: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from occluface.data.occlusion import apply

    comps, alphas = [], []
    for i, (f, lm, t) in enumerate(zip(faces, lm68, textures)):
        comps.append(apply(f, "texture", seed=seed + i, landmarks=lm, texture=t))
        alphas.append(overlay_alpha(f.shape[:2], lm, t, seed + i))
    return np.stack(comps), np.stack(alphas)


# ----------------------------------------------------------------------------- measures


def placement_iou(alpha: np.ndarray, lm68: np.ndarray) -> float:
    from occluface.data.occlusion.masks import mask_region

    region = mask_region(alpha.shape, lm68)
    m = alpha > 0.5
    union = (m | region).sum()
    return float((m & region).sum() / union) if union else 0.0


#: The five points' parts a worn mask must cover (nose tip, mouth corners) and leave free (eyes).
COVER, FREE = (2, 3, 4), (0, 1)


def independent_points(images: np.ndarray, detector: str = "yunet") -> np.ndarray:
    """5 points per crop from a detector that the landmark overlay never uses (NaN where it finds no face).

    The overlay and the IoU region both come from dlib's 68 landmarks; YuNet's own 5 points (eyes, nose tip,
    mouth corners) are another network's answer, so a placement score on them does not favour the overlay.
    """
    from occluface.faces.detect import create_detector, pick_main_face

    det = create_detector(detector)
    out = np.full((len(images), 5, 2), np.nan, np.float32)
    for i, im in enumerate(images):
        face = pick_main_face(det.detect(im), im.shape)
        if face is not None and face.landmarks is not None:
            out[i] = face.landmarks
    return out


def coverage(alpha: np.ndarray, pts5: np.ndarray, radius: float = 0.08) -> dict[str, bool] | None:
    """Does the mask cover the nose tip and both mouth corners and leave both eyes free?

    Each point is read as the mean alpha in a disc of ``radius`` x the eye distance around it (covered above
    0.5). Returns None when the points are missing. This is what any worn mask does whatever its shape or
    style, so it judges placement without the 68-landmark outline that the overlay is fitted to.
    """
    if not np.isfinite(pts5).all():
        return None
    h, w = alpha.shape
    r = max(1.5, radius * float(np.linalg.norm(pts5[0] - pts5[1])))
    yy, xx = np.mgrid[0:h, 0:w]
    seen = []
    for x, y in pts5:
        disc = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        seen.append(float(alpha[disc].mean()) > 0.5 if disc.any() else False)
    return {"nose": seen[2], "mouth": seen[3] and seen[4], "eyes_free": not (seen[0] or seen[1]),
            "all": seen[2] and seen[3] and seen[4] and not (seen[0] or seen[1])}


def coverage_rates(alphas: np.ndarray, pts5: np.ndarray, turned: np.ndarray) -> dict[str, Any]:
    """Share of faces (with independent points) whose mask passes :func:`coverage`, overall and by pose."""
    checks = [coverage(a, p) for a, p in zip(alphas, pts5)]
    ok = np.array([c is not None for c in checks])
    passed = np.array([bool(c and c["all"]) for c in checks])
    out: dict[str, Any] = {"cover_n": int(ok.sum()), "cover_pass": "".join("1" if x else "0" for x in passed[ok])}
    for key in ("all", "nose", "mouth", "eyes_free"):
        vals = np.array([bool(c[key]) for c in checks if c is not None])
        out[f"cover_{key}"] = float(vals.mean()) if vals.size else float("nan")
    for name, sel in (("frontal", ok & ~turned), ("turned", ok & turned)):
        out[f"cover_{name}"] = float(passed[sel].mean()) if sel.any() else float("nan")
    return out


def embeddings(images: np.ndarray, lm5: np.ndarray) -> np.ndarray:
    """128-d dlib ResNet embeddings of 144x144 crops, chipped with the face's own 5 points' box."""
    from occluface.data.occlusion.faces import box_from_five
    from occluface.faces.chips import dlib_chip
    from occluface.models import create

    model = create("dlib_resnet")
    chips = [dlib_chip(im, tuple(float(v) for v in box_from_five(l))) for im, l in zip(images, lm5)]
    return model.embed_chips(chips)


def mask_probability(images: np.ndarray, lm5: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """The shipped mask classifier's P(masked) (P(correctly masked) for a 3-class model) per crop."""
    from occluface.faces.align import align_face
    from occluface.maskcheck.model import cached_model
    from occluface.maskcheck.model import predict_proba

    model = cached_model(str(weights) if weights else None)
    crops = np.stack([align_face(im, l, model.input_size) for im, l in zip(images, lm5)])
    proba = predict_proba(model, crops)
    return proba[:, 1]


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two embedding sets (FID's formula; scipy's sqrtm)."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu1, mu2 = a.mean(0), b.mean(0)
    eps = 1e-6 * np.eye(a.shape[1])
    s1, s2 = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def thumbnails(images: np.ndarray, side: int = 36) -> np.ndarray:
    """Flattened side x side colour thumbnails (float): the pixel space the SSIM reference is looked up in."""
    import cv2

    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255 for im in images])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def score_method(name: str, comps: np.ndarray, alphas: np.ndarray | None, clean_emb: np.ndarray, faces_lm5: np.ndarray,
                 faces_lm68: np.ndarray, turned: np.ndarray, ref_images: np.ndarray, ref_emb: np.ndarray,
                 seconds: float, maskcls: str | Path | None = None, points: np.ndarray | None = None) -> dict[str, Any]:
    emb = embeddings(comps, faces_lm5)
    d = np.linalg.norm(emb[:, None, :] - ref_emb[None, :, :], axis=2)
    ref_thumbs = thumbnails(ref_images)
    nearest = ((thumbnails(comps)[:, None, :] - ref_thumbs[None]) ** 2).sum(2).argmin(1)
    ssims = np.array([ssim(c, ref_images[j]) for c, j in zip(comps, nearest)])
    cos = (emb * clean_emb).sum(1) / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(clean_emb, axis=1), 1e-9)
    pm = mask_probability(comps, faces_lm5, maskcls)
    row: dict[str, Any] = {
        "method": name,
        "n": int(len(comps)),
        "ssim_nn": float(ssims.mean()),
        "fd_dlib": frechet(emb, ref_emb),
        "nn_dist": float(d.min(1).mean()),
        "p_masked": float(pm.mean()),
        "masked_rate": float((pm > 0.5).mean()),
        "identity_cos": float(cos.mean()),
        "ms_per_face": 1000.0 * seconds / max(len(comps), 1),
    }
    if alphas is not None:
        ious = np.array([placement_iou(a, lm) for a, lm in zip(alphas, faces_lm68)])
        row.update(iou=float(ious.mean()), iou_frontal=float(ious[~turned].mean()) if (~turned).any() else float("nan"),
                   iou_turned=float(ious[turned].mean()) if turned.any() else float("nan"),
                   mask_area=float((alphas > 0.5).mean()))
        if points is not None:
            row.update(coverage_rates(alphas, points, turned))
    return row


# ----------------------------------------------------------------------------- grid + report


def grid_rows(data: dict[str, np.ndarray], idx: np.ndarray, n: int) -> list[int]:
    """Positions (into ``idx``) of the grid's faces: half the most frontal, half the most turned."""
    yaw = np.abs(data["unmasked_yaw"][idx])
    lfw = np.char.startswith(data["unmasked_source"][idx].astype(str), "unmasked:lfw")
    pool = np.nonzero(lfw)[0] if lfw.sum() >= n else np.arange(len(idx))
    order = pool[np.argsort(yaw[pool])]
    k = n // 2
    chosen = list(order[:k]) + list(order[::-1][: n - k])
    return list(dict.fromkeys(int(i) for i in chosen))


def render_grid(path: Path, columns: list[tuple[str, np.ndarray]], rows: list[int], yaw: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.9 * len(columns), 1.95 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        for c, (title, images) in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(images[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{'turned' if abs(yaw[i]) >= TURNED else 'frontal'} ({yaw[i]:+.2f})", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def render_report(res: dict[str, Any]) -> str:
    lines = [
        "# Mask synthesis: landmark overlay vs learned warps (synth-eval)",
        "",
        f"{res['n_faces']} held-out unmasked faces ({res['n_turned']} turned, |yaw proxy| >= {TURNED}), "
        f"{res['n_refs']} held-out real masked faces as references; mask pictures: {', '.join(res['textures'])} "
        "(face i gets picture i mod K, the same for every method).",
        "",
        "| method | SSIM (nearest real) ↑ | placement IoU ↑ | IoU frontal | IoU turned | 5-point cover ↑ | cover frontal | cover turned | mask area | FD-dlib ↓ | NN dist ↓ | P(masked) ↑ | masked rate | identity cos | ms/face |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["methods"]:
        lines.append("| " + " | ".join([row["method"], _fmt(row["ssim_nn"]), _fmt(row.get("iou", float("nan"))),
                                        _fmt(row.get("iou_frontal", float("nan"))), _fmt(row.get("iou_turned", float("nan"))),
                                        _fmt(row.get("cover_all", float("nan"))), _fmt(row.get("cover_frontal", float("nan"))),
                                        _fmt(row.get("cover_turned", float("nan"))),
                                        _fmt(row.get("mask_area", float("nan"))), _fmt(row["fd_dlib"], 4), _fmt(row["nn_dist"]),
                                        _fmt(row["p_masked"]), _fmt(row["masked_rate"]), _fmt(row["identity_cos"]),
                                        _fmt(row["ms_per_face"], 1)]) + " |")
    lines += [
        "",
        "How to read it:",
        "",
        "* **SSIM**: no masked/unmasked pairs of the same photo exist in the data, so each composite is compared with "
        "its nearest held-out real masked face in pixel space (36x36 thumbnails, L2); the *clean* row is the no-mask floor.",
        "* **placement IoU**: warped-mask alpha vs the nose-mouth-chin region of the clean face's 68 landmarks. The "
        "landmark overlay is fitted to that outline, so its IoU is high by construction; learned methods never see "
        "landmarks. *identity warp (start)* is every learned method's starting point: the mask picture as it lies on "
        "its 144x144 canvas, no generator; a generator is useful only where it beats that row.",
        "* **5-point cover** (issue 22): share of faces whose mask covers the nose tip and both mouth corners and "
        "leaves both eyes free, read at the five points that **YuNet** (another network than the dlib 68 landmarks "
        "the overlay is fitted to) finds on the clean face; what any worn mask does whatever its style, so it does "
        f"not favour the overlay by construction. Faces YuNet misses are left out ({res.get('n_points', 'n/a')} of "
        f"{res['n_faces']} have points).",
        "* **FD-dlib / NN dist**: LPIPS and the Inception Score need ImageNet weights that cannot be downloaded here; "
        "these stand in, computed in the project's own face backbone (dlib ResNet, 128-d): Frechet distance between "
        "composites and real masked faces, and mean distance to the nearest real masked face.",
        "* **P(masked) / masked rate**: the project's mask classifier (trained on real masked faces *and* landmark-"
        "overlay synthetic masks, so it is not neutral towards the overlay). **identity cos**: clean vs composite "
        "embedding (1 = identity untouched).",
        "",
        f"Learned generators: {', '.join(f'{m} = {p}' for m, p in res['checkpoints'])}.",
        "",
        "![grid](grid.png)",
        "",
    ]
    return "\n".join(lines)


def evaluate(data: dict[str, np.ndarray], checkpoints: list[str | Path], out_dir: str | Path, *,
             textures: str | Path | None = None, max_faces: int = 200, max_refs: int = 300, rows: int = 6,
             seed: int = 0, maskcls: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the landmark overlay and every generator; writes report.md, metrics.json, grid.png in ``out_dir``."""
    from rich.progress import Progress

    from occluface.data.masksynth.data import texture_picture
    from occluface.data.masksynth.generator import load_generator
    from occluface.data.occlusion.masks import list_textures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gens = find_checkpoints(checkpoints)
    tex = list_textures(textures)
    if not tex:
        raise DatasetError(f"{textures}: no RGBA mask pictures to put on the faces")
    rng = np.random.default_rng(seed)
    test = np.nonzero(data["unmasked_split"] == "test")[0]
    if len(test) < 4:
        test = np.arange(len(data["unmasked_split"]))  # tiny sample sets: score every face
    idx = np.sort(rng.permutation(test)[:max_faces])
    refs = np.nonzero(data["masked_split"] == "test")[0]
    if len(refs) < 4:
        refs = np.arange(len(data["masked_split"]))
    refs = np.sort(rng.permutation(refs)[:max_refs])
    faces, lm68, lm5 = data["unmasked_images"][idx], data["unmasked_lm68"][idx], data["unmasked_lm5"][idx]
    yaw = data["unmasked_yaw"][idx]
    turned = np.abs(yaw) >= TURNED
    tex_for = [str(tex[i % len(tex)]) for i in range(len(idx))]
    pics = np.stack([texture_picture(t) for t in tex_for])
    ref_images = data["masked_images"][refs]
    ref_emb = embeddings(ref_images, data["masked_lm5"][refs])
    clean_emb = embeddings(faces, lm5)
    points = independent_points(faces)
    methods = []
    columns: list[tuple[str, np.ndarray]] = [("clean", faces)]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("synth-eval", total=2 + len(gens))  # clean, overlay + identity, generators
        methods.append(score_method("clean (no mask)", faces, None, clean_emb, lm5, lm68, turned, ref_images, ref_emb, 0.0, maskcls))
        bar.advance(task)
        t = time.perf_counter()
        comps, alphas = overlay_composites(faces, lm68, tex_for, seed)
        methods.append(score_method("landmark overlay", comps, alphas, clean_emb, lm5, lm68, turned, ref_images, ref_emb,
                                    time.perf_counter() - t, maskcls, points))
        columns.append(("landmark overlay", comps))
        # the learned methods' common starting point: each mask picture as it lies on its canvas (identity warp)
        a = pics[..., 3:4]
        comps = np.clip(np.round((faces / 255.0 * (1 - a) + pics[..., :3] * a) * 255), 0, 255).astype(np.uint8)
        methods.append(score_method("identity warp (start)", comps, pics[..., 3], clean_emb, lm5, lm68, turned, ref_images,
                                    ref_emb, 0.0, maskcls, points))
        bar.advance(task)
        for name, path in gens:
            gen = load_generator(path)
            t = time.perf_counter()
            comps, alphas, params = learned_composites(gen, faces, pics)
            row = score_method(name, comps, alphas, clean_emb, lm5, lm68, turned, ref_images, ref_emb,
                               time.perf_counter() - t, maskcls, points)
            row["iterations"] = gen.meta.get("iteration")
            row["mean_abs_p"] = float(np.abs(params).mean())
            methods.append(row)
            columns.append((name, comps))
            bar.advance(task)
    res = {"n_faces": int(len(idx)), "n_turned": int(turned.sum()), "n_refs": int(len(refs)),
           "n_points": int(np.isfinite(points).all(axis=(1, 2)).sum()),
           "textures": [Path(t).name for t in tex], "methods": methods,
           "checkpoints": [(n, str(p)) for n, p in gens], "seed": seed}
    render_grid(out / "grid.png", columns, grid_rows(data, idx, rows), yaw)
    save_report(out, markdown=render_report(res), data=res, figures=[out / "grid.png"])
    return res
