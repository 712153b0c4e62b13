"""The wheel: what an installed occluface needs is inside, and no photograph is (no photo licence allows it)."""

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".mp4", ".avi"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """Build the wheel from the tracked files only (what a clean clone holds), offline, outside the checkout."""
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(out), str(src)], check=True, capture_output=True)
    (built,) = out.glob("occluface-*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf


def test_wheel_ships_no_photographs(wheel):
    photos = [n for n in wheel.namelist() if Path(n).suffix.lower() in PHOTO_SUFFIXES]
    assert photos == []
    top = {n.split("/")[0] for n in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"occluface"}  # no data/, tests/ or docs/


def test_wheel_carries_what_the_installed_package_reads(wheel):
    names = set(wheel.namelist())
    for needed in ("occluface/api/static/index.html", "occluface/api/static/app.js",
                   "occluface/maskcheck/label_audit.tsv"):
        assert needed in names
    for folder, suffix in (("models/thresholds", ".json"), ("models/weights", ".pt"), ("data/occlusion", ".json")):
        tracked = sorted(p.name for p in (REPO / "occluface" / folder).glob(f"*{suffix}"))
        assert tracked, folder
        assert all(f"occluface/{folder}/{name}" in names for name in tracked), folder


def test_wheel_states_its_licence(wheel):
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(meta).decode()
    assert "License-Expression: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
