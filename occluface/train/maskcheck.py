"""Train the mask classifier: SGD + cross-entropy as in the paper (lr 1e-3, momentum 0.9, batch 128 by
default), on the cached crops, selecting the epoch on the validation split only.

Writes, in ``out_dir``: ``config.json``, ``log.jsonl`` (one line per epoch: loss, lr, val accuracy/F1,
seconds), ``last.pt`` and ``best.pt`` (atomic full-precision checkpoints, same format as the shipped
weights) and ``weights.pt`` (fp16 copy of best, what gets shipped).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from occluface.train.runs import JsonLog, save_run_json
from occluface.errors import DatasetError, OccluFaceError
from occluface.maskcheck.data import select
from occluface.maskcheck.model import MaskNet, predict_proba, save_weights, to_tensor  # noqa: F401 (predict_proba re-exported)


@dataclass
class MaskTrainConfig:
    """Everything that decides a run (saved as config.json)."""

    classes: int = 2
    width: int = 32
    input_size: int = 112
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # or "constant" (the paper's)
    warmup_epochs: float = 0.5
    dropout: float = 0.0
    balance: bool = True  # weight the loss by inverse class frequency (masked photos outnumber unmasked)
    augment: str = "basic"  # or "strong": + scale/rotation jitter, blur, low resolution, colour swaps
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 0  # 0: leave torch's default


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cheap batch augmentation on 0..1 tensors: mirror, shift up to 8 px, brightness/contrast, some grey."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = 8
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    bright = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.6
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.6
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * bright
    grey = torch.rand(n, generator=gen) < 0.15
    x = torch.where(grey[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
    return x.clamp_(0, 1)


def augment_strong(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``augment`` plus what separates real photos from the aligned training crops: scale (0.8-1.25) and
    rotation (+-12 deg) jitter, so centre-crop fallbacks and loosely aligned faces look alike; blur and low
    resolution (small or soft faces); and, now and then, swapped colour channels, so a skin-coloured mask
    is told by its shape rather than by its colour."""
    n, _, h, w = x.shape
    scale = torch.exp(torch.empty(n).uniform_(np.log(0.8), np.log(1.25), generator=gen))
    angle = torch.empty(n).uniform_(-12.0, 12.0, generator=gen) * math.pi / 180
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = augment(x, gen)
    blur = torch.rand(n, generator=gen) < 0.2
    if blur.any():
        from torchvision.transforms.functional import gaussian_blur

        sigma = float(torch.empty(1).uniform_(0.6, 1.6, generator=gen))
        x[blur] = gaussian_blur(x[blur], [7, 7], [sigma, sigma])
    low = torch.rand(n, generator=gen) < 0.2
    if low.any():
        side = int(torch.randint(28, 64, (1,), generator=gen))
        small = F.interpolate(x[low], size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        x[low] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    swap = torch.rand(n, generator=gen) < 0.1
    if swap.any():
        perm = torch.randperm(3, generator=gen)
        x[swap] = x[swap][:, perm]
    return x.clamp_(0, 1)


AUGMENTATIONS = {"basic": augment, "strong": augment_strong}


@torch.no_grad()
def _lr_at(cfg: MaskTrainConfig, step: int, steps_per_epoch: int) -> float:
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


def train(data: dict[str, np.ndarray], out_dir: str | Path, cfg: MaskTrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train on split 'train', pick the best epoch on 'val' (macro F1); returns the summary dict."""
    if cfg.schedule not in ("cosine", "constant"):
        raise OccluFaceError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    if cfg.augment not in AUGMENTATIONS:
        raise OccluFaceError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {cfg.augment!r}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise OccluFaceError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise OccluFaceError("epochs and batch_size must be >= 1 and lr > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xtr, ytr = select(data, "train", cfg.classes)
    xva, yva = select(data, "val", cfg.classes)
    if len(xtr) == 0 or len(xva) == 0:
        raise DatasetError("the dataset has an empty train or val split; build it from more images")
    if len(np.unique(ytr)) < cfg.classes:
        raise DatasetError(f"the train split holds only classes {sorted(set(ytr.tolist()))} of {cfg.classes}")
    import cv2

    if cfg.input_size != xtr.shape[1]:  # crops are cached at 112; resize once for another input size
        def rs(a: np.ndarray) -> np.ndarray:
            return np.stack([cv2.resize(c, (cfg.input_size, cfg.input_size), interpolation=cv2.INTER_AREA) for c in a])
        xtr, xva = rs(xtr), rs(xva)
    save_run_json(out / "config.json", asdict(cfg))
    model = MaskNet(cfg.classes, cfg.width, cfg.input_size, cfg.dropout)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(xtr) / cfg.batch_size)
    best, best_epoch, step = -1.0, -1, 0
    log = JsonLog(out / "log.jsonl", key="epoch")
    from rich.progress import Progress
    from sklearn.metrics import f1_score

    counts = np.bincount(ytr, minlength=cfg.classes).astype(np.float64)
    weight = torch.tensor(counts.sum() / (cfg.classes * np.maximum(counts, 1)), dtype=torch.float32) if cfg.balance else None
    xtr_t = torch.from_numpy(xtr)
    ytr_t = torch.from_numpy(ytr)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("training", total=cfg.epochs * steps)
        for epoch in range(cfg.epochs):
            t0 = time.time()
            model.train()
            order = torch.randperm(len(xtr), generator=gen)
            total_loss, seen = 0.0, 0
            for b in range(steps):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                if len(idx) < 2:  # batch norm cannot train on a lone leftover image
                    bar.advance(task)
                    continue
                x = AUGMENTATIONS[cfg.augment](xtr_t[idx].permute(0, 3, 1, 2).float().div_(255.0), gen)
                lr = _lr_at(cfg, step, steps)
                for g in opt.param_groups:
                    g["lr"] = lr
                loss = F.cross_entropy(model(x), ytr_t[idx], weight=weight, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.advance(task)
            proba = predict_proba(model, xva, tta=False)
            pred = proba.argmax(1)
            acc = float((pred == yva).mean())
            f1 = float(f1_score(yva, pred, average="macro"))
            nll = float(-np.log(np.clip(proba[np.arange(len(yva)), yva], 1e-7, 1)).mean())
            masked_f1 = float(f1_score(yva >= 1, pred >= 1))  # the paper's figure (masked = positive)
            row = {"epoch": epoch + 1, "loss": total_loss / seen, "lr": lr, "val_accuracy": acc, "val_macro_f1": f1,
                   "val_masked_f1": masked_f1, "val_nll": nll, "seconds": round(time.time() - t0, 1)}
            log.write(row)
            meta = {"epoch": epoch + 1, "val_accuracy": acc, "val_macro_f1": f1, "config": asdict(cfg)}
            save_weights(out / "last.pt", model, meta, half=False)
            if f1 > best:
                best, best_epoch = f1, epoch + 1
                save_weights(out / "best.pt", model, meta, half=False)
                save_weights(out / "weights.pt", model, meta, half=True)
            if progress:
                bar.console.print(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}  val acc {acc:.4f}  F1 {f1:.4f}  ({row['seconds']} s)")
    summary = {"best_epoch": best_epoch, "best_val_macro_f1": best, "train_images": int(len(xtr)), "val_images": int(len(xva)),
               "out_dir": str(out)}
    save_run_json(out / "summary.json", summary)
    return summary
