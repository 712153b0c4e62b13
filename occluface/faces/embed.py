"""Image + face box -> L2-normalised embedding, with the crop each model was trained on.

One front door for every backbone, so benchmarks and the roll-call compare models fairly: dlib's ResNet gets
dlib's own 5-point chip (`occluface.faces.chips.dlib_chip`); trainable backbones get the 5-point ArcFace
similarity alignment at their input size (`occluface.faces.align.align_face`), with the 5 points taken from
dlib's 68-point landmarks, and pixels scaled to [-1, 1] ((x/255 - 0.5) / 0.5, the ArcFace convention).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from occluface.errors import OccluFaceError
from occluface.faces.chips import Box, as_rgb_uint8, dlib_chip

__all__ = ["FaceEmbedder", "l2_normalize"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is the cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class FaceEmbedder:
    """Embeds faces with one model: `embed_image(image, box)` -> D, `embed_chips(chips)` -> N x D (unit rows).

    Pass `model_name` (anything `occluface.models.create` knows, e.g. "dlib_resnet", "iresnet50") plus its
    create options, or an already-built/loaded `model` (e.g. from a checkpoint). `mean`/`std` say how uint8
    chips become the float input of trainable backbones; dlib's ResNet always takes [0, 1] RGB.

    `flip=True` is test-time augmentation: each face's vector is the mean of the unit embeddings of its chip
    and of the chip's mirror image, at twice the cost. It is off by default: it raised held-out rank-1 but
    missed the adoption rule written for it (docs/results/routed-flip), and galleries made with and without
    it must not be mixed.
    """

    def __init__(
        self,
        model_name: str = "dlib_resnet",
        *,
        model: Any = None,
        device: str = "cpu",
        batch_size: int = 64,
        mean: float = 0.5,
        std: float = 0.5,
        flip: bool = False,
        **create_kwargs: Any,
    ):
        if model is None:
            from occluface.models import create

            model = create(model_name, **create_kwargs)
        if batch_size < 1:
            raise OccluFaceError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.model_name = getattr(model, "name", model_name)
        self.device = device
        self.batch_size = int(batch_size)
        self.mean = float(mean)
        self.std = float(std)
        self.flip = bool(flip)
        self.input_size = tuple(getattr(model, "input_size", (112, 112)))
        self.embedding_size = int(getattr(model, "embedding_size", 0))
        from occluface.models.dlib_resnet import DlibResNet

        self.is_dlib = isinstance(model, DlibResNet)
        # Models declaring `embeds_uint8` (ONNX ones such as SFace) take the uint8 chips as they are.
        self.embeds_uint8 = bool(getattr(model, "embeds_uint8", False))
        # Models declaring `chip = "dlib"` (the PyTorch port of dlib's ResNet) take dlib's chip and [0, 1] pixels.
        self.uses_dlib_chip = self.is_dlib or getattr(model, "chip", None) == "dlib"
        if self.uses_dlib_chip and not self.is_dlib:
            self.mean, self.std = 0.0, 1.0
        if hasattr(model, "eval"):
            model.eval()
        if hasattr(model, "to") and not self.is_dlib and not self.embeds_uint8:
            model.to(device)

    # ---------------------------------------------------------------- cropping
    def chip(self, image_rgb: np.ndarray, box: Box, landmarks5: np.ndarray | None = None) -> np.ndarray:
        """The aligned uint8 H x W x 3 chip this model expects for the face inside ``box``.

        `landmarks5` (ArcFace order) skips landmark detection for trainable backbones; dlib's chip always
        uses dlib's own 5-point predictor, as the model was trained that way.
        """
        image = as_rgb_uint8(image_rgb)
        if self.uses_dlib_chip:
            return dlib_chip(image, box, size=self.input_size[0])
        from occluface.faces.align import align_face  # lazy: another module, imported only when needed

        if landmarks5 is None:
            from occluface.faces.landmarks import five_points, landmarks68

            landmarks5 = five_points(landmarks68(image, box))
        h, w = self.input_size
        if h != w:
            raise OccluFaceError(
                f"{self.model_name}: the ArcFace alignment makes square chips, but the model takes {h}x{w}"
            )
        return align_face(image, np.asarray(landmarks5, dtype=np.float32), h)

    # ---------------------------------------------------------------- embedding
    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x D float32 unit-length embeddings of aligned uint8 chips, computed in batches."""
        d = self.embedding_size or 0
        if len(chips) == 0:
            return np.zeros((0, d), dtype=np.float32)
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = [as_rgb_uint8(c) for c in chips[start : start + self.batch_size]]
            shapes = {c.shape[:2] for c in batch}
            if shapes != {self.input_size}:
                raise OccluFaceError(
                    f"{self.model_name}: chips must be {self.input_size[0]}x{self.input_size[1]}, got "
                    f"{sorted(shapes)}; make them with FaceEmbedder.chip()"
                )
            vectors = self._embed_batch(batch)
            if self.flip:
                mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in batch]
                vectors = l2_normalize(vectors) + l2_normalize(self._embed_batch(mirrored))
            out.append(vectors)
        return l2_normalize(np.concatenate(out, axis=0))

    def _embed_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        if self.is_dlib or self.embeds_uint8:
            return self.model.embed_chips(batch)
        return self._forward(batch)

    def _forward(self, batch: list[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        with torch.no_grad():
            y = self.model(x.to(self.device))
        return y.detach().float().cpu().numpy()

    def embed_image(self, image_rgb: np.ndarray, box: Box) -> np.ndarray:
        """Unit-length D vector of the face inside ``box`` (x1, y1, x2, y2)."""
        return self.embed_chips([self.chip(image_rgb, box)])[0]

    def embed_images(self, images: Sequence[np.ndarray], boxes: Sequence[Box]) -> np.ndarray:
        """N x D embeddings of one face per image (batched through the model)."""
        if len(images) != len(boxes):
            raise OccluFaceError(f"got {len(images)} images but {len(boxes)} boxes")
        return self.embed_chips([self.chip(img, box) for img, box in zip(images, boxes)])
