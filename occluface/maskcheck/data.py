"""Mask-classification data: aligned face crops from ``shared/data``, synthetic masks, a grouped seeded split.

Every image is turned once into a 112x112 ArcFace-aligned crop (the same detector + alignment that
``mask-check`` uses at run time, so training and use see the same kind of crop) and cached as one uint8
array. Sources:

* ``mask_cls/with_mask`` (real masked, label *correct*) and ``mask_cls/without_mask`` (label *none*);
* ``rwmfd_masked`` (real masked photos, duplicates removed, the main face of each): a seeded set of whole
  crawl folders is kept out of training entirely -- the *OOD* set, never seen in any form;
* for every unmasked face, one synthetic correctly worn mask and one incorrectly worn mask (nose or chin
  uncovered), both from the occlusion pipeline, in the same split as their source face;
* optionally ``lfw_dev`` faces (unmasked, never trained on) as an out-of-distribution negative set;
* optionally more ``lfw_dev`` people (never those of the never-seen set), each photo cropped unmasked and
  with a synthetic correct and incorrect mask: *training* faces only, so the validation and test splits
  stay exactly the faces they were without them (recipes stay comparable).

Near-duplicates (``<n>.jpg`` / ``augmented_image_<n>.jpg``, ``x_copy_<k>``, mirrored copies, identical
thumbnails) share a group, and the 9:1 train/test split is drawn over groups so none straddles it; a
validation part (a fifth of the non-test groups, also grouped) is what training selects epochs on -- the
test split is never used for choosing anything.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occluface.io import load_npz, save_npz
from occluface.errors import DatasetError, OccluFaceError

CROP = 112
NONE, CORRECT, INCORRECT = 0, 1, 2
LABEL_NAMES = ("none", "correct", "incorrect")
SPLITS = ("train", "val", "test", "ood", "dup")
CACHE_VERSION = 1


@dataclass
class Record:
    """One image to crop: where it is, its label (NONE/CORRECT), source and near-duplicate group."""

    path: Path
    label: int
    source: str
    group: str


# ----------------------------------------------------------------------------- listing + grouping


def _name_group(cls: str, name: str) -> str:
    """Group key from a mask_cls file name: strip the index prefix, augmentation and copy markers."""
    stem = re.sub(r"^\d+_", "", Path(name).stem)
    stem = re.sub(r"^augmented_image_", "", stem)
    stem = re.sub(r"_copy(_\d+)?$", "", stem)
    ident = re.match(r"^\d+_\d+_([a-z]+)_\d+$", stem)  # AFDB-style <a>_<b>_<pinyin>_<n>: the identity
    if ident:
        stem = "id:" + ident.group(1)
    return f"{cls}:{stem}"


def list_mask_cls(root: Path) -> list[Record]:
    """Records of mask_cls/{with_mask,without_mask}; raises DatasetError when the folders are missing."""
    out: list[Record] = []
    for cls, label in (("with_mask", CORRECT), ("without_mask", NONE)):
        folder = root / "mask_cls" / cls
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing (expected the mask_cls set of shared/data)")
        for p in sorted(folder.glob("*.jpg")):
            out.append(Record(p, label, f"mask_cls/{cls}", _name_group(cls, p.name)))
    return out


def list_rwmfd(root: Path) -> list[Record]:
    """De-duplicated rwmfd_masked records (first copy of each byte-identical group kept), grouped by folder."""
    folder = root / "rwmfd_masked"
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing (expected the rwmfd_masked set of shared/data)")
    drop: set[str] = set()
    dup_file = root / "rwmfd_masked_duplicates.tsv"
    if dup_file.is_file():
        seen: set[str] = set()
        with dup_file.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                if row["group"] in seen:
                    drop.add(row["file"])
                seen.add(row["group"])
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png") and rel not in drop:
            out.append(Record(p, CORRECT, "rwmfd", f"rwmfd:{p.parent.name}"))
    return out


LFW_TRAIN = "lfw_dev/train"


def list_lfw(root: Path, n: int, seed: int, *, train: int = 0) -> list[Record]:
    """A seeded sample of ``n`` lfw_dev photos (one per person) as unmasked out-of-distribution faces; with
    ``train``, instead the first photo of ``train`` further people of the same seeded order (so never one of
    those ``n``), as training faces (source ``LFW_TRAIN``)."""
    folder = root / "lfw_dev"
    if (train if train else n) <= 0 or not folder.is_dir():
        return []
    people = sorted(d for d in folder.iterdir() if d.is_dir())
    order = np.random.default_rng(seed).permutation(len(people))
    picked = order[n : n + train] if train else order[:n]
    source = LFW_TRAIN if train else "lfw"
    chosen = [people[i] for i in sorted(picked)]
    return [Record(sorted(d.glob("*.jpg"))[0], NONE, source, f"{source}:{d.name}") for d in chosen if any(d.glob("*.jpg"))]


YALEB_TRAIN = "yaleb/train"
#: Yale B people the mask classifier never trains on: held out to check, on faces it never saw, how often it
#: calls a bare face in harsh light masked (what sends a face down the routed matcher's masked path).
YALEB_ROUTING_CHECK = 10


def yaleb_training_people(root: Path) -> tuple[list[str], list[str]]:
    """(training people, routing-check people) of ``yaleb/``: neither ever one of the identities
    ``occluface_resnet`` holds out for evaluation (``bench accuracy`` scores the classifier's routing on those).
    Both sets are fixed (the held-out set is ``occluface_resnet``'s, seed 0), whatever seed a split uses."""
    from occluface.data.identities import list_identities
    from occluface.data.identities import heldout_identities

    folder = root / "yaleb"
    if not folder.is_dir():
        return [], []
    ids = {n: f for n, f in list_identities(folder).items() if len(f) >= 2}
    held = set(heldout_identities(ids, 10, 0, salt="yaleb"))
    rest = sorted(n for n in ids if n not in held)
    check = sorted(np.random.default_rng(77).choice(rest, size=min(YALEB_ROUTING_CHECK, len(rest)), replace=False).tolist())
    return [n for n in rest if n not in set(check)], check


def list_yaleb_train(root: Path, per_person: int, seed: int) -> list[Record]:
    """``per_person`` seeded photos of every Yale B training person (bare faces in harsh one-sided light, which
    the mask_cls photos never show), as training faces; each also gets synthetic masks."""
    if per_person <= 0:
        return []
    from occluface.data.identities import list_identities

    train, _ = yaleb_training_people(root)
    photos = list_identities(root / "yaleb")
    out = []
    for name in train:
        files = sorted(photos[name])
        pick = sorted(np.random.default_rng([seed, 11, len(out)]).permutation(len(files))[:per_person])
        out += [Record(files[i], NONE, YALEB_TRAIN, f"{YALEB_TRAIN}:{name}/{files[i].name}") for i in pick]
    return out


def ood_folders(records: list[Record], fraction: float, seed: int) -> set[str]:
    """Whole rwmfd crawl folders (seeded) holding about ``fraction`` of its images: never trained on."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.group] = counts.get(r.group, 0) + 1
    names = sorted(counts)
    rng = np.random.default_rng(seed + 1)
    total, chosen, acc = sum(counts.values()), set(), 0
    for i in rng.permutation(len(names)):
        if acc >= fraction * total:
            break
        if acc + counts[names[i]] > 1.5 * fraction * total:  # skip a folder that would overshoot
            continue
        chosen.add(names[i])
        acc += counts[names[i]]
    return chosen


def union_near_duplicates(crops: np.ndarray, groups: list[str], threshold: float = 0.97) -> list[str]:
    """Merge groups of crops whose 16x16 grey thumbnails (or their mirror images) correlate above ``threshold``."""
    import cv2

    n = len(crops)
    if n == 0:
        return list(groups)
    thumbs = np.stack([cv2.resize(c.mean(axis=2).astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA) for c in crops])
    flat = thumbs.reshape(n, -1)
    mirror = thumbs[:, :, ::-1].reshape(n, -1)

    def norm(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(1, keepdims=True)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)

    f, m = norm(flat), norm(mirror)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    key_to_idx: dict[str, int] = {}
    for i, g in enumerate(groups):  # same name group -> same set
        if g in key_to_idx:
            parent[find(i)] = find(key_to_idx[g])
        else:
            key_to_idx[g] = i
    for start in range(0, n, 512):
        sim = np.maximum(f[start : start + 512] @ f.T, f[start : start + 512] @ m.T)
        for a, b in zip(*np.nonzero(sim > threshold)):
            i, j = start + int(a), int(b)
            if i != j:
                parent[find(i)] = find(j)
    name: dict[int, str] = {}
    for i in range(n):  # a set is named by its smallest member name: stable when unrelated images are added
        r = find(i)
        name[r] = min(name.get(r, groups[i]), groups[i])
    return [name[find(i)] for i in range(n)]


def split_groups(groups: list[str], strata: list[str], seed: int, test_fraction: float = 0.1, val_fraction: float = 0.1) -> list[str]:
    """Seeded train/val/test per group, from a hash of (seed, stratum, group): about ``test_fraction`` of the
    groups go to test and ``val_fraction`` of the rest to val, and a group's split never depends on which
    other images were cropped (adding data cannot move a test face into training)."""
    import hashlib

    out = []
    for g, s in zip(groups, strata):
        h = hashlib.blake2b(f"{seed}|{s}|{g}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "big") / 2.0**64
        if u < test_fraction:
            out.append("test")
        elif u < test_fraction + val_fraction * (1 - test_fraction):
            out.append("val")
        else:
            out.append("train")
    return out


# ----------------------------------------------------------------------------- cropping + synthesis


def center_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    """Fallback when no face is detected in a face-crop picture: square centre crop, resized."""
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(image[y0 : y0 + s, x0 : x0 + s], (size, size), interpolation=cv2.INTER_AREA)


def incorrect_landmarks(lm68: np.ndarray, style: str) -> np.ndarray:
    """68 landmarks squeezed towards the chin so a mask fitted to them leaves the nose ("nose_out") or the
    nose and mouth ("chin") uncovered: the incorrectly worn masks of the 3-class task. Eyes stay put."""
    from occluface.data.occlusion.common import face_frame

    if style not in ("nose_out", "chin"):
        raise OccluFaceError(f"incorrect mask style must be 'nose_out' or 'chin', got {style!r}")
    lm = np.asarray(lm68, np.float64).copy()
    _, _, em, down = face_frame(lm)
    chin = lm[8]
    top = lm[28] + 0.5 * (lm[29] - lm[28])  # where the mask's upper edge sits (see masks.keypoints)
    anchor = lm[33] + 0.1 * em * down if style == "nose_out" else lm[57] - 0.05 * em * down
    t_top, t_new = float((top - chin) @ down), float((anchor - chin) @ down)
    scale = t_new / t_top if t_top < 0 else 1.0
    moved = list(range(0, 17)) + list(range(27, 36)) + list(range(48, 68))
    t = (lm[moved] - chin) @ down
    lm[moved] = lm[moved] + ((scale - 1.0) * t)[:, None] * down[None, :]
    return lm.astype(np.float32)


def synth_masks(image: np.ndarray, seed: int, landmarks5: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(correctly masked, incorrectly masked) copies of an unmasked face photo; None where it fails.

    With the detector's 5 points the 68 landmarks are fitted in that face's box (no second detection)."""
    from occluface.data.occlusion import apply, find_landmarks
    from occluface.data.occlusion.faces import _fit68, box_from_five

    try:
        lm = _fit68(image, box_from_five(landmarks5)) if landmarks5 is not None else find_landmarks(image)[0]
    except OccluFaceError:
        return None, None
    rng = np.random.default_rng(seed)
    try:
        good = apply(image, "mask", seed=seed, landmarks=lm)
        style = "nose_out" if rng.random() < 0.6 else "chin"
        bad = apply(image, "mask", seed=seed + 7, landmarks=incorrect_landmarks(lm, style))
    except OccluFaceError:
        return None, None
    return good, bad


def main_face(detector: Any, image: np.ndarray) -> Any:
    """The largest, most central detected face of an image, or None."""
    from occluface.faces.detect import pick_main_face

    faces = detector.detect(image)
    return pick_main_face(faces, image.shape) if faces else None


PART_SOURCES = ("mask_cls/with_mask", "mask_cls/without_mask", "rwmfd", "lfw")
#: Sources whose unmasked faces get synthetic masks (``LFW_TRAIN`` always, the others by ``synth_fraction``).
SYNTH_SOURCES = ("mask_cls/without_mask", LFW_TRAIN, YALEB_TRAIN)
#: Training-only sources (never validation or test).
TRAIN_ONLY = (LFW_TRAIN, YALEB_TRAIN)


def _sources(lfw_train: int, yaleb_train: int = 0) -> tuple[str, ...]:
    return PART_SOURCES + ((LFW_TRAIN,) if lfw_train else ()) + ((YALEB_TRAIN,) if yaleb_train else ())


def _records(root: Path, seed: int, lfw: int, limit: int | None, max_unmasked: int | None = None,
             lfw_train: int = 0, yaleb_train: int = 0) -> dict[str, list[Record]]:
    cls_records = list_mask_cls(root)
    out = {
        "mask_cls/with_mask": [r for r in cls_records if r.source == "mask_cls/with_mask"],
        "mask_cls/without_mask": [r for r in cls_records if r.source == "mask_cls/without_mask"],
        "rwmfd": list_rwmfd(root) if (root / "rwmfd_masked").is_dir() else [],
        "lfw": list_lfw(root, lfw, seed),
        LFW_TRAIN: list_lfw(root, lfw, seed, train=lfw_train),
        YALEB_TRAIN: list_yaleb_train(root, yaleb_train, seed),
    }
    if max_unmasked:  # a seeded subset of the unmasked photos (each gets synthetic masks: the costly part)
        v = out["mask_cls/without_mask"]
        keep = sorted(np.random.default_rng(seed + 3).permutation(len(v))[:max_unmasked])
        out["mask_cls/without_mask"] = [v[i] for i in keep]
    if limit:
        out = {k: v[: (max(1, limit // 4) if k in ("lfw", *TRAIN_ONLY) else limit)] for k, v in out.items()}
    return out


def _part_path(cache: Path, source: str) -> Path:
    return cache.with_name(f"{cache.stem}.part-{source.replace('/', '-')}.npz")


_PART_KEYS = ("images", "label", "source", "group", "path", "synthetic", "skipped")


def crop_part(root: Path, records: list[Record], part: Path, *, seed: int, synth_fraction: float, detector: str,
              progress: bool = True, every: int = 100) -> dict[str, np.ndarray]:
    """Aligned crops of one source's records (+ synthetic masks for unmasked mask_cls faces) into ``part``.

    Records are visited in a seeded order and the part file is rewritten every ``every`` records with a
    ``done`` count, so an interrupted build resumes where it stopped and a partial part is a random subset.
    """
    from rich.progress import Progress

    from occluface.data.images import load_rgb
    from occluface.errors import ImageError
    from occluface.faces.align import align_face
    from occluface.faces.detect import create_detector

    acc: dict[str, list] = {k: [] for k in _PART_KEYS}
    done = 0
    if part.is_file():
        with np.load(part, allow_pickle=False) as z:
            if "complete" not in z.files or bool(z["complete"]):
                return {k: z[k] for k in z.files}
            done = int(z["done"])
            for k in _PART_KEYS:  # resume: keep what is already cropped
                acc[k] = list(z[k])
    det = create_detector(detector)
    order = np.random.default_rng(seed + 5).permutation(len(records))

    def add(img, label, rec, synth=False):
        acc["images"].append(img)
        acc["label"].append(label)
        acc["source"].append(rec.source + ("/synthetic" if synth else ""))
        acc["group"].append(rec.group)
        acc["path"].append(rec.path.relative_to(root).as_posix())
        acc["synthetic"].append(synth)

    def arrays(complete: bool) -> dict[str, np.ndarray]:
        return {
            "images": np.stack(acc["images"]) if acc["images"] else np.zeros((0, CROP, CROP, 3), np.uint8),
            "label": np.array(acc["label"], np.int64),
            "source": np.array(acc["source"], dtype="<U64"),
            "group": np.array(acc["group"], dtype="<U128"),
            "path": np.array(acc["path"], dtype="<U256"),
            "synthetic": np.array(acc["synthetic"], bool),
            "skipped": np.array(acc["skipped"], dtype="<U256"),
            "done": np.array(done),
            "complete": np.array(complete),
        }

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"cropping {records[0].source if records else ''}", total=len(records), completed=done)
        while done < len(records):
            k = int(order[done])
            rec = records[k]
            done += 1
            bar.advance(task)
            try:
                img = load_rgb(rec.path)
            except (ImageError, OccluFaceError):
                acc["skipped"].append(rec.path.relative_to(root).as_posix())
                continue
            face = main_face(det, img)
            # a mask_cls photo is labelled as a whole, so even a small detected face beats a centre crop of a
            # street scene; in rwmfd tiny detections are mostly bystanders, so those photos are skipped
            min_side = 8 if rec.source.startswith("mask_cls") else 20
            if face is None or min(face.width, face.height) < min_side:
                if rec.source.startswith("mask_cls"):  # these are face crops already
                    add(center_crop(img), rec.label, rec)
                else:
                    acc["skipped"].append(rec.path.relative_to(root).as_posix())
            else:
                add(align_face(img, face.landmarks, CROP), rec.label, rec)
                wants_synth = rec.source in TRAIN_ONLY or np.random.default_rng(seed * 100003 + k).random() < synth_fraction
                if rec.source in SYNTH_SOURCES and wants_synth:
                    good, bad = synth_masks(img, seed * 100003 + k, face.landmarks)
                    if good is not None:
                        add(align_face(good, face.landmarks, CROP), CORRECT, rec, synth=True)
                        add(align_face(bad, face.landmarks, CROP), INCORRECT, rec, synth=True)
            if done % every == 0 and done < len(records):
                _save_npz(part, arrays(False))
    out = arrays(True)
    _save_npz(part, out)
    return out


def _save_npz(path: Path, data: dict[str, np.ndarray]) -> None:
    save_npz(path, **data)


def build_parts(root: str | Path, cache: str | Path, sources: tuple[str, ...] | None = None, *, seed: int = 0,
                lfw: int = 200, synth_fraction: float = 0.6, limit: int | None = None, detector: str = "auto",
                max_unmasked: int | None = None, lfw_train: int = 0, yaleb_train: int = 0, progress: bool = True) -> None:
    """Crop the given sources (default: all in use) into per-source part files next to ``cache`` (resumable;
    one process per source)."""
    root, cache = Path(root), Path(cache)
    recs = _records(root, seed, lfw, limit, max_unmasked, lfw_train, yaleb_train)
    sources = _sources(lfw_train, yaleb_train) if sources is None else sources
    for source in sources:
        crop_part(root, recs[source], _part_path(cache, source), seed=seed, synth_fraction=synth_fraction,
                  detector=detector, progress=progress)


def build_dataset(
    root: str | Path,
    cache: str | Path,
    *,
    seed: int = 0,
    ood_fraction: float = 0.3,
    lfw: int = 150,
    synth_fraction: float = 0.5,
    limit: int | None = None,
    detector: str = "auto",
    max_unmasked: int | None = None,
    val_fraction: float = 0.2,
    lfw_train: int = 0,
    yaleb_train: int = 0,
    allow_partial: bool = False,
    progress: bool = True,
    audit: bool = True,
) -> dict[str, np.ndarray]:
    """Build (or load from ``cache``) the cropped, labelled, split dataset; returns the arrays of the npz,
    with the label audit of :mod:`occluface.maskcheck.audit` applied unless ``audit`` is False (the cache
    itself always holds the folder labels).

    Keys: images (N,112,112,3 uint8), label (0 none / 1 correct / 2 incorrect), split (train/val/test/ood/dup:
    a near-duplicate of a never-seen photo, used for nothing),
    source, group, path, synthetic (bool). ``limit`` keeps the first n images of each source (tests).
    ``max_unmasked`` (None: all 1000) caps the unmasked mask_cls photos; ``val_fraction`` is the share of the
    non-test groups used for validation (0.2: a validation split large enough to tell recipes apart; the
    test groups do not depend on it). ``lfw_train`` adds that many lfw_dev people as training faces, each
    also synthetically masked (never validation or test, never the never-seen lfw people); ``yaleb_train``
    adds that many photos of each Yale B training person (:func:`yaleb_training_people`) the same way. Crops are made
    per source into part files first (see :func:`build_parts`), so an interrupted build resumes.
    """
    root, cache = Path(root), Path(cache)
    if cache.is_file():
        data = load_npz(cache, "dataset cache")
        if int(data.get("version", np.array(0))) == CACHE_VERSION:
            if bool(data.get("partial", False)) and not allow_partial:
                data = None  # made from interrupted parts: resume them and assemble again
            elif "seed" in data and int(data["seed"]) != seed:
                raise DatasetError(f"{cache}: built with seed {int(data['seed'])}, not {seed}; use another --cache")
            elif abs(float(data.get("val_fraction", np.array(0.1))) - val_fraction) > 1e-9:
                raise DatasetError(f"{cache}: built with val_fraction {float(data.get('val_fraction', np.array(0.1)))}, "
                                   f"not {val_fraction}; use another --cache")
            elif int(data.get("lfw_train", np.array(0))) != lfw_train:
                raise DatasetError(f"{cache}: built with {int(data.get('lfw_train', np.array(0)))} extra lfw_dev training "
                                   f"people, not {lfw_train}; use another --cache")
            elif int(data.get("yaleb_train", np.array(0))) != yaleb_train:
                raise DatasetError(f"{cache}: built with {int(data.get('yaleb_train', np.array(0)))} Yale B training photos "
                                   f"per person, not {yaleb_train}; use another --cache")
            if data is not None:
                return _audited(data) if audit else data
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder not found (pass --data pointing at shared/data)")
    list_mask_cls(root)  # clear error when the set is missing
    if not allow_partial:
        build_parts(root, cache, seed=seed, lfw=lfw, synth_fraction=synth_fraction, limit=limit, detector=detector,
                    max_unmasked=max_unmasked, lfw_train=lfw_train, yaleb_train=yaleb_train, progress=progress)
    parts, names = [], []
    for source in _sources(lfw_train, yaleb_train):
        if not _part_path(cache, source).is_file():
            raise DatasetError(f"{_part_path(cache, source)}: not cropped yet; run without allow_partial to build it")
        with np.load(_part_path(cache, source), allow_pickle=False) as z:
            parts.append({k: z[k] for k in z.files})
        names.append(source)
    incomplete = [s for s, p in zip(names, parts) if not bool(p.get("complete", True))]
    if incomplete and not allow_partial:
        raise DatasetError(f"parts {', '.join(incomplete)} of {cache} are incomplete; rerun to resume")
    keys = ("images", "label", "source", "group", "path", "synthetic")
    data = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    skipped = np.concatenate([p["skipped"] for p in parts])
    # which crawl folders are never seen depends on the folder listing only, not on what was cropped
    held = ood_folders(list_rwmfd(root), ood_fraction, seed) if (root / "rwmfd_masked").is_dir() else set()
    is_ood = (data["source"] == "lfw") | ((data["source"] == "rwmfd") & np.isin(data["group"], sorted(held)))
    # rwmfd folders decide what is never seen; within the rest each photo is its own group (plus near-duplicates)
    keys0 = [f"rwmfd:{pa}" if s == "rwmfd" else g for g, s, pa in zip(data["group"], data["source"], data["path"])]
    grp = union_near_duplicates(data["images"], keys0)
    strata = [s.replace("/synthetic", "") for s in data["source"].tolist()]
    split = np.array(split_groups(grp, strata, seed, val_fraction=val_fraction), dtype="<U5")
    split[is_ood] = "ood"
    for only in TRAIN_ONLY:
        split[np.char.startswith(data["source"], only)] = "train"  # extra faces: training only
    # a near-duplicate of a never-seen photo must not be trained on either: set it aside ("dup")
    ood_groups = set(np.asarray(grp)[is_ood].tolist())
    split[~is_ood & np.isin(np.asarray(grp), sorted(ood_groups))] = "dup"
    data.update(group=np.array(grp), split=split, skipped=skipped if skipped.size else np.array([""]),
                version=np.array(CACHE_VERSION), seed=np.array(seed), partial=np.array(bool(incomplete)),
                val_fraction=np.array(val_fraction), lfw_train=np.array(lfw_train), yaleb_train=np.array(yaleb_train))
    _save_npz(cache, data)
    return _audited(data) if audit else data


def _audited(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from occluface.maskcheck.audit import apply_audit

    return apply_audit(data)


def select(data: dict[str, np.ndarray], split: str, classes: int, *, real_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split for a 2-class (incorrect dropped, correct -> 1) or 3-class task."""
    if split not in SPLITS:
        raise OccluFaceError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    keep = data["split"] == split
    if classes == 2:
        keep &= data["label"] != INCORRECT
    if real_only:
        keep &= ~data["synthetic"]
    return data["images"][keep], data["label"][keep]


