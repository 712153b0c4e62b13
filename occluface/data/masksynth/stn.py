"""Spatial transformer for mask pictures: 8 homography parameters -> ``grid_sample`` warp -> alpha composite.

A parameter vector ``p`` (B x 8) stands for the 3x3 matrix ``I + [[p0 p1 p2] [p3 p4 p5] [p6 p7 0]]`` acting on
normalised coordinates in [-1, 1] (``p = 0`` is the identity, as in ST-GAN). The matrix maps an *output*
pixel to where it is sampled in the mask picture, so refining a warp by ``dp`` (sampling the already warped
mask again) gives the matrix product ``H(p) @ H(dp)``: see :func:`compose`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from occluface.errors import OccluFaceError

IDENTITY = torch.zeros(8)


def homography(p: torch.Tensor) -> torch.Tensor:
    """B x 8 parameters -> B x 3 x 3 matrices ``I + P``."""
    if p.ndim != 2 or p.shape[1] != 8:
        raise OccluFaceError(f"homography parameters must be B x 8, got shape {tuple(p.shape)}")
    full = torch.cat([p, torch.zeros_like(p[:, :1])], dim=1).view(-1, 3, 3)
    return full + torch.eye(3, dtype=p.dtype, device=p.device)


def to_params(h: torch.Tensor) -> torch.Tensor:
    """B x 3 x 3 matrices -> B x 8 parameters (scaled so that H[2, 2] = 1)."""
    h = h / h[:, 2:3, 2:3]
    return (h - torch.eye(3, dtype=h.dtype, device=h.device)).reshape(-1, 9)[:, :8]


def compose(p: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """Parameters of the warp ``p`` refined by ``dp`` (iterative refinement: p <- p o dp)."""
    return to_params(homography(p) @ homography(dp))


def sampling_grid(p: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x H x W x 2 grid for ``grid_sample``: where each output pixel samples the mask picture."""
    h, w = size
    ys = (torch.arange(h, dtype=p.dtype, device=p.device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=p.dtype, device=p.device) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, -1, 3)  # 1 x HW x 3
    src = pts @ homography(p).transpose(1, 2)  # B x HW x 3
    z = src[..., 2:3]
    z = torch.where(z.abs() < 1e-3, torch.full_like(z, 1e-3) * torch.sign(z + 1e-12), z)  # no division by ~0
    return (src[..., :2] / z).view(-1, h, w, 2)


def warp(rgba: torch.Tensor, p: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Warp B x 4 x H x W RGBA pictures (0..1, straight alpha) by ``p``; returns straight-alpha RGBA.

    Colour is sampled premultiplied so the transparent surround never bleeds into the mask's edge;
    outside the picture everything is transparent.
    """
    if rgba.ndim != 4 or rgba.shape[1] != 4:
        raise OccluFaceError(f"mask pictures must be B x 4 x H x W (RGBA), got shape {tuple(rgba.shape)}")
    if p.shape[0] != rgba.shape[0] and rgba.shape[0] != 1:
        raise OccluFaceError(f"{p.shape[0]} warps for {rgba.shape[0]} mask pictures")
    size = size or (rgba.shape[2], rgba.shape[3])
    if rgba.shape[0] == 1 and p.shape[0] > 1:
        rgba = rgba.expand(p.shape[0], -1, -1, -1)
    alpha = rgba[:, 3:4]
    premult = torch.cat([rgba[:, :3] * alpha, alpha], dim=1)
    out = F.grid_sample(premult, sampling_grid(p, size), mode="bilinear", padding_mode="zeros", align_corners=False)
    a = out[:, 3:4].clamp(0, 1)
    rgb = out[:, :3] / a.clamp_min(1e-4) * (a > 1e-4)
    return torch.cat([rgb.clamp(0, 1), a], dim=1)


def composite(face: torch.Tensor, rgba: torch.Tensor) -> torch.Tensor:
    """Alpha-composite warped B x 4 x H x W masks over B x 3 x H x W faces (all 0..1)."""
    if face.shape[-2:] != rgba.shape[-2:]:
        raise OccluFaceError(f"face {tuple(face.shape[-2:])} and mask {tuple(rgba.shape[-2:])} sizes differ")
    a = rgba[:, 3:4]
    return face * (1 - a) + rgba[:, :3] * a
