"""The warp generator: face + currently warped mask in, a homography update ``dp`` (8 numbers) out.

As in the paper, the face and the mask picture are stacked on the channel axis, a 7x7 stem keeps as much
of the picture as it can, and four pyramid-convolution (PyConv) stages without BatchNorm extract features
at several scales at once (the first stage mixes 3x3, 5x5, 7x7 and 9x9 grouped kernels, the next ones
drop the largest kernel each, as in PyConvResNet). ``pyconv=False`` swaps every stage for a plain 3x3
convolution of the same width (the ablation). The last layer starts near zero, so an untrained generator
leaves the mask where it is (identity warp).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from occluface.data.masksynth.stn import compose, composite, warp
from occluface.errors import CheckpointError, OccluFaceError

#: (kernel sizes, groups) of the four stages, after PyConvResNet (Duta et al. 2020).
PYRAMID = (((3, 5, 7, 9), (1, 4, 8, 16)), ((3, 5, 7), (1, 4, 8)), ((3, 5), (1, 4)), ((3,), (1,)))
FACE_SIZE = 144


def _groups(wanted: int, cin: int, cout: int) -> int:
    """The largest group count <= wanted that divides both channel counts (tiny test widths)."""
    g = max(1, min(wanted, math.gcd(cin, cout)))
    while cin % g or cout % g:
        g -= 1
    return g


class PyConv(nn.Module):
    """Pyramid convolution: the output channels are split over kernels of growing size and falling depth."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], groups: tuple[int, ...], stride: int = 1):
        super().__init__()
        if len(kernels) != len(groups):
            raise OccluFaceError("PyConv needs one group count per kernel size")
        splits = [cout // len(kernels)] * len(kernels)
        splits[0] += cout - sum(splits)
        self.levels = nn.ModuleList(
            nn.Conv2d(cin, c, k, stride=stride, padding=k // 2, groups=_groups(g, cin, c), bias=True)
            for k, g, c in zip(kernels, groups, splits)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([level(x) for level in self.levels], dim=1)


class WarpGenerator(nn.Module):
    """B x 7 x 144 x 144 (face RGB + warped mask RGBA, 0..1) -> B x 8 homography update."""

    def __init__(self, width: int = 64, pyconv: bool = True, size: int = FACE_SIZE):
        """``size``: the side the generator looks at (144 = the paper; a smaller side makes CPU runs cheaper
        -- the warp itself is always applied to the full-size mask picture and composite)."""
        super().__init__()
        if width < 4:
            raise OccluFaceError(f"generator width must be at least 4, got {width}")
        if size < 32:
            raise OccluFaceError(f"generator input side must be at least 32, got {size}")
        self.width, self.pyconv, self.size = int(width), bool(pyconv), int(size)
        chans = [width, width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(7, width, 7, stride=2, padding=3), nn.LeakyReLU(0.2, inplace=True))
        stages = []
        for i, (kernels, groups) in enumerate(PYRAMID):
            conv = PyConv(chans[i], chans[i + 1], kernels, groups, stride=2) if pyconv else nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1)
            stages.append(nn.Sequential(conv, nn.LeakyReLU(0.2, inplace=True)))  # no BatchNorm (paper)
        self.stages = nn.Sequential(*stages)
        with torch.no_grad():
            n = self.stages(self.stem(torch.zeros(1, 7, size, size))).numel()
        self.head = nn.Linear(n, 8)
        nn.init.normal_(self.head.weight, std=1e-4)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 7:
            raise OccluFaceError(f"generator input must be B x 7 x H x W (face RGB + mask RGBA), got {tuple(x.shape)}")
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.head(self.stages(self.stem(x)).flatten(1))

    def refine(self, face: torch.Tensor, mask: torch.Tensor, p0: torch.Tensor | None = None, steps: int = 2,
               return_updates: bool = False):
        """Iterative refinement: ``p <- p o G(face, warp(mask, p))`` ``steps`` times.

        Returns the final parameters and the composite after every step (the last one is the output),
        plus the list of updates ``dp`` when ``return_updates`` (training penalises their size).
        """
        b = face.shape[0]
        p = p0 if p0 is not None else torch.zeros(b, 8, dtype=face.dtype, device=face.device)
        composites, updates = [], []
        for _ in range(max(1, int(steps))):
            current = warp(mask, p, face.shape[-2:])
            dp = self(torch.cat([face, current], dim=1))
            p = compose(p, dp)
            updates.append(dp)
            composites.append(composite(face, warp(mask, p, face.shape[-2:])))
        return (p, composites, updates) if return_updates else (p, composites)

    def config(self) -> dict:
        return {"width": self.width, "pyconv": self.pyconv, "size": self.size}


# ----------------------------------------------------------------------------- weight files
def save_generator(path: str | Path, gen, meta: dict[str, Any]) -> Path:
    """fp16 generator weights + what rebuilds it (config, loss, refinement steps, mask canvas box)."""
    from occluface.models.checkpoint import save_checkpoint

    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().clone() for k, v in gen.state_dict().items()}
    return save_checkpoint(path, {"backbone": state, "generator": gen.config(), "meta": dict(meta)})


def load_generator(path: str | Path):
    """Rebuild a trained warp generator (eval mode, float32, CPU) from ``generator.pt`` or ``last.pt``."""
    from occluface.models.checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    info = payload.get("generator")
    if not isinstance(info, dict) or "width" not in info:
        raise CheckpointError(f"{path}: not a mask-synthesis generator file (no 'generator' config)")
    gen = WarpGenerator(int(info["width"]), bool(info["pyconv"]), int(info.get("size", 144)))
    try:
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["backbone"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the generator ({str(exc).splitlines()[0]})") from None
    gen.meta = dict(payload.get("meta") or {})
    if "config" in payload and not gen.meta:
        c = payload["config"]
        gen.meta = {"loss": c.get("loss"), "steps": c.get("steps"), "iteration": payload.get("iteration")}
    return gen.eval()
