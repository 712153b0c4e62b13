"""Bad input everywhere: decoding, recognizer, CLI, REST API and the training data loader.

Every odd photo a gate meets (truncated, empty, not an image, 16-bit, CMYK, palette, grey, EXIF-rotated, tiny,
a 20k x 20k decompression bomb, no face, fifty faces) gets a clear error naming it or a correct result, never a
crash or a hang. Property-based tests (hypothesis) check the same for generated and mutated images.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from occluface.api.app import ApiSettings, create_app
from occluface.api.keys import KeyStore
from occluface.data.images import MAX_PIXELS, load_pil, load_rgb
from occluface.errors import ImageError, OccluFaceError

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = DATA / "samples"
KEY = "ocf_robustness-key"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # corrupt-TIFF chatter


# ----------------------------------------------------------------------------- crafted files
def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A real tiny PNG whose header claims ``width x height`` (CRC fixed): a decompression bomb's header."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    i = data.find(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def face_jpeg() -> bytes:
    return (SAMPLES / "fr_obama.jpg").read_bytes()


#: name -> (bytes, what the ImageError must say)
def bad_inputs() -> dict[str, tuple[bytes, str]]:
    face = face_jpeg()
    png = encode(Image.open(SAMPLES / "fr_obama.jpg").convert("RGB").resize((64, 80)), "PNG")
    return {
        "truncated.jpg": (face[: len(face) // 2], "truncated"),
        "header_only.jpg": (face[:200], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "zero.jpg": (b"", "empty file"),
        "notes.jpg": (b"meeting notes, definitely not a photo\n" * 20, "not a recognised image"),
        "report.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not a recognised image"),
        "page.jpeg": (b"<!doctype html><html><body>hi</body></html>", "not a recognised image"),
        "bomb_20k.png": (png_claiming(20_000, 20_000), "pixels"),
        "bomb_20k.jpg": (jpeg_claiming(20_000, 20_000), "pixels"),
        "over_limit_9k.png": (png_claiming(9_000, 9_000), "more than the"),
    }


BAD_NAMES = list(bad_inputs())


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    for name, (data, _) in bad_inputs().items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """One recognizer (auto detector, dlib ResNet) for the module: models load once."""
    from occluface.gallery.connect import open_gallery
    from occluface.recognition.service import Recognizer

    r = Recognizer(open_gallery(tmp_path_factory.mktemp("g") / "gallery.sqlite3"))
    r.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    return r


@pytest.fixture(scope="module")
def client(tmp_path_factory, rec):
    app = create_app(ApiSettings(gallery=tmp_path_factory.mktemp("api") / "g.sqlite3",
                                 keys=KeyStore.load(None, [KEY]), max_upload_bytes=4 * 1024 * 1024))
    app.state.service._rec = rec  # share the loaded models with the recognizer fixture
    with TestClient(app, headers={"X-API-Key": KEY}) as c:  # every call sends the key
        yield c


def rotated_face_with_exif() -> tuple[bytes, tuple[int, int]]:
    """The Obama sample stored sideways with EXIF orientation 6, which says "turn 90 degrees clockwise to view"."""
    upright = Image.open(SAMPLES / "fr_obama.jpg").convert("RGB")
    upright.thumbnail((600, 600))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: the face lies on its side
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes()), upright.size


# ----------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_files_and_bytes_get_clear_image_errors(bad_dir, name):
    data, fragment = bad_inputs()[name]
    with pytest.raises(ImageError, match=name.replace(".", r"\.")) as from_file:
        load_rgb(bad_dir / name)
    assert fragment in str(from_file.value)
    with pytest.raises(ImageError, match=fragment):
        load_rgb(data, name=name)


def test_missing_file_and_folder_are_clear(tmp_path):
    with pytest.raises(ImageError, match="missing.jpg: no such file"):
        load_rgb(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_rgb(tmp_path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_headers_are_refused_before_any_pixel_is_allocated():
    """20k x 20k would need 1.2 GB as RGB: the refusal must come from the header alone."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for data in (png_claiming(20_000, 20_000), jpeg_claiming(20_000, 20_000), png_claiming(1, 100_000_000)):
        with pytest.raises(ImageError):
            load_rgb(data)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak memory grew {grown_mib:.0f} MiB while refusing bombs"
    w = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(ImageError, match=f"{w}x{w} pixels, more than the {MAX_PIXELS:,} allowed"):
        load_rgb(png_claiming(w, w))


def test_refused_files_do_not_leak_file_handles(bad_dir):
    """A gate server decodes for months: every refused file must be closed."""
    fds = lambda: len(list(Path("/proc/self/fd").iterdir()))  # noqa: E731
    before = fds()
    for _ in range(30):
        for name in ("bomb_20k.png", "over_limit_9k.png", "truncated.png", "truncated.jpg", "notes.jpg"):
            with pytest.raises(ImageError):
                load_rgb(bad_dir / name)
    assert fds() <= before + 2


def test_float_images_with_nan_are_scaled_not_garbage():
    values = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    values[0, 0] = np.nan
    out = load_rgb(encode(Image.fromarray(values), "TIFF"))
    assert out.shape == (8, 8, 3) and out[-1, -1, 0] == 255 and out[0, 1, 0] <= 5


def test_sixteen_bit_grey_is_scaled_to_full_range():
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 500).astype(np.uint16)
    out = load_rgb(encode(Image.fromarray(ramp), "PNG"))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    flat = out[..., 0].ravel().astype(int)
    assert (np.diff(flat) >= 0).all(), "brightness order must survive the 16 -> 8 bit conversion"
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_cmyk_palette_grey_bilevel_and_alpha_convert_to_rgb():
    red = Image.new("RGB", (16, 12), (220, 30, 40))
    cmyk = load_rgb(encode(red.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.shape == (12, 16, 3)
    assert np.abs(cmyk.astype(int) - [220, 30, 40]).max() < 40, "CMYK must not come back colour-inverted"
    colours = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0], [17, 34, 51]], np.uint8)
    pal = Image.fromarray(colours[np.arange(48).reshape(6, 8) % 4]).convert("P", palette=Image.Palette.ADAPTIVE)
    out = load_rgb(encode(pal, "PNG"))
    assert np.array_equal(out, colours[np.arange(48).reshape(6, 8) % 4])
    grey = load_rgb(encode(Image.new("L", (5, 7), 77), "PNG"))
    assert grey.shape == (7, 5, 3) and (grey == 77).all()
    bilevel = load_rgb(encode(Image.new("1", (9, 9), 1), "PNG"))
    assert (bilevel == 255).all()
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert (load_rgb(encode(clear, "PNG")) == 255).all(), "transparent pixels go on white, not black"
    gif = load_rgb(encode(Image.new("P", (6, 6), 3), "GIF", save_all=True, append_images=[Image.new("P", (6, 6), 9)]))
    assert gif.shape == (6, 6, 3), "an animated GIF gives its first frame"


# EXIF orientation -> the numpy operation that shows the stored pixels upright
ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.transpose(a[::-1, ::-1], (1, 0, 2)),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_rgb(encode(Image.fromarray(stored), "PNG", exif=exif.tobytes()))
    assert np.array_equal(out, ORIENT[orientation](stored))


def test_bad_exif_orientation_value_is_ignored():
    exif = Image.Exif()
    exif[0x0112] = 99
    out = load_rgb(encode(Image.new("RGB", (10, 6), (1, 2, 3)), "PNG", exif=exif.tobytes()))
    assert out.shape == (6, 10, 3)


# ----------------------------------------------------------------------------- recognizer
def test_recognizer_tiny_flat_and_rotated_photos(rec, tmp_path):
    tiny = np.full((10, 10, 3), 128, np.uint8)
    assert rec.identify(tiny) == []
    flat = np.full((160, 200, 3), (90, 120, 150), np.uint8)
    assert rec.identify(flat) == []
    (tmp_path / "tiny.png").write_bytes(encode(Image.fromarray(tiny), "PNG"))
    with pytest.raises(OccluFaceError, match=r"tiny\.png: no face"):
        rec.enroll("Tiny", [tmp_path / "tiny.png"])
    assert "Tiny" not in rec.gallery
    data, (w, h) = rotated_face_with_exif()
    (tmp_path / "sideways.jpg").write_bytes(data)
    matches = rec.identify(tmp_path / "sideways.jpg")
    assert [m.name for m in matches] == ["Obama"], "EXIF orientation must be applied before detection"


def test_fifty_faces_give_a_result(rec):
    from occluface.rollcall.compose import compose_group

    files = sorted((DATA / "lfw").glob("*/*.jpg"))
    files = (files * (50 // len(files) + 1))[:50]
    comp = compose_group([load_rgb(f) for f in files], None, [f.parent.name for f in files], seed=0,
                         face_size=(40, 48), context=0.3)
    matches = rec.identify(comp.image, k=1)
    assert len(matches) >= 45, f"only {len(matches)} of 50 faces found"
    assert all(m.box[2] > m.box[0] and m.box[3] > m.box[1] for m in matches)
    assert all(m.name in (None, "Obama") for m in matches)


# ----------------------------------------------------------------------------- REST API
@pytest.mark.parametrize("endpoint", ["/api/identify", "/api/rollcall", "/api/verify", "/api/subjects"])
def test_api_answers_every_bad_upload_with_a_json_error(client, endpoint):
    for name, (data, fragment) in bad_inputs().items():
        if endpoint == "/api/verify":
            files = [("a", (name, data, "image/jpeg")), ("b", ("ok.jpg", face_jpeg(), "image/jpeg"))]
        elif endpoint == "/api/subjects":
            files = [("files", (name, data, "image/jpeg"))]
        else:
            files = [("file", (name, data, "image/jpeg"))]
        r = client.post(endpoint, files=files, data={"name": "Mallory"} if endpoint == "/api/subjects" else {},
                        headers={"X-API-Key": KEY})
        assert r.status_code == 422, (endpoint, name, r.status_code, r.text)
        error = r.json()["error"]
        assert name in error and fragment in error, (endpoint, error)
    assert "Mallory" not in [s["name"] for s in client.get("/api/subjects").json()["subjects"]]


def test_api_tiny_flat_rotated_and_converted_photos(client):
    def identify(data: bytes, name: str = "p.png") -> dict:
        r = client.post("/api/identify", files=[("file", (name, data, "image/png"))])
        assert r.status_code == 200, r.text
        return r.json()

    assert identify(encode(Image.new("RGB", (10, 10), 50), "PNG"))["faces"] == []
    data, (w, h) = rotated_face_with_exif()
    out = identify(data, "sideways.jpg")
    assert (out["image"]["width"], out["image"]["height"]) == (w, h)
    assert [f["label"] for f in out["faces"]] == ["Obama"]
    face = Image.open(SAMPLES / "fr_obama.jpg").convert("RGB")
    face.thumbnail((500, 500))
    cmyk = identify(encode(face.convert("CMYK"), "JPEG"), "obama_cmyk.jpg")  # converted, not colour-inverted
    assert [f["label"] for f in cmyk["faces"]] == ["Obama"]
    r = client.post("/api/verify", files=[("a", ("tiny.png", encode(Image.new("RGB", (10, 10)), "PNG"), "image/png")),
                                          ("b", ("ok.jpg", face_jpeg(), "image/jpeg"))])
    assert r.status_code == 400 and "tiny.png: no face" in r.json()["error"]


# ----------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("name", ["truncated.jpg", "zero.jpg", "notes.jpg", "bomb_20k.png"])
def test_cli_reports_bad_photos_in_one_line(rec, bad_dir, tmp_path, monkeypatch, capsys, name):
    from occluface import cli

    monkeypatch.setattr(sys, "argv", ["occluface", "identify", str(bad_dir / name), "-g", str(tmp_path / "g.sqlite3")])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert name in err and "error" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- training data loader
def test_training_loader_converts_odd_images_and_names_bad_ones(bad_dir, tmp_path):
    from occluface.data.folder import FaceFolderDataset, scan_folder

    root = tmp_path / "faces"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "alice" / "a16.png").write_bytes(encode(Image.fromarray(np.full((40, 30), 40000, np.uint16)), "PNG"))
    (root / "alice" / "cmyk.jpg").write_bytes(encode(rgb.convert("CMYK"), "JPEG"))
    (root / "alice" / "pal.png").write_bytes(encode(rgb.convert("P"), "PNG"))
    (root / "alice" / "rot.png").write_bytes(encode(rgb, "PNG", exif=exif.tobytes()))
    for name in ("truncated.jpg", "zero.jpg", "notes.jpg", "bomb_20k.png"):
        (root / "bob" / name).write_bytes((bad_dir / name).read_bytes())
    samples = scan_folder(root)
    ds = FaceFolderDataset(samples, ["alice", "bob"], transform=None)
    for i, s in enumerate(samples):
        if s.label == "alice":
            img, target = ds[i]
            assert img.mode == "RGB" and target == 0
            assert img.size == ((40, 30) if s.path.name == "rot.png" else (30, 40))
        else:
            with pytest.raises(ImageError, match=s.path.name.replace(".", r"\.")):
                ds[i]


# ----------------------------------------------------------------------------- property-based
MODES = ["RGB", "L", "P", "RGBA", "LA", "1", "CMYK", "I;16"]
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM"]


@st.composite
def encoded_images(draw):
    w = draw(st.integers(1, 48))
    h = draw(st.integers(1, 48))
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if mode == "I;16":
        img = Image.fromarray((pixels[..., 0].astype(np.uint16) * 257))
    elif mode != "RGB":
        img = img.convert(mode)
    try:
        data = encode(img, fmt)
    except (OSError, ValueError, KeyError):  # e.g. JPEG cannot hold alpha: not an input anyone can send
        data = encode(img.convert("RGB"), fmt)
    return data, (h, w), mode, fmt, pixels


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_images())
def test_property_valid_images_decode_to_rgb_of_the_right_size(case):
    data, (h, w), mode, fmt, pixels = case
    out = load_rgb(data)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    if mode == "RGB" and fmt in ("PNG", "BMP", "TIFF", "PPM"):
        assert np.array_equal(out, pixels), "lossless RGB must round-trip exactly"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_images(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(0, 10**6)))
def test_property_mutated_images_decode_or_raise_image_error(case, edits, cut):
    data = bytearray(case[0])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        out = load_rgb(bytes(data), name="mutant")
    except ImageError as exc:
        assert "mutant" in str(exc)
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8 and out.size > 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00"]))
def test_property_arbitrary_bytes_never_crash_the_decoder(payload, magic):
    try:
        out = load_pil(magic + payload, name="blob")
    except ImageError as exc:
        assert str(exc).startswith("blob")
        return
    assert out.mode == "RGB"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(encoded_images(), st.integers(0, 10**6), st.sampled_from(["/api/identify", "/api/rollcall"]))
def test_property_api_uploads_get_json_answers(client, case, cut, endpoint):
    data = case[0][: max(1, cut % (len(case[0]) + 1))]
    r = client.post(endpoint, files=[("file", ("upload.png", data, "image/png"))], data={"roster": "Obama"})
    assert r.status_code in (200, 422), r.text
    body = r.json()
    if r.status_code == 200:
        assert isinstance(body["faces"], list)
    else:
        assert "upload.png" in body["error"]


# ----------------------------------------------------------------------------- fuzz harnesses
def test_random_fuzzer_over_decoding_finds_no_crash(tmp_path):
    from occluface.bench.fuzz import run_fuzz

    r = run_fuzz("decode", engine="random", runs=400, seed=3, artifacts=tmp_path)
    assert r.inputs == 400 and r.crashes == []
    assert sum(r.outcomes.values()) == 400 and r.outcomes["decoded"] > 0 and r.outcomes["ImageError"] > 0


def test_fuzzer_reports_and_saves_a_crashing_input(tmp_path, monkeypatch):
    import occluface.data.images as images
    from occluface.bench.fuzz import run_random

    real = images.load_rgb

    def buggy(data, name=None):
        if data[:4] == b"\x89PNG":
            raise ValueError("boom")
        return real(data, name=name)

    monkeypatch.setattr(images, "load_rgb", buggy)
    r = run_random("decode", runs=30, seconds=None, artifacts=tmp_path)
    assert r.crashes and r.crashes[0]["error"] == "ValueError: boom"
    assert Path(r.crashes[0]["input"]).read_bytes()[:4] == b"\x89PNG"


def test_random_fuzzer_over_api_uploads_finds_no_crash(tmp_path):
    from occluface.bench.fuzz import run_fuzz

    r = run_fuzz("api", engine="random", runs=40, seed=5, artifacts=tmp_path, detector="centerface")
    assert r.inputs == 40 and r.crashes == [], r.crashes
    assert set(r.outcomes) <= {"200", "201", "400", "404", "413", "422"} and "422" in r.outcomes


def test_bench_fuzz_atheris_decode_short_run(tmp_path):
    from occluface.cli import app
    from typer.testing import CliRunner

    out = tmp_path / "fuzz"
    r = CliRunner().invoke(app, ["bench", "fuzz", "-t", "decode", "--engine", "atheris", "--runs", "300",
                                 "--no-instrument", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (result,) = json.loads((out / "fuzz.json").read_text())
    assert result["engine"] == "atheris" and result["inputs"] == 300 and result["crashes"] == []
    assert "inputs tried" in (out / "fuzz.md").read_text()
