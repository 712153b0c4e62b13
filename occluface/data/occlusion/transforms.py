"""``Occlude``: occlusion as a torchvision-style transform (PIL or numpy in, the same type out)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from occluface.data.occlusion.core import KINDS, PARAMS
from occluface.data.occlusion.faces import NoFaceError
from occluface.errors import OccluFaceError


class Occlude:
    """Apply occlusion ``kind`` with probability ``p``.

    ``seed=None`` draws from torch's RNG, so each DataLoader worker (seeded differently by PyTorch)
    produces different occlusions. An int ``seed`` makes the output a pure function of
    (seed, image): the same picture always gets the same occlusion, whatever the worker or order,
    which is what a fixed occluded test set needs. Images where no face is found are returned
    unchanged (counted in ``skipped``) unless ``on_no_face="raise"``.
    """

    def __init__(self, kind: str, p: float = 1.0, seed: int | None = None, *, on_no_face: str = "keep", **params: Any):
        if kind not in KINDS:
            raise OccluFaceError(f"unknown occlusion kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if not 0.0 <= float(p) <= 1.0:
            raise OccluFaceError(f"Occlude p must lie in [0, 1], got {p!r}")
        if on_no_face not in ("keep", "raise"):
            raise OccluFaceError(f"on_no_face must be 'keep' or 'raise', got {on_no_face!r}")
        known = {n for names in PARAMS.values() for n in names} if kind == "mixed" else set(PARAMS[kind])
        unknown = sorted(set(params) - known)
        if unknown:
            raise OccluFaceError(f"unknown parameter(s) {', '.join(unknown)} for occlusion kind {kind!r}")
        self.kind, self.p, self.seed, self.on_no_face, self.params = kind, float(p), seed, on_no_face, params
        self.skipped = 0

    def _draw(self, arr: np.ndarray) -> tuple[float, int]:
        if self.seed is None:
            import torch

            return float(torch.rand(())), int(torch.randint(0, 2**31 - 1, ()))
        key = zlib.crc32(arr.tobytes(), zlib.crc32(repr(arr.shape).encode()))
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, key])
        return float(rng.random()), int(rng.integers(0, 2**31 - 1))

    def __call__(self, img):
        from PIL import Image

        from occluface.data.occlusion.core import apply

        if isinstance(img, Image.Image):
            mode = img.mode
            arr = np.asarray(img.convert("RGB"))
        elif isinstance(img, np.ndarray):
            mode = None
            arr = img
        else:
            raise OccluFaceError(f"Occlude works on PIL images or numpy arrays, got {type(img).__name__}")
        u, seed = self._draw(arr)
        if u >= self.p:
            return img
        try:
            out = apply(arr, self.kind, seed=seed, **self.params)
        except NoFaceError:
            if self.on_no_face == "raise":
                raise
            self.skipped += 1
            return img
        if mode is None:
            return out
        result = Image.fromarray(out)
        return result if mode == "RGB" else result.convert(mode)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(kind={self.kind!r}, p={self.p}, seed={self.seed}{extra})"
