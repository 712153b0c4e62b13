"""The public front door: ``from occluface import Recognizer, open_gallery`` is enough to enrol and identify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import occluface

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_every_advertised_name_resolves():
    for name in occluface.__all__:
        assert getattr(occluface, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        occluface.nope  # noqa: B018


def test_importing_the_package_loads_no_model_library():
    code = "import sys, occluface; print(any(m in sys.modules for m in ('torch', 'cv2', 'onnxruntime', 'dlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_enrol_and_identify_through_the_front_door(tmp_path):
    from occluface import Recognizer, open_gallery

    rec = Recognizer(open_gallery(tmp_path / "g.sqlite3"))
    assert rec.model_id == occluface.DEFAULT_MODEL
    rec.enroll("Obama", [SAMPLES / "fr_obama.jpg"])
    rec.enroll("Biden", [SAMPLES / "fr_biden.jpg"])
    names = sorted(m.label for m in rec.identify(SAMPLES / "fr_two_people_obama_biden.jpg"))
    assert names == ["Biden", "Obama"]
    with pytest.raises(occluface.OccluFaceError):
        rec.identify(tmp_path / "missing.jpg")
