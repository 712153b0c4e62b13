"""`occluface bench openset`: matchers side by side through the product's own code, open set, held-out styles.

What a gate operator needs to know is how often a stranger (or an enrolled person) is let in *as someone
else*. Every matcher here is the object the recognition service runs (``RoutedMatcher``, ``SFaceMatcher``,
dlib's network through its exact port), on the same detections, on byte-identical probes:

* **people**: the seeded held-out people of ``lfw_dev`` (300) and Yale B (10), the same ones
  ``occluface_resnet`` never trained on (``split="heldout"``); or as many seeded *tuning* people drawn from
  the rest (``split="tuning"``: what thresholds and recipe choices may look at);
* **mask styles**: :data:`occluface.data.occlusion.styles.HELDOUT_STYLES` (or the tuning styles), each drawn
  on the full photo from dlib's 68 landmarks, then the photo is detected again as in deployment (a face the
  detector loses there counts as a miss, never as a match);
* **gallery**: each person's first photo (Yale B: the frontal-light one), bare;
* **open set** at gallery sizes 100, 1,000 and 5,000: half of the people (seeded) are enrolled, the other
  half are strangers whose probes must come out "unknown"; the rest of the gallery is distractors
  (``lfw_single/``, one photo each, then first photos of ``lfw_dev`` people outside the evaluation set).
  Per condition: **named correctly** (share of enrolled people's probes named right above the threshold)
  and **named wrong** (share of all probes, enrolled and strangers, given a name that is not theirs);
* **same-mask impostors**: person A's probe wearing style S against person B enrolled wearing the identical
  mask (same style, same seed) and wearing another style; false-accept rates at the shipped threshold.

Nothing here is imported by the product; the bench calls the product.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.bench.reports import grouped_bars, pct, pyplot, report_dir, save_figure, save_report
from occluface.progress import progress_bar
from occluface.io import atomic_write
from occluface.errors import DatasetError, OccluFaceError

MATCHERS: tuple[str, ...] = ("dlib_resnet", "routed", "sface", "sface-erase")
GALLERY_SIZES: tuple[int, ...] = (100, 1000, 5000)
SPLITS = ("heldout", "tuning", "fresh", "fresh2")
#: How many people every tuning run drew (thresholds, erase row, detector candidates were all chosen on these).
TUNING_DRAW = {"lfw": 400, "yaleb": 28}
#: the first fresh draw (docs/results/detector-roi/RULE.txt, stage F): 300 LFW people; "fresh2" is every one left
FRESH_DRAW = 300

_WORKER: dict[str, Any] = {}


# ----------------------------------------------------------------------------- matchers as the service runs them
class _Dlib:
    id = "dlib_resnet"

    def __init__(self):
        from occluface.faces.embed import FaceEmbedder

        self.embedder = FaceEmbedder("dlib_resnet_torch")  # dlib's network exactly (tests/test_dlib_port.py)

    def enrol(self, image, face):
        return self.embedder.embed_chips([self.embedder.chip(image, face.box)])[0]

    def probe(self, image, face):
        return self.enrol(image, face), False


class _Routed:
    id = "routed"

    def __init__(self):
        from occluface.recognition.routed import RoutedMatcher

        self.m = RoutedMatcher()

    def enrol(self, image, face):
        g = self.m.gallery_vectors(image, [face])[0]
        return g / np.linalg.norm(g)  # as the store keeps it

    def probe(self, image, face):
        from occluface.recognition.routed import route_masked

        masked = route_masked(image, [face])
        return self.m.probe_vectors(image, [face], masked)[0] * self.m.score_scale, bool(masked[0])


class _SFace:
    def __init__(self, erase: bool, erase_rows: Sequence[int] = ()):
        from occluface.recognition.sface import SFaceMatcher

        self.m = SFaceMatcher(erase=erase)
        self.id = self.m.model_id
        self.erase_rows = tuple(erase_rows)

    def enrol(self, image, face):
        return self.m.enrol_vectors(image, [face])[0]

    def probe(self, image, face):
        v, states = self.m.probe(image, [face])
        from occluface.recognition.sface import is_masked

        return v[0] * self.m.score_scale, is_masked(states[0])

    def extra(self, image, face) -> dict[str, np.ndarray]:
        """Tuning only: plain SFace vectors of the chip erased from each candidate row."""
        from occluface.recognition.sface import chips, erase_lower

        c = chips(image, [face])
        return {f"erase{r}": self.m.embed(erase_lower(c, r))[0] for r in self.erase_rows}


def _build(names: Sequence[str], erase_rows: Sequence[int]):
    out = []
    for n in names:
        if n == "dlib_resnet":
            out.append(_Dlib())
        elif n == "routed":
            out.append(_Routed())
        elif n in ("sface", "sface-erase"):
            out.append(_SFace(n == "sface-erase", erase_rows if n == "sface" else ()))
        else:
            raise OccluFaceError(f"unknown matcher {n!r}; choose from {', '.join(MATCHERS)}")
    return out


def _init_worker(names, erase_rows, threads, detector="auto"):
    from occluface.faces.detect import create_detector
    from occluface.runtime import limit_threads

    limit_threads(threads)
    _WORKER["matchers"] = _build(names, erase_rows)
    _WORKER["detector"] = create_detector(detector)


def _closest(faces, box):
    from occluface.faces.detect import iou

    if not faces:
        return None
    ious = iou(np.asarray(box, np.float32), np.stack([f.box for f in faces]))
    k = int(np.argmax(ious))
    return faces[k] if ious[k] >= 0.3 else None


def _style_seed(style: str, salt: int) -> int:
    return int(np.random.SeedSequence([int(salt), *style.encode()]).generate_state(1)[0])


def _job(job: dict) -> dict:
    """One photo: detect, then each condition (clean / a style) worn, re-detected and run through every matcher."""
    from occluface.data.images import load_rgb
    from occluface.data.occlusion.styles import wear
    from occluface.faces.detect import pick_main_face
    from occluface.faces.landmarks import landmarks68

    det, matchers = _WORKER["detector"], _WORKER["matchers"]
    out: dict[str, Any] = {"key": job["key"], "ok": False}
    try:
        img = load_rgb(job["path"])
    except OccluFaceError as exc:
        out["error"] = str(exc)
        return out
    face = pick_main_face(det.detect(img), img.shape)
    if face is None:
        out["error"] = "no face found"
        return out
    out["ok"] = True
    lm = landmarks68(img, face.box)
    res: dict[str, Any] = {}
    for cond, seed in job["conditions"]:
        im = img if cond == "clean" else wear(img, cond.split("@")[0], lm, seed)
        f = face if cond == "clean" else _closest(det.detect(im), face.box)
        row: dict[str, Any] = {"found": f is not None}
        if f is not None:
            for m in matchers:
                if job["role"] == "gallery":
                    row[m.id] = np.asarray(m.enrol(im, f), np.float32)
                else:
                    v, masked = m.probe(im, f)
                    row[m.id] = np.asarray(v, np.float32)
                    row[m.id + ":masked"] = masked
                if getattr(m, "erase_rows", ()):
                    for k, v2 in m.extra(im, f).items():
                        row[f"{m.id}:{k}"] = v2
        res[cond] = row
    out["rows"] = res
    return out


# ----------------------------------------------------------------------------- the people and photos
def _people(root: Path, split: str, seed: int, lfw_n: int, yaleb_n: int, probes_per_person: int):
    from occluface.data.identities import list_identities, split_identity
    from occluface.data.identities import heldout_identities

    sets = []
    for ds, sub, n in (("lfw", "lfw_dev", lfw_n), ("yaleb", "yaleb", yaleb_n)):
        folder = root / sub
        if not folder.is_dir() or not n:
            continue
        ids = {k: v for k, v in list_identities(folder).items() if len(v) >= 2}
        salt = sub
        held = heldout_identities(ids, {"lfw": 300, "yaleb": 10}[ds], seed, salt=salt)
        rest = sorted(set(ids) - set(held))
        if split == "heldout":
            names = held[:n]
        elif split == "tuning":
            names = heldout_identities(rest, min(n, len(rest)), seed, salt=f"{salt}:tuning")
        else:  # fresh: people outside the held-out set that no tuning run and no calibration ever drew
            used = set(heldout_identities(rest, TUNING_DRAW[ds], seed, salt=f"{salt}:tuning"))
            if ds == "lfw":  # and the people the routed matcher's thresholds were picked on
                from occluface.bench.routing_calibration import calibration_people

                used |= set(calibration_people(ids))
            unused = sorted(set(rest) - used)
            if split == "fresh2":  # the people left once the first fresh draw (FRESH_DRAW of them) was scored
                unused = sorted(set(unused) - set(heldout_identities(unused, FRESH_DRAW, seed, salt=f"{salt}:fresh")))
            names = heldout_identities(unused, min(n, len(unused)), seed, salt=f"{salt}:{split}")
            if not names:
                continue  # Yale B: every person outside its held-out 10 is a tuning person
        items = []
        for name in names:
            if ds == "yaleb":
                g, probes = split_identity(name, ids[name], probes_per_person, seed)
            else:
                g, probes = ids[name][0], ids[name][1 : 1 + probes_per_person]
            items.append((name, g, True))
            items += [(name, p, False) for p in probes]
        sets.append((ds, names, items, set(held)))
    if not sets:
        raise DatasetError(f"{root}: no lfw_dev/ or yaleb/ folder with 2+ photos for 2+ people")
    return sets


def _distractors(root: Path, n: int, exclude: set[str], seed: int) -> list[tuple[str, Path]]:
    from occluface.data.identities import list_identities

    out = []
    single = root / "lfw_single"
    if single.is_dir():
        out += [(f"single:{k}", v[0]) for k, v in sorted(list_identities(single).items())]
    dev = root / "lfw_dev"
    if len(out) < n and dev.is_dir():
        rest = [(f"dev:{k}", v[0]) for k, v in sorted(list_identities(dev).items()) if k not in exclude]
        rng = np.random.default_rng([int(seed), 77])
        rng.shuffle(rest)
        out += rest[: n - len(out)]
    return out[:n]


# ----------------------------------------------------------------------------- running
def _run_jobs(jobs, names, erase_rows, workers, threads, bar_label, progress, cache_file: Path | None, detector="auto"):
    if cache_file is not None and cache_file.is_file():
        with open(cache_file, "rb") as fh:
            import pickle

            return pickle.load(fh)
    results = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(bar_label, total=len(jobs))
        if workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(names, erase_rows, threads, detector)) as pool:
                for r in pool.imap_unordered(_job, jobs, chunksize=4):
                    results[r["key"]] = r
                    bar.advance(task)
        else:
            _init_worker(names, erase_rows, threads, detector)
            for j in jobs:
                r = _job(j)
                results[r["key"]] = r
                bar.advance(task)
    if cache_file is not None:
        import pickle

        with atomic_write(cache_file, "wb") as fh:
            pickle.dump(results, fh)
    return results


def _cache(cache, tag: str, payload) -> Path | None:
    if cache is None:
        return None
    key = hashlib.sha1(json.dumps(payload, default=str).encode()).hexdigest()[:16]
    return Path(cache) / f"openset_{tag}_{key}.pkl"


def run_openset(
    data: str | Path,
    *,
    matchers: Sequence[str] = MATCHERS,
    split: str = "heldout",
    styles: Sequence[str] | None = None,
    lfw_people: int = 300,
    yaleb_people: int = 10,
    probes_per_person: int = 8,
    gallery_sizes: Sequence[int] = GALLERY_SIZES,
    same_mask_people: int = 100,
    erase_rows: Sequence[int] = (),
    seed: int = 0,
    workers: int = 2,
    threads: int = 1,
    cache: str | Path | None = None,
    progress: bool = True,
    keep_raw: bool = False,
    detector: str | None = None,
) -> dict[str, Any]:
    from occluface.data.occlusion.styles import HELDOUT_STYLES, TUNING_STYLES, check_styles

    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected the data folder holding lfw_dev/, yaleb/, lfw_single/)")
    if split not in SPLITS:
        raise OccluFaceError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    styles = list(styles) if styles else list(TUNING_STYLES if split == "tuning" else HELDOUT_STYLES)
    check_styles(styles, "tuning" if split == "tuning" else "heldout")
    matchers = list(matchers)
    unknown = [m for m in matchers if m not in MATCHERS]
    if unknown:
        raise OccluFaceError(f"unknown matcher(s) {', '.join(unknown)}; choose from {', '.join(MATCHERS)}")
    from occluface.faces.detect import DEFAULT_DETECTOR

    detector = detector or DEFAULT_DETECTOR
    started = time.perf_counter()
    sets = _people(root, split, seed, lfw_people, yaleb_people, probes_per_person)
    result: dict[str, Any] = {"benchmark": "openset", "data": str(root), "split": split, "styles": styles,
                              "matchers": matchers, "seed": seed, "gallery_sizes": list(gallery_sizes),
                              "probes_per_person": probes_per_person, "detector": detector,
                              "erase_rows": [int(r) for r in erase_rows], "datasets": {}}
    conditions = ["clean", *styles]
    held_lfw = next((h for ds, _, _, h in sets if ds == "lfw"), set())
    n_distr = 0 if split == "tuning" else max(gallery_sizes)
    distr = _distractors(root, n_distr, held_lfw | {n for ds, names, _, _ in sets if ds == "lfw" for n in names}, seed)
    common = dict(names=matchers, erase_rows=tuple(erase_rows), workers=workers, threads=threads, progress=progress,
                  detector=detector)
    from occluface.recognition.thresholds import load_thresholds

    versions = [detector] + [load_thresholds(m).to_dict() for m in matchers] + (
        [load_thresholds("sface-erase_masked").to_dict(), load_thresholds("routed_masked").to_dict()])
    d_jobs = [{"key": f"d{i}", "path": str(p), "role": "gallery", "conditions": [("clean", 0)]} for i, (_, p) in enumerate(distr)]
    d_res = _run_jobs(d_jobs, bar_label=f"{len(d_jobs)} distractors",
                      cache_file=_cache(cache, "distractors", [matchers, [str(p) for _, p in distr], versions]), **common)
    distractor_vecs = {m: np.stack([d_res[j["key"]]["rows"]["clean"][m] for j in d_jobs
                                    if d_res[j["key"]]["ok"] and m in d_res[j["key"]]["rows"]["clean"]])
                       if d_jobs else np.zeros((0, 1), np.float32) for m in matchers}
    result["n_distractors"] = {m: int(len(v)) if d_jobs else 0 for m, v in distractor_vecs.items()}
    rng = np.random.default_rng([seed, 5])
    raw: dict[str, Any] = {}
    for ds, names, items, _ in sets:
        jobs = []
        sm_people = set() if split == "tuning" else set(names[: same_mask_people])
        sm_styles = styles[:3]
        first_probe: set[str] = set()
        for i, (name, path, is_g) in enumerate(items):
            if is_g:  # enrolment photo bare, and (same-mask check) wearing the check's styles with shared seeds
                conds = [("clean", 0)] + ([(f"{s}@same", _style_seed(s, 1)) for s in sm_styles] if name in sm_people else [])
            else:  # every probe in every style (seeds of its own), and its person's first probe in the shared masks
                conds = [("clean", 0)] + [(s, _style_seed(s, 1000 + i)) for s in styles]
                if name in sm_people and name not in first_probe:
                    conds += [(f"{s}@same", _style_seed(s, 1)) for s in sm_styles]
                    first_probe.add(name)
            jobs.append({"key": f"{ds}{i}", "path": str(path), "role": "gallery" if is_g else "probe", "name": name,
                         "conditions": conds})
        res = _run_jobs(jobs, bar_label=f"{ds}: {len(names)} {split} people",
                        cache_file=_cache(cache, ds, [matchers, list(erase_rows), conditions, items, sm_styles,
                                                      same_mask_people, versions]), **common)
        result["datasets"][ds] = _score(jobs, res, matchers, conditions, distractor_vecs, gallery_sizes, rng,
                                        sm_styles, erase_rows)
        raw[ds] = (jobs, res)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if keep_raw:
        result["_raw"] = raw
    return result


def _score(jobs, res, matchers, conditions, distractors, gallery_sizes, rng, sm_styles, erase_rows):
    g_vec, g_name = {m: [] for m in matchers}, []
    gallery_worn: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    probes: dict[str, list] = {c: [] for c in conditions}
    same_mask: list[tuple[str, str, dict]] = []
    missing = {c: 0 for c in conditions}
    for j in jobs:
        r = res[j["key"]]
        if j["role"] == "gallery":
            if not r["ok"] or not r["rows"]["clean"]["found"]:
                continue
            g_name.append(j["name"])
            for m in matchers:
                g_vec[m].append(r["rows"]["clean"][m])
            for s in sm_styles:
                row = r["rows"].get(f"{s}@same")
                if row and row["found"]:
                    gallery_worn[(j["name"], s)] = row
        else:
            for c in conditions:
                row = r["rows"].get(c) if r["ok"] else None
                if row is None or not row["found"]:
                    missing[c] += 1
                    probes[c].append((j["name"], None))
                else:
                    probes[c].append((j["name"], row))
            for s in sm_styles:
                row = r["rows"].get(f"{s}@same") if r["ok"] else None
                if row and row["found"]:
                    same_mask.append((j["name"], s, row))
    g_name_a = np.asarray(g_name)
    people = sorted(set(g_name))
    enrolled_half = set(rng.permutation(people)[: max(1, len(people) // 2)].tolist())
    out: dict[str, Any] = {"n_people": len(people), "n_probes": len(probes["clean"]), "detector_missed": missing,
                           "matchers": {}}
    for m in matchers:
        G = np.stack(g_vec[m]) if g_vec[m] else np.zeros((0, 1))
        threshold = _threshold(m)
        rows = {}
        for c in conditions:
            labels = np.asarray([n for n, _ in probes[c]])
            found = np.asarray([row is not None for _, row in probes[c]])
            P = np.stack([row[m] if row is not None else np.zeros(G.shape[1], np.float32) for _, row in probes[c]])
            masked_share = float(np.mean([row[m + ":masked"] for _, row in probes[c] if row is not None])) if found.any() else None
            S = P @ G.T
            best = S.argmax(1)
            rank1 = float(np.mean(found & (g_name_a[best] == labels)))
            row_out = {"rank1": rank1, "masked_path": masked_share, "n": int(len(labels)), "missed": int((~found).sum())}
            for size in gallery_sizes:
                row_out[f"open{size}"] = _open_set(S, found, labels, g_name_a, distractors[m], P, size, enrolled_half,
                                                  threshold)
            rows[c] = row_out
        clean = rows["clean"]["rank1"] or 1e-9
        for c in conditions:
            rows[c]["ratio_to_clean"] = rows[c]["rank1"] / clean
        sm = _same_mask(m, same_mask, gallery_worn, threshold, sm_styles) if same_mask else None
        out["matchers"][m] = {"threshold": threshold, "conditions": rows, "same_mask": sm}
    if erase_rows and "sface" in matchers:
        out["erase_tuning"] = _erase_tuning(jobs, res, conditions, erase_rows)
    return out


def _threshold(m: str) -> float:
    from occluface.recognition.thresholds import load_thresholds

    return float(load_thresholds(m).identify)


def _open_set(S, found, labels, g_name, D, P, size, enrolled_half, threshold) -> dict[str, Any]:
    """Named-correctly / named-wrong shares with a gallery of ``size`` (enrolled people + distractors)."""
    people = sorted(set(g_name))
    enrolled = set(sorted(enrolled_half)[:size])
    n_d = max(0, size - len(enrolled))
    if n_d > len(D):
        return {"gallery": None, "note": f"only {len(D)} distractors"}
    cols = np.asarray([n in enrolled for n in g_name])
    Sg = S[:, cols]
    names = g_name[cols]
    best_s = Sg.max(1) if Sg.shape[1] else np.full(len(S), -np.inf)
    best_n = names[Sg.argmax(1)] if Sg.shape[1] else np.asarray([""] * len(S))
    if n_d:
        Sd = P @ D[:n_d].T
        d_best = Sd.max(1)
        take_d = d_best > best_s
        best_s = np.where(take_d, d_best, best_s)
        best_n = np.where(take_d, "<distractor>", best_n)
    named = found & (best_s >= threshold)
    is_enrolled = np.asarray([n in enrolled for n in labels])
    correct = named & (best_n == labels)
    wrong = named & (best_n != labels)
    return {
        "gallery": int(cols.sum() + n_d),
        "enrolled_people": len(enrolled),
        "distractors": int(n_d),
        "strangers": int(len(set(people) - enrolled)),
        "named_correctly": float(correct[is_enrolled].mean()) if is_enrolled.any() else None,
        "named_wrong": float(wrong.mean()),
        "named_wrong_count": int(wrong.sum()),
        "strangers_named": float(wrong[~is_enrolled].mean()) if (~is_enrolled).any() else None,
        "n_probes": int(len(labels)),
    }


def _same_mask(m, same_mask, gallery_worn, threshold, sm_styles) -> dict[str, Any]:
    """Person A's probe in style S (seed shared) vs person B enrolled in S (same mask) and in S' (another)."""
    people = sorted({n for n, _ in gallery_worn})
    if len(people) < 2:
        return None
    nxt = {p: people[(i + 1) % len(people)] for i, p in enumerate(people)}
    same, diff = [], []
    for name, s, row in same_mask:
        b = nxt.get(name)
        if b is None or (b, s) not in gallery_worn:
            continue
        v = row[m]
        same.append(float(v @ gallery_worn[(b, s)][m]))
        other = [t for t in sm_styles if t != s and (b, t) in gallery_worn]
        if other:
            diff.append(float(v @ gallery_worn[(b, other[0])][m]))
    if not same or not diff:
        return None
    same, diff = np.asarray(same), np.asarray(diff)
    return {"pairs_same": int(len(same)), "pairs_different": int(len(diff)),
            "far_same_mask": float((same >= threshold).mean()), "far_different_mask": float((diff >= threshold).mean()),
            "mean_same_mask": float(same.mean()), "mean_different_mask": float(diff.mean())}


def _erase_tuning(jobs, res, conditions, erase_rows) -> dict[str, Any]:
    """Tuning only: rank-1 per condition when probes the classifier calls masked are compared erased (from each
    candidate row) with the enrolment photo erased alike, plain SFace otherwise."""
    gal = [(j["name"], res[j["key"]]["rows"]["clean"]) for j in jobs
           if j["role"] == "gallery" and res[j["key"]]["ok"] and res[j["key"]]["rows"]["clean"]["found"]]
    names = np.asarray([n for n, _ in gal])
    full_g = np.stack([r["sface"] for _, r in gal])
    out: dict[str, Any] = {}
    for r_ in erase_rows:
        key = f"sface:erase{r_}"
        eg = np.stack([r[key] for _, r in gal])
        per = {}
        for c in conditions:
            hits, n = 0, 0
            for j in jobs:
                if j["role"] != "probe":
                    continue
                n += 1
                row = res[j["key"]]["rows"].get(c) if res[j["key"]]["ok"] else None
                if row is None or not row["found"]:
                    continue
                v, G = (row[key], eg) if row["sface:masked"] else (row["sface"], full_g)  # unit vectors
                hits += int(names[int(np.argmax(G @ v))] == j["name"])
            per[c] = hits / max(n, 1)
        out[str(r_)] = per
    return out


# ----------------------------------------------------------------------------- calibration
def _best_impostor(jobs, res, matcher: str, conditions, gallery_key: str | None = None,
                   probe_key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(each found probe's best score against everyone else's enrolment, whether it went down the masked path):
    every probe treated as a stranger to the gallery of all the other people -- the gate's worst case.
    ``gallery_key``/``probe_key`` score other stored vectors of the run (e.g. ``sface:erase68``)."""
    gk, pk = gallery_key or matcher, probe_key or matcher
    gal = [(j["name"], res[j["key"]]["rows"]["clean"][gk]) for j in jobs
           if j["role"] == "gallery" and res[j["key"]]["ok"] and res[j["key"]]["rows"]["clean"]["found"]]
    names = np.asarray([n for n, _ in gal])
    G = np.stack([v for _, v in gal])
    best, masked = [], []
    for c in conditions:
        rows = [(j["name"], res[j["key"]]["rows"].get(c)) for j in jobs if j["role"] == "probe" and res[j["key"]]["ok"]]
        rows = [(n, r) for n, r in rows if r is not None and r["found"]]
        if not rows:
            continue
        P = np.stack([r[pk] for _, r in rows])
        S = P @ G.T
        S[np.asarray([n for n, _ in rows])[:, None] == names[None, :]] = -np.inf
        best.append(S.max(1))
        masked.append(np.asarray([bool(r[matcher + ":masked"]) for _, r in rows]))
    return np.concatenate(best), np.concatenate(masked)


def _pooled(result, matcher, conds, key=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_best_impostor` over every dataset of the run, concatenated."""
    parts = [_best_impostor(jobs, res, matcher, conds, key, key) for jobs, res in result["_raw"].values()]
    return np.concatenate([b for b, _ in parts]), np.concatenate([k for _, k in parts])


def calibrate(result: dict[str, Any], target: float = 1e-3, erase_from: int | None = None) -> dict[str, dict[str, Any]]:
    """Thresholds for the SFace matchers from a ``split="tuning"`` run: the lowest threshold at which at most
    ``target`` of the probes (every tuning style and clean, each treated as a stranger to all other people's
    enrolments) is named as anyone. ``sface``: one threshold for bare and masked probes alike (the larger of
    the two paths'); ``sface-erase``: one per path (``sface-erase`` and ``sface-erase_masked``). ``erase_from``:
    the masked path's scores come from the run's ``sface:erase<row>`` vectors (the row chosen on this run)
    rather than from the ``sface-erase`` matcher as it ran, so a chosen row is calibrated without a re-run."""
    if result.get("split") != "tuning" or "_raw" not in result:
        raise OccluFaceError("calibration needs a tuning-split run kept with keep_raw=True (never the held-out one)")
    if "sface-erase" in result["matchers"]:
        from occluface.recognition.sface import ERASE_FROM

        erase_from = ERASE_FROM if erase_from is None else int(erase_from)
        if "sface" not in result["matchers"] or erase_from not in result.get("erase_rows", []):
            raise OccluFaceError(f"calibrating sface-erase needs sface in the run with --erase-rows including {erase_from} "
                                 "(its paths are scored from plain SFace vectors, whatever offset is shipped now)")
    out: dict[str, dict[str, Any]] = {}
    conds = ["clean", *result["styles"]]
    from occluface.bench.calibration import threshold_at_far

    for m in [m for m in result["matchers"] if m in ("sface", "sface-erase")]:
        if m == "sface":
            best, masked = _pooled(result, "sface", conds)
        else:  # bare path: plain SFace vectors (as the matcher's bare path is); masked path: erased from the row
            plain, masked = _pooled(result, "sface", conds)
            erased, _ = _pooled(result, "sface", conds, key=f"sface:erase{erase_from}")
            best = np.where(masked, erased, plain)
        bare_t, masked_t = threshold_at_far(best[~masked], target), threshold_at_far(best[masked], target)
        counts = ", ".join(f"{ds} {len({j['name'] for j in v[0]})}" for ds, v in result["_raw"].items())
        row = f" (erased from row {erase_from})" if m == "sface-erase" else ""
        where = (f"{result['data']}{row}: {counts} tuning people (none held out), clean + tuning styles "
                 f"{', '.join(result['styles'])}; every probe a stranger to the other people's enrolments")
        common = dict(target_far=target, data=where, source="calibrated")
        if m == "sface":
            t = max(bare_t, masked_t)
            out[m] = dict(model_id=m, verify=t, identify=t, far=float((best >= t).mean()), n_impostor=int(len(best)), **common)
        else:
            out[m] = dict(model_id=m, verify=bare_t, identify=bare_t, far=float((best[~masked] >= bare_t).mean()),
                          n_impostor=int((~masked).sum()), **common)
            out[m + "_masked"] = dict(model_id=m + "_masked", verify=masked_t, identify=masked_t,
                                      far=float((best[masked] >= masked_t).mean()), n_impostor=int(masked.sum()), **common)
    return out


# ----------------------------------------------------------------------------- report


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Any]:
    out = report_dir(out)
    ms, sizes = result["matchers"], result["gallery_sizes"]
    lines = [f"# Open-set accuracy: {', '.join(ms)} on {result['split']} people, {result['split']} mask styles", "",
             f"- data `{result['data']}`, seed {result['seed']}, up to {result['probes_per_person']} probes a person; "
             f"styles: {', '.join(result['styles'])}",
             "- each matcher is the product's own object at its shipped threshold; a probe whose face the detector "
             "loses after the mask is drawn counts as not named",
             f"- detector `{result.get('detector', 'auto')}`; open set: half the people enrolled, half strangers; distractors {result.get('n_distractors')}",
             f"- {result['seconds']} s", ""]
    for ds, d in result["datasets"].items():
        lines += [f"## {ds}: {d['n_people']} people, {d['n_probes']} probes per condition", "",
                  "| condition | matcher | rank-1 % | ratio | masked path % | " +
                  " | ".join(f"G={s}: named right / **wrong** %" for s in sizes) + " |",
                  "|---|---|---:|---:|---:|" + "---:|" * len(sizes)]
        for c in ["clean", *result["styles"]]:
            for m in ms:
                r = d["matchers"][m]["conditions"][c]
                cells = []
                for s in sizes:
                    o = r[f"open{s}"]
                    cells.append("n/a" if o.get("gallery") is None else f"{pct(o['named_correctly'])} / **{100 * o['named_wrong']:.2f}**")
                lines.append(f"| {c} | {m} | {pct(r['rank1'])} | {r['ratio_to_clean']:.3f} | {pct(r['masked_path'])} | " + " | ".join(cells) + " |")
        lines += ["", "Summary (masked = every style pooled):", "",
                  "| matcher | threshold | clean rank-1 | worst style ratio | " +
                  " | ".join(f"named wrong G={s}: clean / masked %" for s in sizes) + " | same-mask FAR % | different-mask FAR % |",
                  "|---|---:|---:|---:|" + "---:|" * len(sizes) + "---:|---:|"]
        for m in ms:
            info = d["matchers"][m]
            rows = info["conditions"]
            worst = min(rows[c]["ratio_to_clean"] for c in result["styles"])
            cells = []
            for s in sizes:
                cw = rows["clean"][f"open{s}"]
                mw = [rows[c][f"open{s}"] for c in result["styles"]]
                if cw.get("gallery") is None:
                    cells.append("n/a")
                    continue
                masked = sum(o["named_wrong_count"] for o in mw) / max(1, sum(o["n_probes"] for o in mw))
                cells.append(f"{100 * cw['named_wrong']:.2f} / {100 * masked:.2f}")
            sm = info.get("same_mask")
            smc = [f"{100 * sm['far_same_mask']:.2f} ({sm['pairs_same']})", f"{100 * sm['far_different_mask']:.2f} ({sm['pairs_different']})"] if sm else ["n/a", "n/a"]
            lines.append(f"| {m} | {info['threshold']:.4f} | {pct(rows['clean']['rank1'])} | {worst:.3f} | " + " | ".join(cells) + " | " + " | ".join(smc) + " |")
        if d.get("erase_tuning"):
            lines += ["", "Erase-row tuning (sface; masked-path probes compared erased with the enrolment erased alike):", "",
                      "| erase from row | " + " | ".join(["clean", *result["styles"]]) + " | mean masked |",
                      "|---|" + "---:|" * (len(result["styles"]) + 2)]
            for r_, per in d["erase_tuning"].items():
                mm = np.mean([per[c] for c in result["styles"]])
                lines.append(f"| {r_} | " + " | ".join(pct(per[c]) for c in ["clean", *result["styles"]]) + f" | {pct(mm)} |")
            base = d["matchers"]["sface"]["conditions"]
            lines.append("| (none: plain sface) | " + " | ".join(pct(base[c]["rank1"]) for c in ["clean", *result["styles"]])
                         + f" | {pct(np.mean([base[c]['rank1'] for c in result['styles']]))} |")
        lines.append("")
    plt, figures = pyplot(), []  # one bar chart per dataset
    for ds, d in result["datasets"].items():
        conds = ["clean", *result["styles"]]
        fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(conds) * len(ms) / 2), 4))
        grouped_bars(ax, conds, {m: [100 * d["matchers"][m]["conditions"][c]["rank1"] for c in conds] for m in ms})
        ax.set_xticks(ax.get_xticks(), conds, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("rank-1 %")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8)
        ax.set_title(f"{ds}: {result['split']} people, {result['split']} mask styles")
        figures.append(save_figure(fig, out / f"openset_{ds}.png"))
    return save_report(out, markdown=lines, data={k: v for k, v in result.items() if k != "_raw"}, figures=figures)
