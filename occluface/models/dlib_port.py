"""dlib's face-recognition ResNet rebuilt in PyTorch, with the weights read from dlib's own model file.

Why: dlib runs the network one face at a time on the CPU (~77 ms/face here) and cannot batch on a GPU, be
exported, or be fine-tuned. The port computes the same 128-d descriptor (cosine > 0.999 against
`dlib.face_recognition_model_v1.compute_face_descriptor` on the same chip) as an ordinary `nn.Module`: batched
CPU/CUDA inference, channels-last, `torch.compile`, ONNX export, and a starting point for fine-tuning.

The network is the one of dlib's `dnn_face_recognition_ex.cpp` (ResNet-29-ish, 150x150 RGB input):

    input_rgb_image_sized<150>: (pixel - channel mean) / 256
    con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2
    3 x ares<32>, ares_down<64> + 3 x ares<64>, ares_down<128> + 2 x ares<128>,
    ares_down<256> + 2 x ares<256>, ares_down<256>
    avg_pool_everything -> fc_no_bias 128

`ares` = relu(x + affine(con3x3(relu(affine(con3x3(x)))))); `ares_down` uses stride 2 in the first conv and
a 2x2/2 average-pooled copy of x as the shortcut. dlib's strided convs and pools use no padding (stride-1
convs pad 1), so shortcut and branch can differ in size (8x8 -> 3x3 vs 4x4) and in channels (32 -> 64);
dlib's `add_prev` then adds them top-left aligned into a tensor of the larger size, missing values being 0.
The port reproduces that exactly (`_dlib_add`). Batch-norm was folded into `affine` (per-channel gamma,
beta) by dlib when the model was saved; the port further folds each affine into its conv for speed.

Input convention: the same as `occluface.models.dlib_resnet` -- B x 3 x 150 x 150 RGB in [0, 1], chips made
by `occluface.faces.chips.dlib_chip` -- so the two are interchangeable (`chip = "dlib"` tells
`FaceEmbedder` to use dlib's chip and [0, 1] pixels).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occluface.errors import CheckpointError, OccluFaceError
from occluface.models.dlib_serialize import LayerSpec, read_dnn
from occluface.models.registry import check_batch, register

__all__ = [
    "DlibResNetTorch",
    "dlib_layer_stack",
    "load_dlib_state",
    "EMBEDDING_SIZE",
    "INPUT_SIZE",
]

EMBEDDING_SIZE = 128
_CONV_MODE = 0  # dlib's layer_mode: CONV_MODE = 0 (per channel), FC_MODE = 1 (per element)
INPUT_SIZE = (150, 150)
# (channels, first block downsamples?) for each residual block, input side first, as in the example's
# alevel4 .. alevel0 (ares_down comes first inside each level because dlib nests from the output side).
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)  # fmt: skip


# ----------------------------------------------------------------------------------------- dlib structure
def _L(details: str) -> LayerSpec:
    return LayerSpec("layer", details)


def dlib_layer_stack() -> list[LayerSpec]:
    """The template nesting of dlib's `anet_type`, output side first (the order dlib serialises in)."""

    def block(sub: list[LayerSpec]) -> list[LayerSpec]:
        # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>> (strides live in the file)
        return [_L("affine"), _L("con"), _L("relu"), _L("affine"), _L("con")] + sub

    def ares(sub: list[LayerSpec]) -> list[LayerSpec]:
        # relu<add_prev1<block<N,BN,1,tag1<SUBNET>>>>
        return [_L("relu"), _L("add_prev")] + block([LayerSpec("tag")] + sub)

    def ares_down(sub: list[LayerSpec]) -> list[LayerSpec]:
        # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>>
        return [_L("relu"), _L("add_prev"), _L("avg_pool"), LayerSpec("skip"), LayerSpec("tag")] + block(
            [LayerSpec("tag")] + sub
        )

    stack = [_L("max_pool"), _L("relu"), _L("affine"), _L("con"), LayerSpec("input")]
    for _, down in BLOCKS:
        stack = ares_down(stack) if down else ares(stack)
    return [_L("fc"), _L("avg_pool")] + stack


def _parse_dat(path: Path) -> dict[str, Any]:
    """Weights and settings from the .dat, in the port's own naming (numpy arrays)."""
    stack = dlib_layer_stack()
    loss = read_dnn(path, stack)
    layers = [s for s in reversed(stack) if s.kind in ("layer", "input")]  # input side first
    convs = [s.params for s in layers if s.details == "con"]
    affines = [s.params for s in layers if s.details == "affine"]
    pools = [s.params for s in layers if s.details in ("max_pool", "avg_pool")]
    fc = [s.params for s in layers if s.details == "fc"]
    n_conv = 1 + 2 * len(BLOCKS)
    if len(convs) != n_conv or len(affines) != n_conv or len(fc) != 1:
        raise CheckpointError(f"{path}: found {len(convs)} conv / {len(affines)} affine layers, expected {n_conv}")
    state: dict[str, Any] = {
        "mean": np.asarray(layers[0].params["mean"], dtype=np.float64),
        "fc.weight": fc[0]["weight"],
        "margin": loss["margin"],
        "distance_threshold": loss["distance_threshold"],
    }
    # Layout checks: the port hard-codes dlib's conventions, so refuse a file that disagrees.
    expected_pools = [((3, 3), (2, 2), (0, 0))] + [((2, 2), (2, 2), (0, 0))] * 4 + [((0, 0), (1, 1), (0, 0))]
    found_pools = [(p["size"], p["stride"], p["padding"]) for p in pools]
    if found_pools != expected_pools:
        raise CheckpointError(f"{path}: pooling layers {found_pools} differ from dlib's face ResNet {expected_pools}")
    for i, (conv, aff) in enumerate(zip(convs, affines)):
        w, b = conv["weight"], conv["bias"]
        k = w.shape[2]
        want_pad = (0, 0) if conv["stride"] != (1, 1) else (k // 2, k // 2)
        if conv["padding"] != want_pad or aff["mode"] != _CONV_MODE or aff["gamma"].size != w.shape[0]:
            raise CheckpointError(
                f"{path}: conv {i} (weight {w.shape}, stride {conv['stride']}, padding {conv['padding']}, "
                f"affine mode {aff['mode']} with {aff['gamma'].size} channels) does not match dlib's face ResNet"
            )
        state[f"conv{i}.weight"], state[f"conv{i}.bias"] = w, (b if b is not None else np.zeros(w.shape[0], "f4"))
        state[f"conv{i}.stride"] = conv["stride"][0]
        state[f"affine{i}.gamma"], state[f"affine{i}.beta"] = aff["gamma"], aff["beta"]
    return state


@lru_cache(maxsize=4)
def load_dlib_state(path: str | None = None) -> dict[str, Any]:
    """Parsed weights of dlib's face ResNet (from face-recognition-models unless `path` is given).

    The parse takes a fraction of a second, so the result is memoised per process only; nothing is written.
    """
    if path is None:
        from occluface.models.files import dlib_model

        path = str(dlib_model("resnet"))
    return _parse_dat(Path(path))


# ----------------------------------------------------------------------------------------- the network
class _Block(nn.Module):
    """dlib's `ares` / `ares_down`: relu(branch(x) + shortcut(x)), affines folded into the convs.

    dlib's `add_prev` adds tensors of different shapes top-left aligned into one of the larger shape (zeros
    where one is missing). The input is always 150x150, so the zero padding each side needs is fixed at
    build time (plain ints: nothing shape-dependent for the ONNX tracer or torch.compile to trip on).
    """

    def __init__(self, cin: int, cout: int, down: bool, size: int):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1)
        branch = (size - 3) // 2 + 1 if down else size
        short = (size - 2) // 2 + 1 if down else size
        self.out_size = max(branch, short)
        self.branch_pad = self.out_size - branch
        self.short_pad = (0, self.out_size - short, 0, self.out_size - short, 0, cout - cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        if self.branch_pad:
            y = F.pad(y, (0, self.branch_pad, 0, self.branch_pad))
        if any(self.short_pad):
            shortcut = F.pad(shortcut, self.short_pad)
        return F.relu(y + shortcut, inplace=True)  # in place: saves an allocation, autograd-safe here


class DlibResNetTorch(nn.Module):
    """dlib's face ResNet in PyTorch: B x 3 x 150 x 150 RGB in [0, 1] -> B x 128 descriptors (not normalised).

    `pretrained=True` loads dlib's weights (from `weights`, default: the .dat of face-recognition-models);
    `pretrained=False` leaves PyTorch's random init (for tests and training from scratch).
    """

    embedding_size = EMBEDDING_SIZE
    input_size = INPUT_SIZE
    trainable = True
    chip = "dlib"  # FaceEmbedder: use dlib's 150x150 chip and [0, 1] pixels, as dlib's own wrapper does

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None):
        super().__init__()
        self.name = "dlib_resnet_torch"
        # dlib's input layer: (pixel - mean) / 256, pixel in 0..255. Kept as a buffer so exports carry it.
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        blocks, cin = [], 32
        size = ((INPUT_SIZE[0] - 7) // 2 + 1 - 3) // 2 + 1  # after the 7x7/2 conv and the 3x3/2 max pool
        for cout, down in BLOCKS:
            blocks.append(_Block(cin, cout, down, size))
            cin, size = cout, blocks[-1].out_size
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, EMBEDDING_SIZE, bias=False)
        self.distance_threshold = 0.6
        if pretrained:
            self.load_dlib_weights(weights)

    @torch.no_grad()
    def load_dlib_weights(self, weights: str | Path | None = None) -> None:
        """Copy dlib's parameters in, folding each per-channel affine (gamma, beta) into the conv before it."""
        state = load_dlib_state(None if weights is None else str(weights))
        convs = [self.stem] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
        for i, conv in enumerate(convs):
            w = torch.from_numpy(state[f"conv{i}.weight"])
            b = torch.from_numpy(state[f"conv{i}.bias"])
            g = torch.from_numpy(state[f"affine{i}.gamma"])
            beta = torch.from_numpy(state[f"affine{i}.beta"])
            if tuple(w.shape) != tuple(conv.weight.shape) or state[f"conv{i}.stride"] != conv.stride[0]:
                raise CheckpointError(f"dlib conv {i}: weight {tuple(w.shape)} does not fit {conv}")
            conv.weight.copy_(w * g.view(-1, 1, 1, 1))
            conv.bias.copy_(b * g + beta)
        self.fc.weight.copy_(torch.from_numpy(state["fc.weight"]))
        self.mean.copy_(torch.from_numpy(state["mean"]).float().view(1, 3, 1, 1))
        self.distance_threshold = float(state["distance_threshold"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x, self.name, INPUT_SIZE)
        x = (x * 255.0 - self.mean) * (1.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem(x), inplace=True), 3, 2)
        x = self.blocks(x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)

    def extra_repr(self) -> str:
        return f"embedding_size={EMBEDDING_SIZE}, input_size={INPUT_SIZE}"


@register(
    "dlib_resnet_torch",
    default_input_size=INPUT_SIZE,
    description="PyTorch port of dlib's ResNet (weights read from dlib's .dat; 128-d, 150x150 dlib chips, [0,1])",
)
def _build(
    embedding_size: int = EMBEDDING_SIZE,
    input_size: tuple[int, int] = INPUT_SIZE,
    pretrained: bool = True,
    weights: str | None = None,
):
    """dlib's face ResNet as a torch module; fixed at 128-d outputs and 150x150 inputs like the original."""
    if embedding_size not in (EMBEDDING_SIZE, 512):  # 512 = the registry's untouched default
        raise OccluFaceError(f"dlib_resnet_torch is dlib's 128-d network; cannot give {embedding_size}-d")
    if tuple(input_size) != INPUT_SIZE:
        raise OccluFaceError(f"dlib_resnet_torch takes 150x150 dlib chips only; got input_size={tuple(input_size)}")
    return DlibResNetTorch(pretrained=pretrained, weights=weights)
