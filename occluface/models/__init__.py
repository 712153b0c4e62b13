"""Face-recognition backbones behind one registry: `create("iresnet50")`, `list_models()`, `model_info(name)`.

Importing this package is cheap (no torch); the built-in architectures, dlib's baseline included, are
imported and registered on the first lookup (see `registry.BUILTIN_MODULES`).
"""

from occluface.models.registry import create, list_models, model_info, register

__all__ = ["create", "list_models", "model_info", "register"]
