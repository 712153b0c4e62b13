"""The PyTorch port of dlib's face ResNet: dlib-format reader, exactness against dlib, export, speed bench."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from occluface.errors import OccluFaceError
from occluface.models import create
from occluface.models.dlib_serialize import DlibFormatError, DlibReader, read_dnn

DATA = Path(__file__).parents[1] / "data"


# ------------------------------------------------------------------ a tiny writer for dlib's encodings
def enc_int(v: int) -> bytes:
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little") if mag else b""
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def enc_float(mantissa: int, exponent: int) -> bytes:
    return enc_int(mantissa) + enc_int(exponent)


def enc_str(s: str) -> bytes:
    return enc_int(len(s)) + s.encode()


def test_reader_decodes_dlib_primitives():
    data = (
        enc_int(0) + enc_int(150) + enc_int(-28) + enc_int(4736) + enc_int(2**40 + 7)
        + enc_float(10737418, -28) + enc_float(0, 32000) + enc_str("con_4") + b"1" + b"0"
        + enc_int(2) + enc_int(1) + enc_int(2) + enc_int(1) + enc_int(2) + struct.pack("<4f", 1.5, -2, 3, 0.25)
    )  # fmt: skip
    r = DlibReader(data)
    assert [r.int() for _ in range(5)] == [0, 150, -28, 4736, 2**40 + 7]
    assert r.float() == pytest.approx(0.04, abs=1e-8)
    assert r.float() == math.inf
    assert r.string() == "con_4"
    assert (r.bool(), r.bool()) == (True, False)
    t = r.tensor()
    assert t.shape == (1, 2, 1, 2) and t.dtype == np.float32
    assert t.ravel().tolist() == [1.5, -2.0, 3.0, 0.25]
    assert r.at_end


def test_reader_rejects_truncated_and_foreign_data(tmp_path):
    with pytest.raises(DlibFormatError, match="truncated"):
        DlibReader(enc_int(2) + enc_int(1) + enc_int(1) + enc_int(1) + enc_int(4) + b"\0" * 8).tensor()
    with pytest.raises(DlibFormatError, match="expected 'relu_'"):
        DlibReader(enc_str("bn_con2")).expect_string("relu_")
    bad = tmp_path / "not_dlib.dat"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    from occluface.models.dlib_port import dlib_layer_stack

    with pytest.raises(DlibFormatError, match="not_dlib.dat"):
        read_dnn(bad, dlib_layer_stack())


def test_parsed_model_file_has_dlibs_settings():
    from occluface.models.dlib_port import BLOCKS, load_dlib_state

    state = load_dlib_state()
    np.testing.assert_allclose(state["mean"], [122.782, 117.001, 104.298], atol=1e-4)
    assert state["distance_threshold"] == pytest.approx(0.6)
    assert state["fc.weight"].shape == (128, 256)
    n_conv = 1 + 2 * len(BLOCKS)
    assert sum(k.endswith(".weight") and k.startswith("conv") for k in state) == n_conv == 29
    assert state["conv0.weight"].shape == (32, 3, 7, 7) and state["conv0.stride"] == 2


# ------------------------------------------------------------------ exactness against dlib itself
@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """A dozen real faces: 4 each from the bundled samples (group photos too), LFW and Yale B (grey, harsh light)."""
    from occluface.bench.speed import bundled_chips

    return bundled_chips(DATA, limit=12, per_source=4)


@pytest.fixture(scope="module")
def port():
    return create("dlib_resnet_torch").eval()


def _as_input(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0


def test_port_matches_dlib_descriptor_on_every_bundled_face(chips, port):
    from occluface.models.dlib_resnet import load_dlib_resnet

    assert len(chips) == 12
    ref = np.array([np.asarray(v) for v in load_dlib_resnet().compute_face_descriptor(list(chips))])
    with torch.inference_mode():
        got = port(_as_input(chips)).numpy()
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.999, cos
    np.testing.assert_allclose(got, ref, atol=1e-4)  # not just the direction: the same vector


def test_batched_equals_one_by_one_and_channels_last(chips, port):
    x = _as_input(chips[:4])
    with torch.inference_mode():
        batched = port(x)
        single = torch.cat([port(x[i : i + 1]) for i in range(4)])
        cl = port.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    port.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, cl, atol=1e-5, rtol=1e-5)


def test_face_embedder_uses_dlib_chip_for_the_port(port):
    from occluface.data.images import load_rgb
    from occluface.faces.embed import FaceEmbedder

    image = load_rgb(next(p for p in sorted((DATA / "lfw").rglob("*.jpg"))))
    box = (70, 70, 180, 180)  # LFW faces sit in the middle of the 250x250 frame
    ported = FaceEmbedder(model=port)
    original = FaceEmbedder("dlib_resnet")
    assert ported.uses_dlib_chip and ported.chip(image, box).shape == (150, 150, 3)
    a, b = ported.embed_image(image, box), original.embed_image(image, box)
    assert float(a @ b) > 0.999


def test_registry_options_and_bad_input():
    m = create("dlib_resnet_torch", pretrained=False)
    assert m.embedding_size == 128 and m.input_size == (150, 150) and m.chip == "dlib"
    with pytest.raises(OccluFaceError, match="128-d"):
        create("dlib_resnet_torch", embedding_size=64, pretrained=False)
    with pytest.raises(OccluFaceError, match="150x150"):
        create("dlib_resnet_torch", input_size=112, pretrained=False)
    with pytest.raises(OccluFaceError, match="150x150"):
        m(torch.rand(1, 3, 112, 112))
    out = m(torch.rand(2, 3, 150, 150))
    out.sum().backward()  # trainable: gradients reach the first conv
    assert m.stem.weight.grad is not None and out.shape == (2, 128)


# ------------------------------------------------------------------ ONNX export
def test_onnx_export_dynamic_batch_matches_torch(tmp_path, port):
    from occluface.export import check_onnx, export_onnx

    res = export_onnx(tmp_path / "port.onnx", port, batch="dynamic")
    assert Path(res.path).is_file() and res.input_shape == ("batch", 3, 150, 150)
    assert res.check_batch == 3 and res.max_abs_diff < 1e-4 and res.min_cosine > 0.9999
    diff, cos = check_onnx(res.path, port, batch=5, seed=1)  # another batch size through the same file
    assert diff < 1e-4 and cos > 0.9999

    # The exported file drops into FaceEmbedder in place of the torch module, with dlib's chip convention.
    from occluface.export import OnnxBackbone
    from occluface.faces.embed import FaceEmbedder

    onnx_model = OnnxBackbone(res.path, chip="dlib", threads=1)
    assert onnx_model.input_size == (150, 150) and onnx_model.embedding_size == 128
    chips = list(np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8))
    a = FaceEmbedder(model=onnx_model).embed_chips(chips)
    b = FaceEmbedder(model=port).embed_chips(chips)
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(OccluFaceError, match="no such ONNX file"):
        OnnxBackbone(tmp_path / "missing.onnx")


def test_export_cli_reports_bad_options_cleanly(tmp_path):
    from typer.testing import CliRunner

    from occluface.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m.onnx"), "--batch", "many"])
    assert res.exit_code == 2 and "batch must be 'dynamic'" in res.output
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m.onnx"), "--model", "no_such_net"])
    assert res.exit_code == 2 and "unknown model" in res.output
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ speed bench
def test_bench_speed_cli_writes_report(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from occluface.cli import app

    face = next(p for p in sorted((DATA / "lfw").rglob("*.jpg")))
    (tmp_path / "data" / "lfw" / "one").mkdir(parents=True)
    shutil.copy(face, tmp_path / "data" / "lfw" / "one" / face.name)  # one face, repeated to 3: a quick run
    out = tmp_path / "speed"
    args = ["bench", "speed", "--faces", "3", "--batch", "2", "--repeats", "1", "--threads", "1",
            "--backends", "dlib-batch,port-fast,port-onnx,no-such-backend", "--data", str(tmp_path / "data"),
            "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "speed.json").read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert data["faces"] == 3 and data["threads"] == 1
    for name in ("dlib-batch", "port-fast", "port-onnx"):
        assert rows[name]["error"] is None and rows[name]["faces_per_s"] > 0 and rows[name]["peak_rss_mib"] > 10
    assert rows["no-such-backend"]["error"]  # a failing backend is reported, not fatal
    assert "port-fast" in (out / "speed.md").read_text() and (out / "speed.png").stat().st_size > 1000


def test_speed_report_states_speedup_against_dlib(tmp_path):
    from occluface.bench.speed import SpeedResult, SpeedRow, write_report

    rows = [
        SpeedRow("dlib-single", "dlib", faces_per_s=10.0, peak_rss_mib=100.0),
        SpeedRow("port-fast", "port", faces_per_s=25.0, batch=32),
        SpeedRow("port-onnx", "ort", faces_per_s=40.0, batch=32),
        SpeedRow("port-compile", "compiled", error="timed out after 600 s", batch=32),
    ]
    paths = write_report(SpeedResult(8, 2, 32, 3, rows, {"cpu": "test cpu"}), tmp_path)
    md = paths["markdown"].read_text()
    assert "| port-onnx | ort | 150x150 | 32 | 40.0 |" in md and "| 4.00 |" in md
    assert "**port-onnx**" in md and "4.00x dlib" in md and "meets the 3x target" in md
    assert "failed: timed out after 600 s" in md
    assert json.loads(paths["json"].read_text())["rows"][3]["error"] == "timed out after 600 s"
