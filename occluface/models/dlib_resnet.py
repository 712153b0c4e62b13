"""dlib's pretrained ResNet face descriptor (128-d) behind the same interface as the trainable backbones.

It is the baseline every occluface model is compared with, and later a distillation teacher, so it must be
callable exactly like them: `create("dlib_resnet")(x)` with x a B x 3 x 150 x 150 batch.

Input convention (differs from the trainable backbones on purpose, because dlib does its own normalisation):
x holds RGB images with values in [0, 1] (not mean/std normalised), each an aligned chip made the way
`dlib.get_face_chip` makes it (see `occluface.faces.chips.dlib_chip`). Values are clamped to [0, 1] and
rounded to uint8 before dlib sees them. The network runs inside dlib (CPU), so the output carries no
gradient and the module has no parameters (`trainable = False`).

The model file `dlib_face_recognition_resnet_model_v1.dat` comes from the `face-recognition-models` package;
it is loaded once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from torch import nn

from occluface.errors import OccluFaceError
from occluface.models.files import dlib_model
from occluface.models.registry import Weights, check_batch, register

#: Stored with every dlib enrolment (the model file never changes).
MODEL_VERSION = "dlib_face_recognition_resnet_model_v1"

__all__ = ["DlibResNet", "load_dlib_resnet", "EMBEDDING_SIZE", "INPUT_SIZE"]

EMBEDDING_SIZE = 128
INPUT_SIZE = (150, 150)


@lru_cache(maxsize=1)
def load_dlib_resnet():
    """The dlib `face_recognition_model_v1`, loaded once (the file is 22 MB and takes ~0.3 s to parse)."""
    import dlib

    path = dlib_model("resnet")
    try:
        return dlib.face_recognition_model_v1(str(path))
    except RuntimeError as exc:  # dlib raises RuntimeError on a corrupt/truncated file
        raise OccluFaceError(f"{path}: cannot load dlib's ResNet model ({exc}); reinstall face-recognition-models")


class DlibResNet(nn.Module):
    """dlib's ResNet-29 face descriptor: B x 3 x 150 x 150 RGB in [0, 1] -> B x 128 (unit-ish length).

    `num_jitters > 0` averages that many randomly jittered copies per face (dlib's option; slower, and the
    jitter is dlib's own random stream, so leave it 0 for reproducible benchmarks).
    """

    embedding_size = EMBEDDING_SIZE
    input_size = INPUT_SIZE
    trainable = False
    chip = "dlib"  # FaceEmbedder: crop with occluface.faces.chips.dlib_chip

    def __init__(self, num_jitters: int = 0):
        super().__init__()
        if isinstance(num_jitters, bool) or not isinstance(num_jitters, int) or num_jitters < 0:
            raise OccluFaceError(f"dlib_resnet: num_jitters must be an int >= 0, got {num_jitters!r}")
        self.name = "dlib_resnet"
        self.num_jitters = num_jitters
        load_dlib_resnet()  # fail now, at create(), if the model file is broken

    @property
    def _model(self):
        # Looked up, not stored: the module stays deep-copyable and picklable (dlib objects are neither).
        return load_dlib_resnet()

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float32 descriptors of aligned 150 x 150 x 3 uint8 RGB chips, in one dlib batch call.

        This is the direct path (no float round trip); `forward` converts and calls it.
        """
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        batch = []
        for i, chip in enumerate(chips):
            chip = np.asarray(chip)
            if chip.shape != (*INPUT_SIZE, 3) or chip.dtype != np.uint8:
                raise OccluFaceError(
                    f"dlib_resnet: chip {i} must be a 150 x 150 x 3 uint8 RGB array "
                    f"(see occluface.faces.chips.dlib_chip), got {chip.shape} {chip.dtype}"
                )
            batch.append(np.ascontiguousarray(chip))
        vectors = self._model.compute_face_descriptor(batch, num_jitters=self.num_jitters)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32).reshape(len(batch), EMBEDDING_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x, self.name, INPUT_SIZE)
        with torch.no_grad():
            chips = (x.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
            chips = chips.permute(0, 2, 3, 1).cpu().numpy()
        out = self.embed_chips(list(chips))
        return torch.from_numpy(out).to(device=x.device)

    def extra_repr(self) -> str:
        return f"embedding_size={EMBEDDING_SIZE}, input_size={INPUT_SIZE}, num_jitters={self.num_jitters}"


@register(
    "dlib_resnet",
    default_input_size=INPUT_SIZE,
    description="dlib's pretrained ResNet-29 (128-d, 150x150 dlib chips, RGB in [0,1]); frozen baseline/teacher",
    weights=Weights(chip="dlib", fingerprint=lambda: MODEL_VERSION, thresholds="dlib_resnet"),
)
def _build(embedding_size: int = EMBEDDING_SIZE, input_size: tuple[int, int] = INPUT_SIZE, num_jitters: int = 0):
    """Pretrained dlib ResNet; its size is fixed, so only 128-d outputs and 150x150 inputs are possible."""
    # The registry's generic default is 512-d; dlib's network is fixed at 128, so any request other than
    # 128 or that untouched default would be silently wrong and is refused.
    if embedding_size not in (EMBEDDING_SIZE, 512):
        raise OccluFaceError(f"dlib_resnet is pretrained with 128-d embeddings; cannot give {embedding_size}-d")
    if tuple(input_size) != INPUT_SIZE:
        raise OccluFaceError(f"dlib_resnet takes 150x150 dlib chips only; got input_size={tuple(input_size)}")
    return DlibResNet(num_jitters=num_jitters)
