"""`occluface_resnet`: dlib's ResNet fine-tuned for occluded faces (masks, dust, low light, partial occlusion).

Same network, input and output as `dlib_resnet_torch` (150x150 dlib chips in [0, 1] -> 128-d), so it is a
drop-in replacement wherever dlib's model is used. The shipped file `weights/occluface_resnet.pt` holds only
the fine-tuned tensors as an fp16 DIFFERENCE to dlib's own weights (read from face-recognition-models' .dat):
an absolute fp16 copy would round the weights, the difference rounds only the (small) change. How the file was
made: `occluface.train.distill` (`occluface finetune`); its `meta` records the run's settings and the
held-out identities that `occluface bench accuracy` evaluates on.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from occluface.errors import CheckpointError, OccluFaceError
from occluface.models.registry import Weights, register

__all__ = ["WEIGHTS", "NAME", "build_finetuned", "load_delta", "weights_meta"]

WEIGHTS = Path(__file__).resolve().parent / "weights" / "occluface_resnet.pt"
NAME = "occluface_resnet"


def load_delta(path: str | Path = WEIGHTS) -> dict[str, Any]:
    """The delta file's payload {"backbone": name -> fp16 tensor, "meta": {...}}; clear error when unusable."""
    from occluface.models.checkpoint import load_checkpoint

    path = Path(path)
    payload = load_checkpoint(path)
    meta = payload.get("meta")
    if not isinstance(meta, dict) or meta.get("format") != "occluface-dlib-delta-v1":
        raise CheckpointError(f"{path}: not an occluface dlib delta file (format occluface-dlib-delta-v1)")
    return payload


def weights_meta(path: str | Path = WEIGHTS) -> dict[str, Any]:
    """The run settings and held-out identities stored with the shipped weights."""
    return dict(load_delta(path)["meta"])


def weights_fingerprint(path: str | Path = WEIGHTS) -> str:
    """First 12 hex digits of the weight file's SHA-256: stored with every enrolment, so that vectors of one
    release of the fine-tuned weights are never compared with another's. Hashed once per file version (every
    recognizer asks for it; the file is 10 MB)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the fine-tuned weights ({exc.strerror or exc})") from None
    return _fingerprint(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the fine-tuned weights ({exc.strerror or exc})") from None


def build_finetuned(weights: str | Path | None = None):
    """dlib's ResNet (`DlibResNetTorch`) plus the fine-tuning delta from `weights` (default: the shipped file)."""
    import torch

    from occluface.models.dlib_port import DlibResNetTorch

    model = DlibResNetTorch(pretrained=True)
    path = Path(weights) if weights is not None else WEIGHTS
    payload = load_delta(path)
    state = model.state_dict()
    with torch.no_grad():
        for name, d in payload["backbone"].items():
            if name not in state or tuple(state[name].shape) != tuple(d.shape):
                raise CheckpointError(f"{path}: tensor {name} {tuple(d.shape)} does not fit dlib's network")
            state[name].add_(d.float())
    model.name = NAME
    model.weights_meta = payload["meta"]
    return model


@register(
    NAME,
    default_input_size=(150, 150),
    description="dlib's ResNet fine-tuned on occluded faces (self-distillation; 128-d, 150x150 dlib chips, [0,1])",
    weights=Weights(chip="dlib", fingerprint=lambda: f"{NAME}:{weights_fingerprint()}", thresholds=NAME),
)
def _build(
    embedding_size: int = 128,
    input_size: tuple[int, int] = (150, 150),
    weights: str | None = None,
):
    """The fine-tuned network with the shipped delta (or `weights`: another delta file from `occluface finetune`)."""
    if embedding_size not in (128, 512):  # 512 = the registry's untouched default
        raise OccluFaceError(f"{NAME} is a 128-d network; cannot give {embedding_size}-d")
    if tuple(input_size) != (150, 150):
        raise OccluFaceError(f"{NAME} takes 150x150 dlib chips only; got input_size={tuple(input_size)}")
    return build_finetuned(weights)
