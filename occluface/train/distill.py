"""Occlusion-robust fine-tuning of dlib's ResNet by self-distillation (issue 8, part 2).

Why distillation: we have thousands of faces, not millions, so the student starts from dlib's own weights
(the PyTorch port, `occluface.models.dlib_port`) and learns one thing: the embedding of an OCCLUDED face
(masks, coal dust, low light, partial occlusion) must land where the frozen teacher (dlib's network) puts the
SAME face CLEAN, while clean faces stay where the teacher put them. No identity labels are needed, so every
face in the shared data can be used -- except the held-out evaluation identities, which are never touched;
where the data has names, an optional ArcFace term uses them too.

Pipeline (each stage cached and resumable; all seeded):

1. `collect_faces`: training faces = Yale B identities minus a seeded held-out set (`heldout_identities`,
   default 10 of 38), `lfw_dev` identities minus a seeded held-out set (default 300 people), and
   `mask_cls/without_mask` (unlabelled for our purposes; distillation only).
2. `prepare`: per face, its box (whole image for Yale B's tight crops, dlib HOG detection otherwise), the 68
   landmarks, the clean 150x150 dlib chip, and `variants` occluded chips. Each occluded chip is made the way
   deployment sees it: the occlusion is drawn on the FULL image, then dlib's 5-point predictor re-fits the
   chip on the occluded image (as `occluface.bench.baseline` does). The teacher's embedding of the clean chip
   is computed once here (the teacher is frozen, so it never runs during training). Shards of
   `shard_size` faces are written atomically; an interrupted prep resumes at the first missing shard.
3. `train_distill`: student = the port with dlib's weights, stem + first `freeze_blocks` residual blocks
   frozen (default 4: the 32-channel stage and the first 64-channel block; low-level filters need no change).
   Their output never changes, so it is computed once per chip and cached in fp16 (`cache_frozen_features`),
   which makes a CPU step about twice as cheap; only the later blocks run per step. Each batch mixes clean chips
   (share `clean_fraction`, loss weight `clean_weight`) and occluded chips; loss per chip = 1 - cos(student,
   teacher(clean)), plus, with ``arcface_weight`` > 0, an ArcFace term on the identity labels of the Yale B
   and lfw_dev faces whose class centres start at the teacher's identity centroids (`build_identity_head`;
   the shipped model uses 0.01: it raised held-out masked rank-1 by 5-10 points). Adam, warm-up + cosine
   decay, atomic `last.pt` every `save_every` steps, resumable, JSONL log and a validation figure on a seeded
   slice of TRAINING faces (never the held-out identities).
4. `export_delta`: the shipped weights are the student minus dlib's weights for the tensors that changed,
   in fp16 (a delta keeps fp16 rounding far below the size of the change); `occluface_resnet` adds them
   back onto dlib's .dat at load time (`occluface.models.dlib_finetuned`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.train.runs import JsonLog, save_run_json
from occluface.progress import progress_bar
from occluface.io import save_npy, save_npz, write_text
from occluface.data.boxes import face_box
from occluface.data.identities import heldout_identities, list_identities
from occluface.errors import CheckpointError, DatasetError, OccluFaceError

__all__ = [
    "DistillConfig",
    "TRAIN_KINDS",
    "collect_faces",
    "prepare",
    "DistillData",
    "distill_loss",
    "build_student",
    "train_distill",
    "export_delta",
    "plot_log",
    "DELTA_FORMAT",
]

#: Occlusion kinds the occluded training chips are drawn from ("plain" = the baseline's grey polygon; the rest
#: are `occluface.data.occlusion` kinds). Each face gets `variants` different kinds (a seeded draw).
TRAIN_KINDS: tuple[str, ...] = ("plain", "surgical", "kn95", "cloth", "texture", "dust", "lowlight", "partial")
#: Relative frequency of each kind: masks are the main target, so they are drawn more often.
TRAIN_KIND_WEIGHTS: tuple[float, ...] = (1.0, 1.5, 1.5, 1.0, 1.0, 1.0, 0.7, 0.8)
DELTA_FORMAT = "occluface-dlib-delta-v1"
CHIP = 150


@dataclass
class DistillConfig:
    """Everything that defines a fine-tuning run (saved into the cache manifest and every checkpoint)."""

    seed: int = 0
    yaleb_holdout: int = 10
    lfw_holdout: int = 300
    variants: int = 4
    shard_size: int = 256
    max_faces: int | None = None  # cap on training faces (tests, smoke runs)
    sources: tuple[str, ...] = ("yaleb", "lfw_dev", "mask_cls")
    # training
    steps: int = 4000
    batch_size: int = 32
    lr: float = 1e-4
    warmup: int = 100
    freeze_blocks: int = 4
    clean_fraction: float = 0.25
    clean_weight: float = 2.0
    # ArcFace on identity labels (Yale B / lfw_dev faces; mask_cls faces carry none): 0 = distillation only
    arcface_weight: float = 0.0
    arcface_scale: float = 32.0
    arcface_margin: float = 0.2
    # each training chip mirrored with this probability (its target: the teacher's embedding of the mirrored clean chip)
    mirror: float = 0.0
    cache_features: bool = True  # precompute the frozen part's output once (the frozen layers never change)
    val_faces: int = 128
    # lfw_dev TRAINING people left out of the fine-tuning, to score rank-1 on people it never saw (recipe choices
    # are made there, never on the held-out identities)
    val_people: int = 0
    val_every: int = 500
    save_every: int = 100
    log_every: int = 10
    device: str = "cpu"

    def check(self) -> None:
        if self.variants < 1:
            raise OccluFaceError(f"variants must be >= 1, got {self.variants}")
        if self.shard_size < 1 or self.batch_size < 1 or self.steps < 1:
            raise OccluFaceError("shard_size, batch_size and steps must be >= 1")
        if not 0.0 <= self.clean_fraction < 1.0:
            raise OccluFaceError(f"clean_fraction must be in [0, 1), got {self.clean_fraction}")
        if not 0 <= self.freeze_blocks <= 14:
            raise OccluFaceError(f"freeze_blocks must be in 0..14 (the port has 14 residual blocks), got {self.freeze_blocks}")
        if self.lr <= 0:
            raise OccluFaceError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.mirror <= 1.0:
            raise OccluFaceError(f"mirror must be a probability in [0, 1], got {self.mirror}")
        if self.val_people < 0:
            raise OccluFaceError(f"val_people must be >= 0, got {self.val_people}")
        if self.arcface_weight < 0:
            raise OccluFaceError(f"arcface_weight must be >= 0, got {self.arcface_weight}")
        if self.yaleb_holdout < 0 or self.lfw_holdout < 0:
            raise OccluFaceError("held-out identity counts must be >= 0")
        bad = [s for s in self.sources if s not in ("yaleb", "lfw_dev", "lfw", "mask_cls")]
        if bad:
            raise OccluFaceError(f"unknown training source(s) {', '.join(bad)}; known: yaleb, lfw_dev, lfw, mask_cls")

    def data_key(self) -> dict[str, Any]:
        """The settings that decide the prepared cache (changing any of them needs a fresh cache folder)."""
        return {k: getattr(self, k) for k in ("seed", "yaleb_holdout", "lfw_holdout", "variants", "shard_size", "max_faces")} | {
            "sources": list(self.sources)
        }


# ----------------------------------------------------------------------------------------- identities
def collect_faces(data: str | Path, cfg: DistillConfig) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """Training faces ``[{source, path (relative to data), identity}]`` and the held-out identity lists."""
    from occluface.data.images import is_image_file

    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected the shared data folder with yaleb/, lfw_dev/, mask_cls/)")
    faces: list[dict[str, str]] = []
    heldout: dict[str, list[str]] = {}
    for source in cfg.sources:
        folder = root / ("mask_cls/without_mask" if source == "mask_cls" else source)
        if not folder.is_dir():
            continue
        if source == "mask_cls":
            for f in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)):
                faces.append({"source": source, "path": f.relative_to(root).as_posix(), "identity": ""})
            continue
        ids = list_identities(folder)
        n_hold = cfg.yaleb_holdout if source == "yaleb" else cfg.lfw_holdout
        held = heldout_identities(ids, n_hold, cfg.seed, salt=source)
        heldout[source] = held
        for name, files in ids.items():
            if name in set(held):
                continue
            faces += [{"source": source, "path": f.relative_to(root).as_posix(), "identity": name} for f in files]
    if not faces:
        raise DatasetError(
            f"{root}: no training faces left (looked in {', '.join(cfg.sources)}; held-out identities excluded)"
        )
    if cfg.max_faces is not None and len(faces) > cfg.max_faces:
        rng = np.random.default_rng([cfg.seed, 7])
        keep = np.sort(rng.choice(len(faces), size=int(cfg.max_faces), replace=False))
        faces = [faces[i] for i in keep]
    return faces, heldout


# ----------------------------------------------------------------------------------------- faces
def variant_kinds(index: int, variants: int, seed: int) -> list[str]:
    """The `variants` distinct occlusion kinds of training face number `index` (seeded, weighted draw)."""
    rng = np.random.default_rng([int(seed), 11, int(index)])
    p = np.asarray(TRAIN_KIND_WEIGHTS) / sum(TRAIN_KIND_WEIGHTS)
    k = min(int(variants), len(TRAIN_KINDS))
    picked = [TRAIN_KINDS[i] for i in rng.choice(len(TRAIN_KINDS), size=k, replace=False, p=p)]
    while len(picked) < variants:  # more variants than kinds: repeat kinds with new seeds
        picked.append(TRAIN_KINDS[int(rng.choice(len(TRAIN_KINDS), p=p))])
    return picked


def make_chips(image: np.ndarray, source: str, kinds: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(clean chip, V occluded chips, kinds actually used) for one face image.

    An occlusion that cannot be drawn (e.g. no landmarks found) falls back to "lowlight" (needs no face
    geometry), so every face yields the same number of chips.
    """
    from occluface.data.occlusion.core import occlude
    from occluface.faces.chips import dlib_chip
    from occluface.faces.landmarks import landmarks68

    box = face_box(image, source)
    lm = landmarks68(image, box)
    clean = dlib_chip(image, box)
    occ, used = [], []
    for v, kind in enumerate(kinds):
        s = int(np.random.SeedSequence([int(seed), v]).generate_state(1)[0])
        try:
            img = occlude(image, kind, seed=s, landmarks=lm)
        except OccluFaceError:
            kind = "lowlight"
            img = occlude(image, kind, seed=s, landmarks=lm)
        occ.append(dlib_chip(img, box))
        used.append(kind)
    return clean, np.stack(occ), used



def _teacher(device: str = "cpu"):
    from occluface.models.dlib_port import DlibResNetTorch

    return DlibResNetTorch(pretrained=True).eval().to(device)


def embed(model, chips: np.ndarray, device: str = "cpu", batch: int = 64) -> np.ndarray:
    """N x 128 L2-normalised embeddings of uint8 N x 150 x 150 x 3 chips (inference mode, batched)."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(chips), batch):
            x = torch.from_numpy(np.ascontiguousarray(chips[s : s + batch])).to(device).permute(0, 3, 1, 2).float() / 255.0
            out.append(torch.nn.functional.normalize(model(x), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def prepare(data: str | Path, cache: str | Path, cfg: DistillConfig, *, progress: bool = True) -> dict[str, Any]:
    """Build (or resume) the chip cache in ``cache``; returns its manifest.

    Files: `manifest.json` (config, faces, held-out identities), per shard `shard_XXXXX.chips.npy`
    (n x (1 + V) x 150 x 150 x 3 uint8; index 0 = clean) and `shard_XXXXX.meta.npz` (teacher embeddings of the
    clean chips, kinds). A cache made with other data settings is refused rather than silently mixed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from occluface.data.images import load_rgb

    cfg.check()
    cache = Path(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OccluFaceError(f"{cache}: cannot create the cache folder ({exc.strerror or exc})") from None
    faces, heldout = collect_faces(data, cfg)
    manifest_path = cache / "manifest.json"
    manifest = {"config": cfg.data_key(), "data": str(data), "n_faces": len(faces), "heldout": heldout, "faces": faces}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("config") != manifest["config"] or old.get("faces") != faces:
            raise OccluFaceError(
                f"{cache}: holds a cache made with other data settings or faces; use a new --out folder"
            )
    else:
        write_text(manifest_path, json.dumps(manifest, indent=1))
    n_shards = math.ceil(len(faces) / cfg.shard_size)
    todo = [k for k in range(n_shards) if not (cache / f"shard_{k:05d}.meta.npz").exists()]
    if todo:
        teacher = _teacher(cfg.device)
        root = Path(data)
        with Progress(
            TextColumn("[bold]prepare chips"), BarColumn(), MofNCompleteColumn(), TextColumn("faces"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress,
        ) as bar:
            task = bar.add_task("prep", total=len(faces), completed=(n_shards - len(todo)) * cfg.shard_size)
            for k in todo:
                part = faces[k * cfg.shard_size : (k + 1) * cfg.shard_size]
                chips = np.zeros((len(part), 1 + cfg.variants, CHIP, CHIP, 3), np.uint8)
                kinds = []
                for j, face in enumerate(part):
                    index = k * cfg.shard_size + j
                    path = root / face["path"]
                    try:
                        image = load_rgb(path)
                    except OccluFaceError as exc:
                        raise DatasetError(f"{path}: cannot read this training image ({exc})") from None
                    clean, occ, used = make_chips(
                        image, face["source"], variant_kinds(index, cfg.variants, cfg.seed), seed=cfg.seed * 1_000_003 + index
                    )
                    chips[j, 0], chips[j, 1:] = clean, occ
                    kinds.append(used)
                    bar.advance(task)
                teacher_emb = embed(teacher, chips[:, 0], cfg.device)
                save_npy(cache / f"shard_{k:05d}.chips.npy", chips)
                # written last: its presence marks the shard complete
                save_npz(cache / f"shard_{k:05d}.meta.npz", teacher=teacher_emb, kinds=np.asarray(kinds, dtype="U16"))
    return manifest


class DistillData:
    """The prepared cache, memory-mapped: `chips[i]` -> (1 + V) x 150 x 150 x 3, `teacher[i]` -> 128."""

    def __init__(self, cache: str | Path):
        cache = Path(cache)
        manifest_path = cache / "manifest.json"
        if not manifest_path.exists():
            raise DatasetError(f"{cache}: no manifest.json; run the preparation first (occluface finetune does)")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        n, size = self.manifest["n_faces"], self.manifest["config"]["shard_size"]
        self.shards, teacher, kinds = [], [], []
        for k in range(math.ceil(n / size)):
            meta = cache / f"shard_{k:05d}.meta.npz"
            if not meta.exists():
                raise DatasetError(f"{meta}: missing; the cache is incomplete (re-run to resume the preparation)")
            self.shards.append(np.load(cache / f"shard_{k:05d}.chips.npy", mmap_mode="r"))
            with np.load(meta) as m:
                teacher.append(m["teacher"])
                kinds.append(m["kinds"])
        self.teacher = np.concatenate(teacher).astype(np.float32)
        self.kinds = np.concatenate(kinds)
        self.shard_size = size
        self.variants = self.shards[0].shape[1] - 1
        self.faces = self.manifest["faces"]

    def __len__(self) -> int:
        return len(self.teacher)

    def chip(self, i: int, v: int) -> np.ndarray:
        return self.shards[i // self.shard_size][i % self.shard_size, v]


# ----------------------------------------------------------------------------------------- training
def distill_loss(student_emb, teacher_emb, weights=None):
    """Weighted mean of 1 - cos(student, teacher) per row (0 when the student matches the teacher's direction)."""
    import torch
    import torch.nn.functional as F

    cos = F.cosine_similarity(student_emb, teacher_emb, dim=1)
    loss = 1.0 - cos
    if weights is None:
        return loss.mean()
    weights = torch.as_tensor(weights, dtype=loss.dtype, device=loss.device)
    return (loss * weights).sum() / weights.sum()


def identity_labels(data: "DistillData") -> tuple[np.ndarray, list[str]]:
    """(class index per training face, -1 where the face has no identity; the class names), for the ArcFace term."""
    names = sorted({f["identity"] for f in data.faces if f.get("identity")})
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index.get(f.get("identity") or "", -1) for f in data.faces], np.int64), names


def build_identity_head(data: "DistillData", labels: np.ndarray, n_classes: int, cfg: DistillConfig):
    """ArcFace head whose class centres start at the teacher's identity centroids (the mean of the teacher's
    clean embeddings of each person's training photos): the margin term then sharpens the space dlib already
    has instead of dragging the student towards random centres."""
    import torch

    from occluface.losses.margin import ArcFaceHead

    head = ArcFaceHead(128, n_classes, s=cfg.arcface_scale, m=cfg.arcface_margin)
    centres = np.zeros((n_classes, 128), np.float64)
    np.add.at(centres, labels[labels >= 0], data.teacher[labels >= 0])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(centres.astype(np.float32)))
    return head


def build_student(freeze_blocks: int = 4):
    """dlib's network with dlib's weights; stem and the first `freeze_blocks` residual blocks frozen."""
    from occluface.models.dlib_port import DlibResNetTorch

    model = DlibResNetTorch(pretrained=True)
    model.frozen_blocks = int(freeze_blocks)
    frozen = [model.stem, *list(model.blocks)[:freeze_blocks]]
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return model


def _lr_at(step: int, cfg: DistillConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def frozen_forward(model, x):
    """Output of the frozen part (stem + first `freeze_blocks` blocks) -- the same ops as DlibResNetTorch.forward."""
    import torch.nn.functional as F

    x = (x * 255.0 - model.mean) * (1.0 / 256.0)
    x = F.max_pool2d(F.relu(model.stem(x)), 3, 2)
    return model.blocks[: model.frozen_blocks](x)


def trainable_forward(model, feats):
    """Embedding from frozen-part features: the remaining blocks, global average pool, fc (as in forward)."""
    x = model.blocks[model.frozen_blocks :](feats)
    return model.fc(x.mean(dim=(2, 3)))


def cache_frozen_features(data: "DistillData", cache: str | Path, model, device: str = "cpu", progress: bool = True,
                          mirror: bool = False) -> list[np.ndarray]:
    """Per shard, fp16 outputs of the frozen layers for every chip (clean + variants), written once, memory-mapped.

    Why: the frozen stem and early blocks give the same output every epoch; computing it once makes a CPU step
    roughly twice as fast. Files are keyed by the number of frozen blocks, so another setting recomputes.
    `mirror=True` does the same for the mirror images of the chips (a convolution's output on a mirrored chip is
    not the mirror of its output, so they need their own files).
    """
    import torch

    cache = Path(cache)
    k = model.frozen_blocks
    out = []
    label = "frozen features (mirrored)" if mirror else "frozen features"
    with progress_bar(progress) as bar:
        task = bar.add_task(label, total=len(data.shards))
        for s, shard in enumerate(data.shards):
            path = cache / f"shard_{s:05d}.frozen{k}{'.mirror' if mirror else ''}.npy"
            if not path.exists():
                n, v = shard.shape[:2]
                flat = np.asarray(shard).reshape(n * v, CHIP, CHIP, 3)
                if mirror:
                    flat = np.ascontiguousarray(flat[:, :, ::-1])
                parts = []
                with torch.inference_mode():
                    for b in range(0, len(flat), 64):
                        x = _to_input(flat[b : b + 64], device)
                        parts.append(frozen_forward(model, x).half().cpu().numpy())
                feats = np.concatenate(parts)
                save_npy(path, feats.reshape(n, v, *feats.shape[1:]))
            out.append(np.load(path, mmap_mode="r"))
            bar.advance(task)
    return out


def mirrored_teacher(data: "DistillData", cache: str | Path, device: str = "cpu") -> np.ndarray:
    """The teacher's embedding of each face's mirrored clean chip (the target of a mirrored training chip),
    computed once into the cache. The teacher's own embedding of a mirror image, not its clean one: the student
    should stay where dlib puts that image, mirror or not."""
    path = Path(cache) / "teacher_mirror.npy"
    if not path.exists():
        teacher = _teacher(device)
        parts = [embed(teacher, np.ascontiguousarray(np.asarray(shard[:, 0])[:, :, ::-1]), device) for shard in data.shards]
        save_npy(path, np.concatenate(parts).astype(np.float32))
    out = np.load(path)
    if out.shape != data.teacher.shape:
        raise DatasetError(f"{path}: {out.shape[0]} mirrored targets for {len(data)} faces; delete it to recompute")
    return out


def validation_people(data: "DistillData", n: int, seed: int = 0) -> dict[str, list[int]]:
    """`n` seeded lfw_dev training people (2+ photos each) to leave out of the fine-tuning: name -> face indices.

    Why: the held-out identities must never choose anything, and a student's score on its own training people
    says little about new ones. People it never saw, drawn from the training side, can choose between recipes.
    """
    by_person: dict[str, list[int]] = {}
    for i, face in enumerate(data.faces):
        if face.get("source") in ("lfw_dev", "lfw") and face.get("identity"):
            by_person.setdefault(face["identity"], []).append(i)
    eligible = sorted(name for name, idx in by_person.items() if len(idx) >= 2)
    if n > len(eligible):
        raise DatasetError(f"val_people={n}, but the cache holds only {len(eligible)} lfw_dev people with 2+ photos")
    return {name: by_person[name] for name in heldout_identities(eligible, n, seed, salt="validation")}


def validate_people(model, data: "DistillData", people: dict[str, list[int]], device: str = "cpu",
                    flip: bool = False) -> dict[str, float]:
    """Rank-1 on the validation people: each person's first clean chip is the gallery, the other photos (clean
    and each cached occlusion) the probes. `flip`: embeddings averaged with the mirror image's."""
    if not people:
        return {}

    def emb(chips: np.ndarray) -> np.ndarray:
        e = embed(model, chips, device)
        if flip:
            e = e + embed(model, np.ascontiguousarray(chips[:, :, ::-1]), device)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        return e

    model.eval()
    names = sorted(people)
    gallery = emb(np.stack([data.chip(people[n][0], 0) for n in names]))
    probes = [(k, i) for k, n in enumerate(names) for i in people[n][1:]]
    who = np.asarray([k for k, _ in probes])
    hits: dict[str, list[bool]] = {}
    for v in range(data.variants + 1):
        e = emb(np.stack([data.chip(i, v) for _, i in probes]))
        right = (e @ gallery.T).argmax(1) == who
        for (_, i), ok in zip(probes, right):
            hits.setdefault("clean" if v == 0 else str(data.kinds[i][v - 1]), []).append(bool(ok))
    model.train()
    tag = "val_people_flip_rank1" if flip else "val_people_rank1"
    occluded = [h for k, hs in hits.items() if k != "clean" for h in hs]
    out = {f"{tag}_{k}": float(np.mean(hs)) for k, hs in sorted(hits.items())}
    return out | {f"{tag}_occluded": float(np.mean(occluded)) if occluded else float("nan")}


def _split(n: int, val_faces: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a seeded slice of the TRAINING faces for a loss to watch."""
    rng = np.random.default_rng([seed, 3])
    perm = rng.permutation(n)
    v = min(int(val_faces), max(0, n - 1))
    return np.sort(perm[v:]), np.sort(perm[:v])


def _batch(data: DistillData, idx: np.ndarray, step: int, cfg: DistillConfig, feats=None, mirror_feats=None,
           mirror_teacher=None) -> tuple[np.ndarray, ...]:
    """Chips (or their cached frozen features), teacher targets, loss weights, the clean mask and the face
    indices of one step; with `cfg.mirror`, a share of them mirrored (and their targets the mirrored teacher's).

    Depends only on (seed, step), so a resumed run sees exactly the batches an uninterrupted one would; the
    mirror draw has its own stream, so a run without it sees the same batches as before the option existed.
    """
    rng = np.random.default_rng([cfg.seed, 5, step])
    faces = idx[rng.integers(0, len(idx), size=cfg.batch_size)]
    clean = rng.random(cfg.batch_size) < cfg.clean_fraction
    var = np.where(clean, 0, rng.integers(1, data.variants + 1, size=cfg.batch_size))
    if feats is not None:
        size = data.shard_size
        chips = np.stack([feats[int(f) // size][int(f) % size, int(v)] for f, v in zip(faces, var)])
    else:
        chips = np.stack([data.chip(int(f), int(v)) for f, v in zip(faces, var)])
    target = data.teacher[faces]
    if cfg.mirror > 0:
        if mirror_teacher is None or (feats is not None and mirror_feats is None):
            raise OccluFaceError("mirror > 0 needs the mirrored teacher targets (and mirrored features when cached)")
        flipped = np.random.default_rng([cfg.seed, 11, step]).random(cfg.batch_size) < cfg.mirror
        size = data.shard_size
        for r in np.flatnonzero(flipped):
            f, v = int(faces[r]), int(var[r])
            chips[r] = mirror_feats[f // size][f % size, v] if feats is not None else data.chip(f, v)[:, ::-1]
        target = np.where(flipped[:, None], mirror_teacher[faces], target)
    weights = np.where(clean, cfg.clean_weight, 1.0).astype(np.float32)
    return chips, target, weights, clean, faces


def _to_input(chips: np.ndarray, device: str):
    import torch

    x = torch.from_numpy(np.array(chips, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def validate(model, data: DistillData, idx: np.ndarray, device: str = "cpu") -> dict[str, float]:
    """Mean cosine to the teacher's clean embedding on held-aside training faces: clean and per kind."""
    if len(idx) == 0:
        return {}
    model.eval()
    emb = {v: embed(model, np.stack([data.chip(int(i), v) for i in idx]), device) for v in range(data.variants + 1)}
    model.train()
    t = data.teacher[idx]
    out = {"val_cos_clean": float(np.mean(np.sum(emb[0] * t, axis=1)))}
    per_kind: dict[str, list[float]] = {}
    for v in range(1, data.variants + 1):
        cos = np.sum(emb[v] * t, axis=1)
        for i, c in zip(idx, cos):
            per_kind.setdefault(str(data.kinds[i][v - 1]), []).append(float(c))
    all_occ = [c for cs in per_kind.values() for c in cs]
    out["val_cos_occluded"] = float(np.mean(all_occ))
    out.update({f"val_cos_{k}": float(np.mean(v)) for k, v in sorted(per_kind.items())})
    return out


def _save(path: Path, model, opt, step: int, cfg: DistillConfig, extra: dict[str, Any]) -> None:
    from occluface.models.checkpoint import save_checkpoint

    save_checkpoint(
        path,
        {"backbone": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "config": asdict(cfg), **extra},
    )


def train_distill(
    cache: str | Path,
    out: str | Path,
    cfg: DistillConfig,
    *,
    progress: bool = True,
    max_minutes: float | None = None,
    stop_step: int | None = None,
) -> dict[str, Any]:
    """Fine-tune (or resume fine-tuning) from the cache; writes `last.pt`, `log.jsonl`, `summary.json` in out.

    `max_minutes` stops early after saving (the schedule stays the one of `cfg.steps`; re-running resumes).
    `stop_step` ends the run at that step of the `cfg.steps` schedule (reproduces a run that was cut short).
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from occluface.models.checkpoint import load_checkpoint

    cfg.check()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise OccluFaceError(f"device {cfg.device!r} asked for, but CUDA is not available here")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = DistillData(cache)
    train_idx, val_idx = _split(len(data), cfg.val_faces, cfg.seed)
    people = validation_people(data, cfg.val_people, cfg.seed) if cfg.val_people else {}
    if people:  # never trained on, so their rank-1 says how the recipe does on new people
        left_out = np.asarray([i for idx in people.values() for i in idx])
        train_idx = train_idx[~np.isin(train_idx, left_out)]
    torch.manual_seed(cfg.seed)
    model = build_student(cfg.freeze_blocks).to(cfg.device).to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    head, labels = None, None
    if cfg.arcface_weight > 0:
        labels, names = identity_labels(data)
        if len(names) < 2:
            raise DatasetError(f"{cache}: the ArcFace term needs 2+ identities among the training faces, found {len(names)}")
        head = build_identity_head(data, labels, len(names), cfg).to(cfg.device)
        params += list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    step = 0
    last = out / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last, map_location=cfg.device)
        if "optimizer" not in ckpt or "step" not in ckpt:
            raise CheckpointError(f"{last}: not a fine-tuning checkpoint (no optimizer/step)")
        model.load_state_dict(ckpt["backbone"])
        if head is not None:
            if "identity_head" not in ckpt:
                raise CheckpointError(f"{last}: made without the ArcFace term; use a new --out folder")
            head.load_state_dict(ckpt["identity_head"])
        made = ckpt.get("config", {})
        for key in ("mirror", "val_people"):
            if made.get(key, 0) != getattr(cfg, key):
                raise CheckpointError(f"{last}: made with {key}={made.get(key, 0)}, asked for {getattr(cfg, key)}; "
                                      "use a new --out folder")
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
    feats = None
    if cfg.cache_features and cfg.freeze_blocks > 0:
        model.eval()
        feats = cache_frozen_features(data, cache, model, cfg.device, progress)
    mirror_feats = mirror_teacher = None
    if cfg.mirror > 0:
        mirror_teacher = mirrored_teacher(data, cache, cfg.device)
        if feats is not None:
            mirror_feats = cache_frozen_features(data, cache, model, cfg.device, progress, mirror=True)
    log = JsonLog(out / "log.jsonl", resume_step=step or None)
    save_run_json(out / "config.json", asdict(cfg))
    model.train()
    started = time.perf_counter()
    wl: list[tuple[float, float, float]] = []
    t_last = time.perf_counter()
    stopped_early = False
    with Progress(
        TextColumn("[bold]fine-tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress,
    ) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, info="")
        if step == 0 and (len(val_idx) or people):
            log.write({"step": 0, **validate(model, data, val_idx, cfg.device),
                       **validate_people(model, data, people, cfg.device)})
        end = cfg.steps if stop_step is None else min(cfg.steps, int(stop_step))
        while step < end:
            chips, target, weights, is_clean, faces = _batch(data, train_idx, step, cfg, feats, mirror_feats, mirror_teacher)
            lr = _lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            if feats is not None:
                x = torch.from_numpy(chips).to(cfg.device).float().contiguous(memory_format=torch.channels_last)
                emb = trainable_forward(model, x)
            else:
                emb = model(_to_input(chips, cfg.device))
            tgt = torch.from_numpy(target).to(cfg.device)
            w = torch.from_numpy(weights).to(cfg.device)
            loss = distill_loss(emb, tgt, w)
            arc = None
            if head is not None:
                lab = torch.from_numpy(labels[faces]).to(cfg.device)
                keep = lab >= 0
                if bool(keep.any()):
                    arc = torch.nn.functional.cross_entropy(head(emb[keep], lab[keep]), lab[keep])
                    loss = loss + cfg.arcface_weight * arc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            with torch.no_grad():
                per = (1.0 - torch.nn.functional.cosine_similarity(emb, tgt, dim=1)).cpu().numpy()
            wl.append((loss.item(), float(per[is_clean].mean()) if is_clean.any() else float("nan"),
                       float(per[~is_clean].mean()) if (~is_clean).any() else float("nan"),
                       float("nan") if arc is None else arc.item()))
            bar.update(task, completed=step, info=f"loss {loss.item():.4f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                arr = np.asarray(wl)
                rec = {
                    "step": step, "lr": lr, "loss": float(np.nanmean(arr[:, 0])),
                    "loss_clean": float(np.nanmean(arr[:, 1])) if np.isfinite(arr[:, 1]).any() else None,
                    "loss_occluded": float(np.nanmean(arr[:, 2])) if np.isfinite(arr[:, 2]).any() else None,
                    **({"loss_arcface": float(np.nanmean(arr[:, 3]))} if np.isfinite(arr[:, 3]).any() else {}),
                    "faces_per_s": len(wl) * cfg.batch_size / max(1e-9, now - t_last), "elapsed_s": round(now - started, 1),
                }
                wl, t_last = [], now
                if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                    rec.update(validate(model, data, val_idx, cfg.device))
                    rec.update(validate_people(model, data, people, cfg.device))
                log.write(rec)
            done = step >= end
            out_of_time = max_minutes is not None and (time.perf_counter() - started) > 60 * max_minutes
            if done or out_of_time or step % cfg.save_every == 0:
                extra = {"heldout": data.manifest.get("heldout", {})}
                if head is not None:
                    extra["identity_head"] = head.state_dict()
                _save(last, model, opt, step, cfg, extra)
            if out_of_time and not done:
                stopped_early = True
                break
    summary = {
        "steps_done": step, "steps": cfg.steps, "stop_step": stop_step, "stopped_early": stopped_early, "train_faces": int(len(train_idx)),
        "val_faces": int(len(val_idx)), "variants": data.variants, "heldout": data.manifest.get("heldout", {}),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if len(val_idx):
        summary["final_val"] = validate(model, data, val_idx, cfg.device)
    if people:
        summary["val_people"] = sorted(people)
        summary["final_val_people"] = validate_people(model, data, people, cfg.device) | validate_people(
            model, data, people, cfg.device, flip=True)
    save_run_json(out / "summary.json", summary)
    return summary


# ----------------------------------------------------------------------------------------- shipping
def export_delta(checkpoint: str | Path, path: str | Path, *, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the fp16 difference between a fine-tuned student and dlib's weights (changed tensors only)."""
    import torch

    from occluface.models.dlib_port import DlibResNetTorch
    from occluface.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    base = DlibResNetTorch(pretrained=True).state_dict()
    delta = {}
    for name, value in ckpt["backbone"].items():
        if name not in base:
            raise CheckpointError(f"{checkpoint}: tensor {name} is not part of dlib's network")
        d = value.float() - base[name].float()
        if torch.count_nonzero(d):
            delta[name] = d.half()
    info = {
        "format": DELTA_FORMAT,
        "base": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models)",
        "step": int(ckpt.get("step", 0)),
        "config": ckpt.get("config", {}),
        "heldout": ckpt.get("heldout", {}),
        **(meta or {}),
    }
    save_checkpoint(path, {"backbone": delta, "meta": info})
    return {"tensors": len(delta), "bytes": Path(path).stat().st_size, **info}


def plot_log(log: str | Path, out: str | Path) -> Path:
    """Training curves from `log.jsonl`: loss (clean / occluded) and validation cosine to the teacher per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, out = Path(log), Path(out)
    if not log.is_file():
        raise OccluFaceError(f"{log}: no training log to plot")
    recs = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in recs if "loss" in r]
    val = [r for r in recs if "val_cos_clean" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss_occluded", "occluded chips"), ("loss_clean", "clean chips")):
        pts = [(r["step"], r[key]) for r in train if r.get(key) is not None]
        if pts:
            axes[0].plot(*zip(*pts), label=label, lw=0.8)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("1 - cos(student, teacher clean)")
    axes[0].set_title("training loss (10-step means)")
    if axes[0].get_lines():
        axes[0].legend()
    kinds = sorted({k for r in val for k in r if k.startswith("val_cos_")})
    for k in kinds:
        axes[1].plot([r["step"] for r in val if k in r], [r[k] for r in val if k in r], marker="o", ms=3,
                     label=k[8:], lw=2 if k in ("val_cos_clean", "val_cos_occluded") else 0.8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("mean cos to teacher(clean)")
    axes[1].set_title("validation (held-aside training faces)")
    if kinds:
        axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
