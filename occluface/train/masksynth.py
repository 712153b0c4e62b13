"""Training the warp generator against the critic (resumable, seeded, one JSONL line per logged step).

Every step draws (seeded by the run seed and the step number, so a resumed run sees the same batches)
unmasked training faces, mask pictures, a random initial warp ``p0`` around the identity (so the generator
has to learn to correct a misplaced mask, as in ST-GAN) and real masked faces. The critic is updated
``n_critic`` times per generator update; the generator's loss adds ``update_penalty`` times the mean squared
size of its warp updates (ST-GAN's update penalty), alike for every loss. ``last.pt`` (everything needed to resume) is written atomically
every ``ckpt_every`` steps and at the end; ``generator.pt`` (fp16 generator weights + its config) is what
``synth-eval`` and ``synth --kind learned`` load.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occluface.train.runs import JsonLog, save_run_json
from occluface.data.masksynth.generator import save_generator
from occluface.errors import CheckpointError, OccluFaceError

#: Paper-faithful optimiser defaults per loss: (optimiser, lr, betas, critic steps per generator step).
DEFAULTS = {
    "gan": ("adam", 2e-4, (0.5, 0.999), 1),
    "dcgan": ("adam", 2e-4, (0.5, 0.999), 1),
    "wgan": ("rmsprop", 5e-5, None, 5),  # WGAN: weight clipping, no momentum
    "wgan-div": ("adam", 2e-4, (0.5, 0.999), 5),
}
LABELS = {"gan": "plain GAN", "dcgan": "DCGAN", "wgan": "WGAN", "wgan-div": "Py-WGAN-div"}


@dataclass
class MaskSynthConfig:
    """Hyper-parameters; ``None`` picks the loss's default from :data:`DEFAULTS`."""

    loss: str = "wgan-div"
    pyconv: bool = True
    width: int = 64
    gen_size: int = 144
    critic_width: int = 64
    steps: int = 2
    batch_size: int = 16
    iters: int = 20000
    n_critic: int | None = None
    lr: float | None = None
    k: float = 2.0
    p: float = 6.0
    clip: float = 0.01
    init_jitter: float = 0.12
    update_penalty: float = 1.0
    drawn_masks: int = 12
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    max_minutes: float | None = None
    max_cpu_minutes: float | None = None
    log_every: int = 10
    ckpt_every: int = 100
    extra: dict = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        opt, lr, betas, n_critic = DEFAULTS[self.loss]
        return {"optimizer": opt, "lr": self.lr or lr, "betas": betas, "n_critic": self.n_critic or n_critic}


def label(loss: str, pyconv: bool) -> str:
    """Method name in tables: the paper's names, and the ablation's when PyConv is off."""
    if loss == "wgan-div":
        return "Py-WGAN-div" if pyconv else "WGAN-div (no PyConv)"
    return LABELS[loss] + ("" if not pyconv else " (PyConv)")


def random_warps(rng: np.random.Generator, n: int, jitter: float) -> torch.Tensor:
    """Initial warps around the identity: scale, rotation/shear and shift up to ``jitter`` (normalised units)."""
    p = np.zeros((n, 8), np.float32)
    if jitter > 0:
        s = rng.uniform(-jitter, jitter, n)
        p[:, 0] = s + rng.uniform(-jitter / 3, jitter / 3, n)
        p[:, 4] = s + rng.uniform(-jitter / 3, jitter / 3, n)
        r = rng.uniform(-jitter / 2, jitter / 2, n)
        p[:, 1], p[:, 3] = r, -r
        p[:, 2] = rng.uniform(-jitter, jitter, n)
        p[:, 5] = rng.uniform(-jitter, jitter, n)
    return torch.from_numpy(p)


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise OccluFaceError(f"--device must be cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OccluFaceError("--device cuda asked for, but no CUDA GPU is visible to torch")
    return torch.device(name)


def build_models(cfg: MaskSynthConfig):
    from occluface.data.masksynth.critic import Critic
    from occluface.data.masksynth.generator import WarpGenerator
    from occluface.data.masksynth.losses import check_loss

    check_loss(cfg.loss)
    gen = WarpGenerator(cfg.width, cfg.pyconv, cfg.gen_size)
    critic = Critic(cfg.critic_width, batchnorm=cfg.loss == "dcgan")
    r = cfg.resolved()
    if r["optimizer"] == "rmsprop":
        opt_g = torch.optim.RMSprop(gen.parameters(), lr=r["lr"])
        opt_d = torch.optim.RMSprop(critic.parameters(), lr=r["lr"])
    else:
        opt_g = torch.optim.Adam(gen.parameters(), lr=r["lr"], betas=r["betas"])
        opt_d = torch.optim.Adam(critic.parameters(), lr=r["lr"], betas=r["betas"])
    return gen, critic, opt_g, opt_d


class Batches:
    """Seeded batch drawing from the crop cache and the mask pictures (same step -> same batch)."""

    def __init__(self, data: dict[str, np.ndarray], pictures: np.ndarray, cfg: MaskSynthConfig, device: torch.device):
        tr_u = data["unmasked_split"] == "train"
        tr_m = data["masked_split"] == "train"
        if not tr_u.any() or not tr_m.any():  # tiny sample sets: use everything
            tr_u = np.ones(len(data["unmasked_split"]), bool)
            tr_m = np.ones(len(data["masked_split"]), bool)
        self.faces = data["unmasked_images"][tr_u]
        self.real = data["masked_images"][tr_m]
        self.pictures = torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous()
        self.cfg, self.device = cfg, device

    def draw(self, step: int, sub: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from occluface.data.masksynth.data import to_tensor_images

        rng = np.random.default_rng([self.cfg.seed, step, sub])
        b = self.cfg.batch_size
        fi = rng.integers(0, len(self.faces), b)
        ri = rng.integers(0, len(self.real), b)
        mi = rng.integers(0, len(self.pictures), b)
        face = to_tensor_images(self.faces[fi])
        real = to_tensor_images(self.real[ri])
        mask = self.pictures[mi].clone()
        flip_f, flip_r, flip_m = (torch.from_numpy(rng.random(b) < 0.5) for _ in range(3))
        face[flip_f] = face[flip_f].flip(-1)
        real[flip_r] = real[flip_r].flip(-1)
        mask[flip_m] = mask[flip_m].flip(-1)
        p0 = random_warps(rng, b, self.cfg.init_jitter)
        return face.to(self.device), mask.to(self.device), p0.to(self.device), real.to(self.device)


def train(data: dict[str, np.ndarray], pictures: np.ndarray, out_dir: str | Path, cfg: MaskSynthConfig,
          *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume from ``out_dir/last.pt``) up to ``cfg.iters`` generator steps; returns a summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from occluface.data.masksynth.losses import clip_weights, critic_loss, generator_loss
    from occluface.models.checkpoint import load_checkpoint, save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen, critic, opt_g, opt_d = build_models(cfg)
    start = 0
    last = out / "last.pt"
    if last.is_file():
        ck = load_checkpoint(last)
        old = ck.get("config", {})
        for key in ("loss", "pyconv", "width", "gen_size", "critic_width"):
            if old.get(key) != getattr(cfg, key):
                raise CheckpointError(f"{last}: trained with {key}={old.get(key)!r}, not {getattr(cfg, key)!r}; "
                                      "use another --out or the same settings")
        gen.load_state_dict(ck["backbone"])
        critic.load_state_dict(ck["critic"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        start = int(ck["iteration"])
    gen.to(device)
    critic.to(device)
    for opt in (opt_g, opt_d):  # optimiser state follows the models to the device
        for state in opt.state.values():
            for k, v in state.items():
                if torch.is_tensor(v):
                    state[k] = v.to(device)
    save_run_json(out / "config.json", asdict(cfg) | {"resolved": cfg.resolved()})
    batches = Batches(data, pictures, cfg, device)
    r = cfg.resolved()
    meta = {"loss": cfg.loss, "pyconv": cfg.pyconv, "steps": cfg.steps, "label": label(cfg.loss, cfg.pyconv),
            "batch_size": cfg.batch_size, "seed": cfg.seed}

    def checkpoint(step: int) -> None:
        save_checkpoint(last, {"backbone": gen.state_dict(), "critic": critic.state_dict(), "opt_g": opt_g.state_dict(),
                               "opt_d": opt_d.state_dict(), "iteration": step, "config": asdict(cfg),
                               "generator": gen.config()})
        save_generator(out / "generator.pt", gen, meta | {"iteration": step})

    t0, c0 = time.time(), time.process_time()
    step = start
    stopped = False
    log = JsonLog(out / "log.jsonl", resume_step=start or None, key="iter")
    with Progress(
        TextColumn(f"masksynth {cfg.loss}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
        disable=not progress,
    ) as bar:
        task = bar.add_task("", total=cfg.iters, completed=start)
        while step < cfg.iters:
            gen.train()
            critic.train()
            info: dict[str, Any] = {}
            for sub in range(r["n_critic"]):
                face, mask, p0, real = batches.draw(step, sub)
                with torch.no_grad():
                    fake = gen.refine(face, mask, p0, cfg.steps)[1][-1]
                tg = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 31 + sub)
                d_loss, info = critic_loss(cfg.loss, critic, real, fake, k=cfg.k, p=cfg.p, generator=tg)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                if cfg.loss == "wgan":
                    clip_weights(critic, cfg.clip)
            face, mask, p0, _ = batches.draw(step, 1000)
            for prm in critic.parameters():
                prm.requires_grad_(False)
            p, comps, dps = gen.refine(face, mask, p0, cfg.steps, return_updates=True)
            g_loss = generator_loss(cfg.loss, critic, comps[-1])
            if cfg.update_penalty > 0:  # ST-GAN's penalty on the warp updates: keeps the masks from drifting away
                g_loss = g_loss + cfg.update_penalty * torch.stack([d.pow(2).sum(1).mean() for d in dps]).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            for prm in critic.parameters():
                prm.requires_grad_(True)
            step += 1
            bar.update(task, completed=step, description=f"D {float(d_loss.detach()):.3f} G {float(g_loss.detach()):.3f}")
            if step % cfg.log_every == 0 or step == cfg.iters:
                row = {"iter": step, "d_loss": round(float(d_loss.detach()), 5), "g_loss": round(float(g_loss.detach()), 5),
                       **{k: round(v, 5) for k, v in info.items()}, "p_abs": round(float(p.detach().abs().mean()), 5),
                       "seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
                if not all(np.isfinite(v) for v in row.values()):
                    checkpoint(step)
                    raise OccluFaceError(f"training diverged at step {step} ({row}); lower --lr")
                log.write(row)
            if step % cfg.ckpt_every == 0:
                checkpoint(step)
            if (cfg.max_minutes is not None and time.time() - t0 > 60 * cfg.max_minutes) or \
                    (cfg.max_cpu_minutes is not None and time.process_time() - c0 > 60 * cfg.max_cpu_minutes):
                stopped = True
                break
    checkpoint(step)
    summary = {"iterations": step, "resumed_from": start, "stopped_by_time": stopped, "seconds": round(time.time() - t0, 1),
               "cpu_seconds": round(time.process_time() - c0, 1), "generator": str(out / "generator.pt"), **meta}
    save_run_json(out / "summary.json", summary)
    return summary
