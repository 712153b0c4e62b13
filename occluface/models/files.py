"""Where the pretrained model files live: inside installed PyPI packages, never downloaded.

`face_recognition_models` needs `pkg_resources` to import, so its folder is found from the import
spec without importing it.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from occluface.errors import OccluFaceError

DLIB_MODELS = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
}


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OccluFaceError(
            f"package {package!r} is not installed; run `make install` (it ships the model files occluface needs)"
        )
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=None)
def dlib_model(kind: str) -> Path:
    """Path of one of dlib's model files shipped by `face-recognition-models`."""
    if kind not in DLIB_MODELS:
        raise OccluFaceError(f"unknown dlib model {kind!r}; known: {', '.join(DLIB_MODELS)}")
    path = package_dir("face_recognition_models") / "models" / DLIB_MODELS[kind]
    if not path.is_file():
        raise OccluFaceError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path
