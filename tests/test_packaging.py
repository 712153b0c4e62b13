"""The wheel: what an installed occluface needs is inside, and no photograph is (no photo licence allows it)."""

import ast
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tomllib
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


#: Imported only behind a clear "not installed" error naming the extra that brings it (bench fuzz's engine).
OPTIONAL_IMPORTS = {"atheris"}
#: Import names whose distribution metadata does not list them as a top-level module.
DISTRIBUTION_OF = {"dlib": "dlib-bin"}


def _requirement_names(specs) -> set[str]:
    """Distribution names of requirement strings; an extra (psycopg[pool]) also counts as base-extra (psycopg-pool)."""
    names = set()
    for spec in specs:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", spec)
        base = m.group(1).lower().replace("_", "-")
        names.add(base)
        names.update(f"{base}-{extra.strip()}" for extra in (m.group(2) or "").split(",") if extra.strip())
    return names


def test_every_import_of_the_package_is_a_declared_dependency():
    """A third-party module that occluface imports (at the top or inside a function) must come from a package
    `pip install occluface` brings, or that the Makefile installs itself (--no-deps): otherwise a command works
    in the test venv and fails with ImportError on a user's machine."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _requirement_names(project["dependencies"])
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for line in makefile.splitlines():
        if "--no-deps" in line and "-r " not in line:
            declared |= {m.group(1).lower() for m in re.finditer(r"\b([A-Za-z0-9_.-]+)==", line)}
    by_module = md.packages_distributions()
    undeclared = {}
    for path in sorted((REPO / "occluface").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for top in {m.split(".")[0] for m in modules}:
                if top in sys.stdlib_module_names or top == "occluface" or top in OPTIONAL_IMPORTS:
                    continue
                dists = {d.lower().replace("_", "-") for d in by_module.get(top, [])} or {DISTRIBUTION_OF.get(top, top)}
                if not dists & declared:
                    undeclared.setdefault(top, path.relative_to(REPO).as_posix())
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"
