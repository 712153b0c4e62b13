"""A reader for dlib's binary serialisation format, enough to load dlib DNN model files (`*.dat`) without dlib.

Why: the PyTorch port of dlib's face ResNet (`occluface.models.dlib_port`) takes its weights straight from
`dlib_face_recognition_resnet_model_v1.dat`, so the port needs no converted copy of the weights and no dlib at
run time. Written from the format as dlib's `serialize.h` and `dnn/{core,layers,input,loss,tensor}.h` define it:

* integers: one control byte -- bit 7 set for a negative number, low 4 bits the count of value bytes that
  follow -- then the absolute value, little-endian, in that many bytes;
* floats/doubles: two integers, a 64-bit mantissa and a 16-bit exponent, value = mantissa * 2**exponent
  (exponents 32000/32001/32002 mark +inf/-inf/nan);
* strings: an integer length, then the bytes; bools: one ASCII byte '0' or '1';
* DNN tensors (version 2): version, num_samples, k, nr, nc as integers, then raw little-endian float32 data.

`DlibReader` exposes those primitives; `read_dnn(path, spec)` walks a network whose layer stack is given as a
list (outermost/output layer first, like dlib's template nesting) and returns each layer's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from occluface.errors import OccluFaceError

__all__ = ["DlibReader", "DlibFormatError", "LayerSpec", "read_dnn"]

_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(OccluFaceError):
    """A dlib file that does not hold what the reader expects (truncated, wrong network, other version)."""


class DlibReader:
    """Cursor over the bytes of a dlib-serialised object; every read checks bounds and names the offset."""

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def _fail(self, problem: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {problem} (at byte {self.pos})")

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail(f"truncated: wanted {n} more bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def int(self) -> int:
        """A signed or unsigned integer (dlib packs both the same way)."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self._fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        """A float/double/long double stored as (int64 mantissa, int16 exponent)."""
        mantissa, exponent = self.int(), self.int()
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def bool(self) -> bool:
        byte = bytes(self._take(1))
        if byte not in (b"0", b"1"):
            raise self._fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise self._fail(f"implausible string length {n}")
        return bytes(self._take(n)).decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        start = self.pos
        s = self.string()
        if s not in allowed:
            self.pos = start
            raise self._fail(f"expected {' or '.join(map(repr, allowed))}, found {s!r}")
        return s

    def expect_int(self, what: str, *allowed: int) -> int:
        v = self.int()
        if v not in allowed:
            raise self._fail(f"unsupported {what} {v} (this reader knows {allowed})")
        return v

    def tensor(self) -> np.ndarray:
        """A dlib DNN tensor as a float32 array of shape (num_samples, k, nr, nc)."""
        self.expect_int("tensor version", 2)
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self._fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor is only a shape (a view into the layer's params tensor)."""
        self.expect_int("alias_tensor version", 1)
        return tuple(self.int() for _ in range(4))


@dataclass
class LayerSpec:
    """One level of dlib's template nesting: `kind` is "layer" (add_layer), "tag", "skip" or "input".

    For "layer" levels `details` names the layer class ("con", "affine", "relu", "max_pool", "avg_pool",
    "add_prev", "fc"); the reader fills `params` with what it found.
    """

    kind: str
    details: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def _read_con(r: DlibReader) -> dict[str, Any]:
    r.expect_string("con_4")
    params = r.tensor().reshape(-1)
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    filters, biases = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):  # learning-rate / weight-decay multipliers (training only)
        r.float()
    if filters != (num_filters, filters[1], nr, nc):
        raise r._fail(f"con_ filter shape {filters} does not match {num_filters} x ? x {nr} x {nc}")
    n_w = int(np.prod(filters))
    n_b = int(np.prod(biases))
    if params.size != n_w + n_b:
        raise r._fail(f"con_ holds {params.size} values, expected {n_w} + {n_b}")
    return {
        "weight": params[:n_w].reshape(filters).copy(),
        "bias": params[n_w:].copy() if n_b else None,
        "stride": stride,
        "padding": padding,
    }


def _read_affine(r: DlibReader) -> dict[str, Any]:
    r.expect_string("affine_")
    params = r.tensor().reshape(-1)
    gamma, beta = r.alias_tensor(), r.alias_tensor()
    mode = r.int()
    n = int(np.prod(gamma))
    if params.size != 2 * n or int(np.prod(beta)) != n:
        raise r._fail(f"affine_ holds {params.size} values for gamma {gamma} / beta {beta}")
    return {"gamma": params[:n].copy(), "beta": params[n:].copy(), "mode": mode}


def _read_pool(r: DlibReader, name: str) -> dict[str, Any]:
    r.expect_string(f"{name}_2")
    size = (r.int(), r.int())
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    return {"size": size, "stride": stride, "padding": padding}


def _read_fc(r: DlibReader) -> dict[str, Any]:
    r.expect_string("fc_2")
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor().reshape(-1)
    weights, _biases = r.alias_tensor(), r.alias_tensor()
    has_bias = r.int()
    for _ in range(4):
        r.float()
    n_w = int(np.prod(weights))
    if n_w != num_inputs * num_outputs:
        raise r._fail(f"fc_ weights {weights} do not match {num_inputs} x {num_outputs}")
    # dlib stores W as num_inputs x num_outputs (y = x W); torch's Linear wants out x in.
    out = {"weight": params[:n_w].reshape(num_inputs, num_outputs).T.copy(), "bias": None}
    if has_bias:
        out["bias"] = params[n_w : n_w + num_outputs].copy()
    return out


def _read_simple(r: DlibReader, *names: str) -> dict[str, Any]:
    r.expect_string(*names)
    return {}


def _read_details(r: DlibReader, details: str) -> dict[str, Any]:
    if details == "con":
        return _read_con(r)
    if details == "affine":
        return _read_affine(r)
    if details in ("max_pool", "avg_pool"):
        return _read_pool(r, details)
    if details == "fc":
        return _read_fc(r)
    if details == "relu":
        return _read_simple(r, "relu_")
    if details == "add_prev":
        return _read_simple(r, "add_prev_")
    raise r._fail(f"the reader does not know dlib layer {details!r}")


def _read_input_layer(r: DlibReader) -> dict[str, Any]:
    r.expect_string("input_rgb_image_sized")
    means = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    return {"mean": means, "size": size}


def _read_layer_state(r: DlibReader, bottom: bool) -> None:
    """add_layer's bookkeeping after the details (setup flags, cached tensors): read and dropped."""
    r.bool()
    r.bool()
    r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    r.tensor()  # params_grad (grad_final for the layer just above the input)
    if bottom:
        r.int()  # sample_expansion_factor


def read_dnn(path: str | Path, stack: Sequence[LayerSpec], loss: str = "loss_metric_2") -> dict[str, Any]:
    """Parse a dlib network file whose nesting is `stack` (output side first, an "input" spec last).

    Fills each spec's `params` in place and returns the loss layer's settings. The walk mirrors dlib's
    recursive serialisation: each wrapper writes its version, then its whole sub-network, then its own layer.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot read dlib model file ({exc.strerror or exc})") from None
    r = DlibReader(data, str(path))
    if not stack or stack[-1].kind != "input":
        raise OccluFaceError("read_dnn: the layer stack must end with an 'input' spec")
    r.expect_int("add_loss_layer version", 1)
    r.expect_string(loss)
    loss_params = {"margin": r.float(), "distance_threshold": r.float()}

    def walk(i: int) -> None:
        spec = stack[i]
        if spec.kind in ("tag", "skip"):
            r.expect_int(f"add_{spec.kind}_layer version", 1)
            walk(i + 1)
            return
        if spec.kind != "layer":
            raise OccluFaceError(f"read_dnn: unexpected spec kind {spec.kind!r} at level {i}")
        bottom = stack[i + 1].kind == "input"
        if bottom:
            r.expect_int("add_layer (input) version", 3)
            stack[i + 1].params = _read_input_layer(r)
        else:
            r.expect_int("add_layer version", 2)
            walk(i + 1)
        spec.params = _read_details(r, spec.details)
        _read_layer_state(r, bottom)

    walk(0)
    if not r.at_end:  # the loss layer may be followed by nothing else
        raise r._fail(f"{len(r.data) - r.pos} unexpected trailing bytes after the network")
    return loss_params
