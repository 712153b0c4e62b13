"""Backbones: registry behaviour, published complexity figures, shapes, CBAM/v1 structure, `occluface models`.

Big networks are only built on the `meta` device (shapes and counts, no compute); real forward/backward passes
use small models at 32-40 px so the file stays cheap on 2 shared cores.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from occluface.errors import OccluFaceError
from occluface.models import create, list_models, model_info, register
from occluface.models import registry
from occluface.models.attention import CBAM, ChannelAttention, SpatialAttention
from occluface.models.complexity import (
    PUBLISHED,
    build_on_meta,
    complexity_table,
    count_macs,
    count_parameters,
    within_tolerance,
)
from occluface.models.ressanet import ResSaNet

BUILTINS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "cbam_resnet18", "cbam_resnet50",
    "iresnet18", "iresnet34", "iresnet50", "iresnet100",
    "ressanet50", "ressanet100",
]


def _stages(m):
    return (m.layer1, m.layer2, m.layer3, m.layer4)


@pytest.fixture(scope="module")
def table() -> dict[str, dict]:
    names = ["resnet18", "resnet34", "resnet50", "iresnet50", "iresnet100", "ressanet50", "ressanet100"]
    return {row["name"]: row for row in complexity_table(names)}


# ----------------------------------------------------------------------------- registry


def test_every_builtin_is_registered_and_described():
    names = list_models()
    assert set(BUILTINS) <= set(names)
    assert names.index("resnet18") < names.index("resnet101")  # natural order
    assert model_info("iresnet50")["default_input_size"] == (112, 112)
    assert model_info("resnet50")["default_input_size"] == (224, 224)
    assert model_info("CBAM_ResNet18")["name"] == "cbam_resnet18"  # names are case-insensitive
    assert all(model_info(n)["description"] for n in BUILTINS)


def test_unknown_model_error_lists_known_names():
    with pytest.raises(OccluFaceError) as exc:
        create("resnet9000")
    msg = str(exc.value)
    assert "resnet9000" in msg and "iresnet50" in msg and "ressanet100" in msg
    with pytest.raises(OccluFaceError, match="known models"):
        model_info("nope")


def test_bad_options_are_clear_errors():
    with pytest.raises(OccluFaceError, match="does not take option.*colour.*accepts: dropout"):
        create("iresnet18", colour="red")
    with pytest.raises(OccluFaceError, match="variant"):
        create("resnet50", variant="v2")
    with pytest.raises(OccluFaceError, match="embedding_size"):
        create("resnet18", embedding_size=0)
    with pytest.raises(OccluFaceError, match="input_size"):
        create("resnet18", input_size="big")
    with pytest.raises(OccluFaceError, match="dropout"):
        create("cbam_resnet18", dropout=1.5)


def test_register_plugin_and_create_sets_attributes():
    @register("toy_linear_test", default_input_size=(8, 6), description="tiny test model")
    def _toy(embedding_size, input_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * input_size[0] * input_size[1], embedding_size))

    try:
        assert "toy_linear_test" in list_models()
        assert model_info("toy_linear_test") == {
            "name": "toy_linear_test", "description": "tiny test model", "default_input_size": (8, 6)}
        m = create("toy_linear_test", embedding_size=5)
        assert m.embedding_size == 5 and m.input_size == (8, 6)
        assert m(torch.zeros(2, 3, 8, 6)).shape == (2, 5)
        assert create("toy_linear_test", input_size=4).input_size == (4, 4)
    finally:
        registry._REGISTRY.pop("toy_linear_test")


def test_package_import_is_light_and_registry_importable_alone():
    code = (
        "import sys; import occluface.models; from occluface.models.registry import register;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- published figures


@pytest.mark.parametrize("name", ["iresnet50", "iresnet100", "ressanet50", "ressanet100"])
def test_face_backbones_match_published_params_and_macs(table, name):
    row, pub = table[name], PUBLISHED[name]
    assert row["input"] == "112x112" and row["embedding_size"] == 512
    assert abs(row["params_M"] - pub["params_M"]) / pub["params_M"] <= pub["tolerance"]
    assert abs(row["GMACs"] - pub["GMACs"]) / pub["GMACs"] <= pub["tolerance"]
    assert within_tolerance(row)


@pytest.mark.parametrize("name,gmacs", [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8)])
def test_resnet_macs_match_table1(table, name, gmacs):
    row = table[name]
    assert row["input"] == "224x224" and row["embedding_size"] == 1000
    assert abs(row["GMACs"] - gmacs) / gmacs <= 0.03


def test_resnet50_with_1000_classes_is_the_classic_network():
    m = build_on_meta("resnet50", embedding_size=1000)
    assert count_parameters(m) == 25_557_032  # torchvision / paper ResNet-50
    assert m.fc.in_features == 2048 and m.fc.out_features == 1000


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_shape_on_meta_at_default_input(name):
    m = build_on_meta(name, embedding_size=256).eval()
    h, w = model_info(name)["default_input_size"]
    assert m.input_size == (h, w) and m.embedding_size == 256
    with torch.no_grad():
        assert m(torch.zeros(2, 3, h, w, device="meta")).shape == (2, 256)


def test_small_models_and_plugins_give_finite_embeddings_on_cpu():
    """Real forward passes: one small model per family at 32x32, plus any plug-in at its own fixed size."""
    torch.manual_seed(0)
    models = [create(n, embedding_size=64, input_size=32) for n in ("resnet18", "cbam_resnet18", "iresnet18")]
    models.append(ResSaNet([1, 1, 1, 2], embedding_size=64, input_size=(32, 32)))  # every ResSaNet block type
    models += [create(n) for n in list_models() if n not in BUILTINS]  # e.g. dlib's pretrained embedder
    for m in models:
        m.eval()
        with torch.no_grad():
            y = m(torch.rand(2, 3, *m.input_size))
        assert y.shape == (2, m.embedding_size), m
        assert torch.isfinite(y).all(), m


def test_face_models_follow_input_size_and_reject_others():
    m = create("iresnet18", input_size=(40, 36), embedding_size=32).eval()
    assert m.fc.in_features == 512 * 3 * 3  # 40x36 -> 20x18 -> 10x9 -> 5x5 -> 3x3
    assert m(torch.rand(1, 3, 40, 36)).shape == (1, 32)
    with pytest.raises(OccluFaceError, match="built for 40x36"):
        m(torch.rand(1, 3, 112, 112))
    with pytest.raises(OccluFaceError, match="B x 3 x H x W"):
        m(torch.rand(3, 40, 36))
    s = build_on_meta("ressanet50", input_size=(40, 36), embedding_size=16).eval()
    assert s.layer4[0].ibsa.mhsa.hw == (3, 3)  # attention tables sized for the odd 3x3 map
    assert s(torch.zeros(1, 3, 40, 36, device="meta")).shape == (1, 16)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = create("iresnet18", input_size=32).state_dict()
    torch.manual_seed(3)
    b = create("iresnet18", input_size=32).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ressanet_layout_and_gradients_reach_attention():
    kinds = [type(b).__name__ for layer in _stages(build_on_meta("ressanet50")) for b in layer]
    assert kinds == ["IBasicBlock"] * 3 + ["SEIBasicF"] * 18 + ["IBTBlock"] * 3
    torch.manual_seed(0)
    m = ResSaNet([1, 1, 1, 2], embedding_size=8, input_size=(32, 32))  # same blocks, cheap
    m(torch.rand(2, 3, 32, 32)).pow(2).sum().backward()
    block = m.layer4[1]
    assert block.ibsa.mhsa.rel_h.grad.abs().sum() > 0 and block.ibsa.mhsa.rel_w.grad.abs().sum() > 0
    assert block.mbconv.expand[0].weight.grad.abs().sum() > 0
    assert m.layer2[0].se.fc1.weight.grad.abs().sum() > 0 and m.layer2[0].frelu.conv.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- CBAM and variants


def test_cbam_in_every_block_and_dropout_configurable():
    m = create("cbam_resnet18", input_size=48)
    blocks = [b for layer in _stages(m) for b in layer]
    assert len(blocks) == 8  # [2, 2, 2, 2] bottlenecks
    assert all(hasattr(b, "conv3") and isinstance(b.cbam, CBAM) for b in blocks)
    assert blocks[0].cbam.channel.mlp[0].out_channels == 256 // 16
    for b in blocks:  # BN after every conv of every block
        for conv, bn in ((b.conv1, b.bn1), (b.conv2, b.bn2), (b.conv3, b.bn3)):
            assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
    assert m.dropout.p == 0.5
    assert build_on_meta("cbam_resnet50", dropout=0.2).dropout.p == 0.2
    assert build_on_meta("cbam_resnet18", reduction=8).layer1[0].cbam.channel.mlp[0].out_channels == 256 // 8
    # Dropout sits before the FC: active in training, off in eval.
    x = torch.rand(2, 3, 48, 48)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    b = m(x)
    assert not torch.allclose(a, b)
    m.eval()
    assert torch.equal(m(x), m(x))


def test_cbam_gates_follow_the_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 5)
    ca = ChannelAttention(32, reduction=16)
    mlp = ca.mlp
    expected = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    assert torch.allclose(ca(x), expected, atol=1e-6)
    sa = SpatialAttention(7)
    desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    assert torch.allclose(sa(x), x * torch.sigmoid(sa.conv(desc)), atol=1e-6)
    assert sa.conv.kernel_size == (7, 7)


def test_v1_and_v15_differ_only_in_stride_placement():
    v1 = build_on_meta("resnet50", embedding_size=1000)
    v15 = build_on_meta("resnet50", embedding_size=1000, variant="v1.5")
    for layer in ("layer2", "layer3", "layer4"):
        assert getattr(v1, layer)[0].conv1.stride == (2, 2) and getattr(v1, layer)[0].conv2.stride == (1, 1)
        assert getattr(v15, layer)[0].conv1.stride == (1, 1) and getattr(v15, layer)[0].conv2.stride == (2, 2)
    assert count_parameters(v1) == count_parameters(v15)
    macs_v1, macs_v15 = count_macs(v1, 224) / 1e9, count_macs(v15, 224) / 1e9
    assert abs(macs_v1 - 3.8) / 3.8 <= 0.03 and abs(macs_v15 - 4.1) / 4.1 <= 0.03
    # Basic-block depths have no 1x1 conv to move the stride to: both variants are the same network.
    assert count_macs(build_on_meta("resnet18", variant="v1"), 224) == count_macs(
        build_on_meta("resnet18", variant="v1.5"), 224)


def test_count_macs_on_cpu_restores_training_mode():
    m = create("iresnet18", embedding_size=10, input_size=32)
    m.train()
    macs = count_macs(m)
    assert m.training and macs > 0
    assert macs == count_macs(build_on_meta("iresnet18", embedding_size=10, input_size=32))


# ----------------------------------------------------------------------------- CLI


def test_models_cli_json_and_table_with_an_uncountable_model():
    from occluface.cli import app

    class NotTorch:
        embedding_size, input_size = 4, (10, 10)

    register("not_torch_test", default_input_size=10)(lambda embedding_size, input_size: NotTorch())
    runner = CliRunner()
    try:
        res = runner.invoke(app, ["models", "--json", "-n", "iresnet50", "-n", "not_torch_test"])
        assert res.exit_code == 0, res.output
        rows = {r["name"]: r for r in json.loads(res.output)}
        assert set(rows) == {"iresnet50", "not_torch_test"}
        assert rows["iresnet50"]["published_params_M"] == 43.57 and abs(rows["iresnet50"]["params_dev_pct"]) < 3
        assert rows["not_torch_test"]["params_M"] is None and rows["not_torch_test"]["error"]
        res = runner.invoke(app, ["models", "-n", "not_torch_test", "-n", "resnet18"])
        assert res.exit_code == 0, res.output
        assert "n/a" in res.output and "resnet18" in res.output and "11.69" in res.output
    finally:
        registry._REGISTRY.pop("not_torch_test")
    res = runner.invoke(app, ["models", "-n", "bogus"])
    assert res.exit_code == 2 and "known models" in res.output
