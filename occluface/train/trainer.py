"""Supervised identity-classification training of a backbone + head, resumable and reproducible.

What a run writes in ``config.out``:

- ``config.json``: the settings;
- ``log.jsonl``: one JSON record per logged iteration ``{"step", "epoch", "split": "train", "loss", "acc",
  "lr"}`` and one per evaluation ``{"step", "epoch", "split": "test", "loss", "acc"}`` (every ``eval_every``
  iterations and at every epoch end), for accuracy-vs-iteration curves; ``epoch`` counts from 1;
- ``last.pt`` (every epoch, written atomically) and ``best.pt`` (best test accuracy so far);
- ``summary.json``: final metrics and paths.

Reproducibility: the model is initialised from ``seed`` and every epoch reseeds data order, augmentation and
dropout from ``seed + epoch``, so stopping after an epoch and resuming (automatic when ``out/last.pt``
exists) gives the same weights as an uninterrupted run. A run cut by ``max_steps`` in mid-epoch resumes
from the start of that epoch, which is only approximately the same.

Test metrics: with ``split_by="image"`` the test images show training identities, so test loss/accuracy
are the head's cross-entropy and top-1 accuracy (the coal-mine paper's recognition rate). With
``split_by="identity"`` the test people are unseen, so the head cannot score them: the test record gives
``loss: null`` and ``acc`` = leave-one-out nearest-neighbour (cosine) identification accuracy among the
test images, an open-set measure of the embedding.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from occluface.train.runs import JsonLog, save_run_json
from occluface.data.augment import build_transform
from occluface.data.folder import FaceFolderDataset, Sample, classes_of, scan_folder, split_samples
from occluface.errors import CheckpointError, DatasetError, ImageError, OccluFaceError
from occluface.losses import create_head, l1_penalty
from occluface.train import distributed as ddp
from occluface.models.checkpoint import build_backbone, load_checkpoint, save_checkpoint
from occluface.models.config import TrainConfig

__all__ = ["train", "Trainer", "TrainNet"]

_RANK_SEED_STRIDE = 7919  # ranks draw different augmentations/dropout but the same data permutation


class TrainNet(nn.Module):
    """Backbone + head in one module so DDP averages the gradients of both."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.backbone(images)
        return self.head(emb, labels), emb


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _samples_from_split(root: Path, rel_paths: list[str]) -> list[Sample]:
    """Rebuild samples from a checkpoint's split (identity = first path component)."""
    out = []
    for rel in rel_paths:
        p = Path(rel)
        out.append(Sample(root / p if not p.is_absolute() else p, p.parts[0] if not p.is_absolute() else p.parent.name))
    return out


class Trainer:
    """One training run. ``train(config)`` is the usual entry; tests and DDP scripts use this directly."""

    def __init__(self, config: TrainConfig, *, progress: bool = True, dist: ddp.DistInfo | None = None):
        self.config = TrainConfig.from_dict(config.to_dict()).validate()
        self.dist = dist or ddp.DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        self.out = Path(self.config.out)
        self.data_root = Path(self.config.data)
        self.net: TrainNet | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def backbone(self) -> nn.Module:
        assert self.net is not None, "call fit() first"
        return self.net.backbone

    @property
    def head(self) -> nn.Module:
        assert self.net is not None, "call fit() first"
        return self.net.head

    def _load_resume(self) -> dict[str, Any] | None:
        last = self.out / "last.pt"
        if not last.exists():
            return None
        payload = load_checkpoint(last)
        for key in ("optimizer", "scheduler", "epoch", "step", "config", "classes", "split"):
            if key not in payload:
                raise CheckpointError(f"{last}: cannot resume, the checkpoint has no {key!r}")
        old = TrainConfig.from_dict(payload["config"]).resume_key()
        new = self.config.resume_key()
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4])
            raise CheckpointError(
                f"{last}: written by a run with different settings ({shown}); "
                "resume with the same settings, or pick another output folder"
            )
        return payload

    def _make_loader(
        self, dataset: FaceFolderDataset, *, train: bool, sampler: Any, generator: torch.Generator
    ) -> DataLoader:
        cfg = self.config
        bs = cfg.batch_size if train else max(cfg.batch_size, 64)
        drop_last = False
        if train:
            n = len(sampler) if sampler is not None else len(dataset)
            drop_last = n > 1 and n % bs == 1  # a lone last image would break BatchNorm
        return DataLoader(
            dataset,
            batch_size=bs,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            generator=generator,
        )

    def _batches(self, loader: DataLoader, samples: list[Sample]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate a loader, turning a worker's wrapped ImageError back into one naming the file."""
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except RuntimeError as exc:
                text = str(exc)
                if "ImageError" not in text:
                    raise
                for s in samples:
                    marker = f"{s.path}: "
                    if marker in text:
                        problem = text.split(marker, 1)[1].strip().splitlines()[0]
                        raise ImageError(s.path, problem) from None
                raise DatasetError(text.strip().splitlines()[-1]) from None
            yield batch

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    @torch.no_grad()
    def evaluate(self, loader: DataLoader, samples: list[Sample]) -> dict[str, float | None]:
        """Test loss/accuracy (closed set) or nearest-neighbour accuracy (open set); restores train mode."""
        net = ddp.unwrap(self.net)
        was_training = net.training
        net.eval()
        total_loss, correct, count = 0.0, 0, 0
        embeddings, targets = [], []
        try:
            for images, labels in self._batches(loader, samples):
                images, labels = self._to_device(images, labels)
                with self._autocast():
                    emb = net.backbone(images)
                emb = emb.float()  # heads run in float32 (a bf16 embedding would not meet fp32 weights)
                if self.config.split_by == "identity":
                    embeddings.append(F.normalize(emb.float(), dim=1).cpu())
                    targets.append(labels.cpu())
                    continue
                logits = net.head(emb, labels).float()
                total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
                correct += (net.head.predict_logits(emb).argmax(1) == labels).sum().item()
                count += labels.numel()
        finally:
            net.train(was_training)
        if self.config.split_by == "identity":
            if not embeddings:
                return {"loss": None, "acc": None}
            e = torch.cat(embeddings)
            t = torch.cat(targets)
            sim = e @ e.T
            sim.fill_diagonal_(-float("inf"))
            nearest = sim.argmax(1)
            return {"loss": None, "acc": (t[nearest] == t).float().mean().item()}
        if count == 0:
            return {"loss": None, "acc": None}
        return {"loss": total_loss / count, "acc": correct / count}

    def _log_train(self, log, win: list[float], step: int, epoch: int, lr: float) -> None:
        """One "train" record: loss and accuracy averaged over the batches since the last record."""
        s_loss, s_correct, s_n = self._reduce(win)
        log.write({"step": step, "epoch": epoch, "split": "train", "loss": s_loss / s_n, "acc": s_correct / s_n, "lr": lr})

    def _reduce(self, values: list[float]) -> list[float]:
        if not self.dist.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        cfg = self.config
        is_main = self.dist.is_main
        started = time.perf_counter()
        if is_main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OccluFaceError(f"{self.out}: cannot create the output folder ({exc})") from None
        resume = self._load_resume()

        # ---- data
        if resume is not None:
            classes = [str(c) for c in resume["classes"]]
            train_samples = _samples_from_split(self.data_root, list(resume["split"]["train"]))
            test_samples = _samples_from_split(self.data_root, list(resume["split"]["test"]))
        else:
            samples = scan_folder(self.data_root)
            train_samples, test_samples = split_samples(
                samples, by=cfg.split_by, test_fraction=cfg.test_fraction, seed=cfg.seed
            )
            classes = classes_of(train_samples)
        if len(classes) < 2:
            raise DatasetError(f"{self.data_root}: training needs at least 2 identities, found {len(classes)}")
        split = {
            "train": [_relative(s.path, self.data_root) for s in train_samples],
            "test": [_relative(s.path, self.data_root) for s in test_samples],
        }

        # ---- model
        seed_everything(cfg.seed)
        backbone = build_backbone(cfg)
        head = create_head(cfg.loss, cfg.embedding_size, len(classes), s=cfg.s, m=cfg.m)
        input_size = tuple(backbone.input_size)
        on_cuda = self.device.type == "cuda"
        self.channels_last = bool(cfg.channels_last and on_cuda)
        self.amp_dtype = None
        if cfg.amp and on_cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            torch.backends.cudnn.benchmark = True
        net = TrainNet(backbone, head).to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        model = ddp.wrap(net, self.dist)

        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.schedule == "cosine":
            scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        elif cfg.milestones:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

        start_epoch, step = 0, 0
        best: dict[str, Any] = {"best_test_acc": None, "best_epoch": None, "best_step": None}
        metrics: dict[str, Any] = {}
        if resume is not None:
            try:
                net.backbone.load_state_dict(resume["backbone"])
                net.head.load_state_dict(resume["head"])
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
                if "scaler" in resume and scaler.is_enabled():
                    scaler.load_state_dict(resume["scaler"])
            except (RuntimeError, KeyError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0]
                raise CheckpointError(f"{self.out / 'last.pt'}: cannot resume from it ({first})") from None
            if cfg.schedule == "cosine":
                scheduler.T_max = cfg.epochs
            start_epoch, step = int(resume["epoch"]), int(resume["step"])
            metrics = dict(resume.get("metrics") or {})
            best.update({k: metrics.get(k) for k in best})

        # ---- loaders
        train_tf = build_transform(input_size, train=True, augment=cfg.augment)
        test_tf = build_transform(input_size, train=False)
        train_ds = FaceFolderDataset(train_samples, classes, train_tf)
        test_classes = classes_of(test_samples) if cfg.split_by == "identity" else classes
        test_ds = FaceFolderDataset(test_samples, test_classes, test_tf)
        sampler = ddp.make_train_sampler(train_ds, self.dist, cfg.seed)
        train_gen = torch.Generator()
        train_loader = self._make_loader(train_ds, train=True, sampler=sampler, generator=train_gen)
        test_loader = self._make_loader(
            test_ds, train=False, sampler=None, generator=torch.Generator().manual_seed(cfg.seed)
        )
        steps_per_epoch = len(train_loader)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        has_test = len(test_ds) > 0 and is_main

        log = JsonLog(self.out / "log.jsonl", enabled=is_main, resume_step=step if resume is not None else None)
        if is_main:
            save_run_json(self.out / "config.json", cfg.to_dict())

        def run_eval(epoch_no: int) -> dict[str, Any]:
            result = self.evaluate(test_loader, test_samples)
            log.write({"step": step, "epoch": epoch_no, "split": "test", **result})
            return result

        def payload(epoch_done: int) -> dict[str, Any]:
            p = {
                "backbone": net.backbone.state_dict(),
                "head": net.head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch_done,
                "step": step,
                "config": cfg.to_dict(),
                "classes": classes,
                "split": split,
                "metrics": metrics,
            }
            if scaler.is_enabled():
                p["scaler"] = scaler.state_dict()
            return p

        progress = None
        task = None
        if self.progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            progress.start()
            task = progress.add_task(f"train {cfg.model}", total=total_steps, completed=min(step, total_steps), info="")

        epoch = start_epoch
        last_eval_step = -1 if resume is None else step
        stopped = False
        try:
            model.train()
            for epoch in range(start_epoch, cfg.epochs):
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    stopped = True
                    break
                epoch_seed = cfg.seed + epoch
                seed_everything(epoch_seed + _RANK_SEED_STRIDE * self.dist.rank)
                train_gen.manual_seed(epoch_seed + _RANK_SEED_STRIDE * self.dist.rank)
                if sampler is not None:
                    sampler.set_epoch(epoch)
                lr = optimizer.param_groups[0]["lr"]
                win = [0.0, 0.0, 0.0]  # loss sum, correct, count since the last log record
                ep = [0.0, 0.0, 0.0]  # the same over the epoch
                for images, labels in self._batches(train_loader, train_samples):
                    images, labels = self._to_device(images, labels)
                    with self._autocast():
                        logits, emb = model(images, labels)
                    loss = F.cross_entropy(logits.float(), labels)
                    total = loss + cfg.l1 * l1_penalty(net) if cfg.l1 > 0 else loss
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    with torch.no_grad():
                        n = labels.numel()
                        correct = (net.head.predict_logits(emb.detach().float()).argmax(1) == labels).sum().item()
                        batch_loss = loss.item()
                    for acc in (win, ep):
                        acc[0] += batch_loss * n
                        acc[1] += correct
                        acc[2] += n
                    if not math.isfinite(batch_loss):
                        raise OccluFaceError(
                            f"training diverged at step {step} (loss {batch_loss}); lower --lr (now {lr}) or use --loss softmax"
                        )
                    if cfg.log_every and step % cfg.log_every == 0:
                        self._log_train(log, win, step, epoch + 1, lr)
                        win = [0.0, 0.0, 0.0]
                    if has_test and cfg.eval_every and step % cfg.eval_every == 0:
                        res = run_eval(epoch + 1)
                        last_eval_step = step
                        metrics.update({"test_loss": res["loss"], "test_acc": res["acc"]})
                    if progress is not None:
                        progress.update(
                            task,
                            completed=step,
                            info=f"epoch {epoch + 1}/{cfg.epochs} loss {batch_loss:.3f} lr {lr:.3g}",
                        )
                    if cfg.max_steps is not None and step >= cfg.max_steps:
                        stopped = True
                        break
                finished_epoch = not stopped
                if win[2] and cfg.log_every and step % cfg.log_every != 0:
                    self._log_train(log, win, step, epoch + 1, lr)
                e_loss, e_correct, e_n = self._reduce(ep)
                if e_n:
                    metrics.update({"train_loss": e_loss / e_n, "train_acc": e_correct / e_n})
                if finished_epoch:
                    scheduler.step()
                if has_test and last_eval_step != step:
                    res = run_eval(epoch + 1)
                    last_eval_step = step
                    metrics.update({"test_loss": res["loss"], "test_acc": res["acc"]})
                epochs_done = epoch + 1 if finished_epoch else epoch
                if is_main:
                    improved = (
                        has_test
                        and metrics.get("test_acc") is not None
                        and (best["best_test_acc"] is None or metrics["test_acc"] > best["best_test_acc"])
                    )
                    if improved or not has_test:
                        best.update(
                            {"best_test_acc": metrics.get("test_acc"), "best_epoch": epoch + 1, "best_step": step}
                        )
                    metrics.update(best)
                    state = payload(epochs_done)
                    save_checkpoint(self.out / "last.pt", state)
                    if improved or not has_test:
                        save_checkpoint(self.out / "best.pt", state)
                if stopped:
                    break
            else:
                epoch = cfg.epochs
        finally:
            if progress is not None:
                progress.stop()

        if self.dist.enabled:  # BatchNorm running stats drift apart after the last step; take rank 0's
            for buf in net.buffers():
                torch.distributed.broadcast(buf, 0)
            ddp.barrier(self.dist)

        summary = {
            "model": cfg.model,
            "loss": cfg.loss,
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "steps": step,
            "epochs_completed": epoch,  # a max-steps stop inside an epoch does not count it
            "stopped_by_max_steps": stopped,
            "num_classes": len(classes),
            "num_train": len(train_samples),
            "num_test": len(test_samples),
            "split_by": cfg.split_by,
            "train_loss": metrics.get("train_loss"),
            "train_acc": metrics.get("train_acc"),
            "test_loss": metrics.get("test_loss"),
            "test_acc": metrics.get("test_acc"),
            "best_test_acc": best["best_test_acc"],
            "best_epoch": best["best_epoch"],
            "checkpoint": str(self.out / "last.pt"),
            "best_checkpoint": str(self.out / "best.pt"),
            "log": str(self.out / "log.jsonl"),
            "resumed_from_step": int(resume["step"]) if resume is not None else None,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if is_main:
            save_run_json(self.out / "summary.json", summary)
        return summary


def train(config: TrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` (single process, or DDP when launched by torchrun); returns the final summary."""
    info = ddp.setup()
    try:
        return Trainer(config, progress=progress, dist=info).fit()
    finally:
        ddp.cleanup(info)
