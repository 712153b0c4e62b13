"""Export an embedding backbone to ONNX and prove the file computes what the PyTorch model computes.

Why: ONNX Runtime is the fastest CPU runtime we measured for the dlib port (`occluface bench speed`) and lets
deployments run without PyTorch. An export is only trusted after ONNX Runtime reproduced the PyTorch output
on the same inputs, so `export_onnx` always runs that check and reports the max abs / cosine difference.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occluface.errors import OccluFaceError

__all__ = ["ExportResult", "export_onnx", "check_onnx", "load_backbone", "OnnxBackbone"]

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


@dataclass
class ExportResult:
    """What was written and how closely ONNX Runtime reproduced PyTorch on seeded random inputs."""

    path: str
    model: str
    input_shape: tuple[int | str, int, int, int]
    opset: int
    size_bytes: int
    check_batch: int
    max_abs_diff: float
    min_cosine: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_backbone(model: str = "dlib_resnet_torch", checkpoint: str | Path | None = None) -> nn.Module:
    """A backbone in eval mode: a registry model by name, or the backbone of a training checkpoint."""
    if checkpoint is not None:
        from occluface.models.checkpoint import load_model

        return load_model(checkpoint).backbone.eval()
    from occluface.models import create

    return create(model).eval()


def check_onnx(
    path: str | Path, module: nn.Module, batch: int = 3, seed: int = 0, atol: float = 1e-3
) -> tuple[float, float]:
    """(max abs diff, min cosine) between ONNX Runtime and `module` on a seeded random batch; raises if off."""
    import onnxruntime as ort

    h, w = tuple(getattr(module, "input_size", (112, 112)))
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=gen)
    with torch.inference_mode():
        ref = module(x).float().numpy()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable/invalid graphs
        raise OccluFaceError(f"{path}: ONNX Runtime cannot run the exported model ({exc})") from None
    if got.shape != ref.shape:
        raise OccluFaceError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    diff = float(np.abs(got - ref).max())
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    if not diff <= atol:
        raise OccluFaceError(f"{path}: ONNX Runtime output differs from PyTorch by {diff:.3g} (> {atol})")
    return diff, float(cos.min())


def export_onnx(
    out: str | Path,
    model: str | nn.Module = "dlib_resnet_torch",
    *,
    checkpoint: str | Path | None = None,
    batch: int | str = "dynamic",
    opset: int = 17,
    check: bool = True,
) -> ExportResult:
    """Write `model` (registry name, module, or `checkpoint`) to `out` as ONNX and verify it with ONNX Runtime.

    `batch="dynamic"` leaves the batch axis free (checked with a batch other than the traced one); an int
    fixes it. The graph takes float32 B x 3 x H x W images in the model's own input convention.
    """
    out = Path(out)
    if isinstance(batch, str):
        if batch != "dynamic":
            try:
                batch = int(batch)
            except ValueError:
                raise OccluFaceError(f"batch must be 'dynamic' or a positive int, got {batch!r}") from None
    if isinstance(batch, int) and (isinstance(batch, bool) or batch < 1):
        raise OccluFaceError(f"batch must be 'dynamic' or a positive int, got {batch!r}")
    module = model.eval() if isinstance(model, nn.Module) else load_backbone(model, checkpoint)
    name = str(getattr(module, "name", model if isinstance(model, str) else type(module).__name__))
    h, w = tuple(getattr(module, "input_size", (112, 112)))
    trace_batch = 2 if batch == "dynamic" else int(batch)
    dummy = torch.rand(trace_batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch == "dynamic" else None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OccluFaceError(f"{out.parent}: cannot create output folder ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer chatter
            torch.onnx.export(
                module,
                (dummy,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=int(opset),
                dynamo=False,  # the TorchScript exporter needs no onnxscript and handles these CNNs fine
            )
    except OccluFaceError:
        raise
    except Exception as exc:  # torch.onnx raises many types (unsupported op, opset, I/O)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OccluFaceError(f"{out}: ONNX export of {name} failed ({first})") from None
    check_b = (trace_batch + 1) if batch == "dynamic" else int(batch)
    diff, cos = check_onnx(out, module, batch=check_b) if check else (float("nan"), float("nan"))
    return ExportResult(
        path=str(out),
        model=name,
        input_shape=("batch" if batch == "dynamic" else int(batch), 3, int(h), int(w)),
        opset=int(opset),
        size_bytes=out.stat().st_size,
        check_batch=check_b if check else 0,
        max_abs_diff=diff,
        min_cosine=cos,
    )


class OnnxBackbone(nn.Module):
    """An exported .onnx backbone run by ONNX Runtime behind the torch-module interface `FaceEmbedder` uses.

    Why: ONNX Runtime was the fastest CPU runtime for the dlib port here, so deployments can embed with it
    while keeping every caller unchanged: `FaceEmbedder(model=OnnxBackbone("port.onnx", chip="dlib"))`.
    `chip="dlib"` (for exports of `dlib_resnet_torch`) selects dlib's chip and [0, 1] pixels; leave it None
    for ArcFace-aligned backbones. Inference only (no parameters, no gradients).
    """

    trainable = False

    def __init__(self, path: str | Path, *, chip: str | None = None, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise OccluFaceError(f"{path}: no such ONNX file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types for unreadable/invalid graphs
            raise OccluFaceError(f"{path}: not a loadable ONNX model ({exc})") from None
        inp, out = self._session.get_inputs()[0], self._session.get_outputs()[0]
        if len(inp.shape) != 4 or not all(isinstance(d, int) for d in inp.shape[2:]):
            raise OccluFaceError(f"{path}: expected a B x 3 x H x W image input, found shape {inp.shape}")
        self._input_name = inp.name
        self.input_size = (int(inp.shape[2]), int(inp.shape[3]))
        self.embedding_size = int(out.shape[-1]) if isinstance(out.shape[-1], int) else 0
        self.name = path.stem
        if chip is not None:
            self.chip = chip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from occluface.models.registry import check_batch

        check_batch(x, self.name, self.input_size)
        y = self._session.run(None, {self._input_name: x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(y).to(x.device)
