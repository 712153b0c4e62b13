"""Parameter and multiply-accumulate counts for every backbone, next to the figures the papers publish.

MACs come from `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls, attention; FLOPs / 2),
counted on the `meta` device so even ResSaNet-100 costs no real compute. Like the papers (and insightface's
tables) we report multiply-adds of the weighted layers; BN, activations and pooling are not counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from occluface.errors import OccluFaceError
from occluface.models.registry import create, list_models, model_info, normalize_input_size

__all__ = ["count_parameters", "count_macs", "PUBLISHED", "complexity_table", "build_on_meta"]

# Published complexity: params in millions (None = not published), GMACs, the input and embedding/class count
# they refer to, the tolerance we hold our implementation to, and where the figure comes from.
PUBLISHED: dict[str, dict[str, Any]] = {
    "resnet18": {"params_M": None, "GMACs": 1.8, "input": 224, "embedding_size": 1000, "tolerance": 0.03,
                 "source": "He et al. 2016, Table 1 (1000-class head)"},
    "resnet34": {"params_M": None, "GMACs": 3.6, "input": 224, "embedding_size": 1000, "tolerance": 0.03,
                 "source": "He et al. 2016, Table 1 (1000-class head)"},
    "resnet50": {"params_M": None, "GMACs": 3.8, "input": 224, "embedding_size": 1000, "tolerance": 0.03,
                 "source": "He et al. 2016, Table 1 (1000-class head)"},
    "resnet101": {"params_M": None, "GMACs": 7.6, "input": 224, "embedding_size": 1000, "tolerance": 0.03,
                  "source": "He et al. 2016, Table 1 (1000-class head)"},
    "resnet152": {"params_M": None, "GMACs": 11.3, "input": 224, "embedding_size": 1000, "tolerance": 0.03,
                  "source": "He et al. 2016, Table 1 (1000-class head)"},
    "iresnet50": {"params_M": 43.57, "GMACs": 6.31, "input": 112, "embedding_size": 512, "tolerance": 0.03,
                  "source": "Gao et al., Masked FR based on Residual Networks, Fig. 4"},
    "iresnet100": {"params_M": 65.16, "GMACs": 12.12, "input": 112, "embedding_size": 512, "tolerance": 0.03,
                   "source": "Gao et al., Masked FR based on Residual Networks, Fig. 4"},
    "ressanet50": {"params_M": 44.13, "GMACs": 6.29, "input": 112, "embedding_size": 512, "tolerance": 0.05,
                   "source": "Gao et al., Fig. 4 / Chang et al. ICCVW 2021"},
    "ressanet100": {"params_M": 66.35, "GMACs": 12.11, "input": 112, "embedding_size": 512, "tolerance": 0.05,
                    "source": "Gao et al., Fig. 4 / Chang et al. ICCVW 2021"},
    # An ONNX file, not a torch module: nothing to count on the meta device; its output size is fixed.
    "sface": {"params_M": None, "GMACs": None, "input": 112, "embedding_size": 128, "tolerance": 0.0,
              "source": "OpenCV Zoo face_recognition_sface (int8)"},
}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all by default, as the papers count them, incl. frozen BN affine)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def count_macs(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one forward pass on a single 3 x H x W image (FLOPs / 2).

    Runs on the model's own device (use `build_on_meta` for a free count) in eval mode without gradients;
    the model's training flag is restored afterwards.
    """
    size = normalize_input_size(input_size, getattr(model, "input_size", 112))
    x = torch.zeros(1, 3, *size, device=_device_of(model))
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def build_on_meta(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with meta tensors: shapes only, no memory, no init cost."""
    with torch.device("meta"):
        return create(name, **kwargs)


def _deviation(ours: float | None, published: float | None) -> float | None:
    if ours is None or published is None:
        return None
    return round(100.0 * (ours - published) / published, 2)


def complexity_row(name: str) -> dict[str, Any]:
    """One table row; models that cannot be built or counted (e.g. non-torch embedders) get None figures."""
    info = model_info(name)
    pub = PUBLISHED.get(name, {})
    size = normalize_input_size(pub.get("input"), info["default_input_size"])
    emb = pub.get("embedding_size", 512)
    row: dict[str, Any] = {
        "name": name,
        "description": info["description"],
        "input": f"{size[0]}x{size[1]}",
        "embedding_size": emb,
        "params_M": None,
        "GMACs": None,
        "published_params_M": pub.get("params_M"),
        "published_GMACs": pub.get("GMACs"),
        "params_dev_pct": None,
        "GMACs_dev_pct": None,
        "tolerance_pct": round(100 * pub["tolerance"], 1) if pub else None,
        "error": None,
    }
    try:
        model = build_on_meta(name, embedding_size=emb, input_size=size)
        if not isinstance(model, nn.Module):
            raise OccluFaceError(f"{name} is not a torch module")
        row["embedding_size"] = int(getattr(model, "embedding_size", emb))
        params = count_parameters(model)
        macs = count_macs(model, size) if params else 0
    except Exception as exc:  # noqa: BLE001 - a table row must never take the whole command down
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    if params == 0:
        row["error"] = "no torch parameters (not countable)"
        return row
    row["params_M"] = round(params / 1e6, 2)
    row["GMACs"] = round(macs / 1e9, 3)
    row["params_dev_pct"] = _deviation(params / 1e6, row["published_params_M"])
    row["GMACs_dev_pct"] = _deviation(macs / 1e9, row["published_GMACs"])
    return row


def complexity_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows (name, input, params_M, GMACs, published figures, deviation %) for `names` or every model.

    Published ResNet figures refer to a 1000-class head at 224x224, face models to a 512-d embedding at
    112x112, so each row is counted at the configuration its published figure describes.
    """
    return [complexity_row(n) for n in (names if names is not None else list_models())]


def within_tolerance(row: dict[str, Any]) -> bool:
    """True when every published figure of the row is matched within its tolerance."""
    tol = row.get("tolerance_pct")
    if tol is None:
        return True
    devs = [d for d in (row["params_dev_pct"], row["GMACs_dev_pct"]) if d is not None]
    return bool(devs) and all(math.isfinite(d) and abs(d) <= tol for d in devs)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def rich_table(rows: list[dict[str, Any]]):
    """A rich Table of `complexity_table` rows; uncountable models show "n/a", misses are shown in red."""
    from rich import box
    from rich.table import Table

    table = Table(title="occluface backbones", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="params in millions, GMACs = 1e9 multiply-accumulates per image; "
                  "paper = published figures; dev % = ours vs paper (params / GMACs)")
    table.add_column("model", no_wrap=True)
    table.add_column("input", no_wrap=True)
    for col in ("emb", "params", "GMACs", "paper", "paper G", "dev %"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        pair = (r["params_dev_pct"], r["GMACs_dev_pct"])
        devs = " / ".join("-" if d is None else f"{d:+.1f}" for d in pair) if pair != (None, None) else ""
        if devs:
            devs = f"[{'green' if within_tolerance(r) else 'red'}]{devs}[/]"
        table.add_row(
            r["name"], r["input"].split("x")[0] if len(set(r["input"].split("x"))) == 1 else r["input"],
            str(r["embedding_size"]), _fmt(r["params_M"], 2), _fmt(r["GMACs"], 2),
            _fmt(r["published_params_M"], 2), _fmt(r["published_GMACs"], 2), devs,
        )
    return table
