"""One name -> factory registry for every backbone, so training, evaluation and the CLI pick models by string.

This module deliberately imports nothing heavy: model modules import `register` from here, and the built-in
ones are imported lazily the first time a name is looked up (no import cycle, fast `occluface --help`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from occluface.errors import OccluFaceError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["register", "register_depths", "create", "list_models", "model_info", "model_weights", "normalize_input_size", "check_batch",
           "ModelSpec", "Weights"]

# Modules whose import registers the built-in backbones (imported on first lookup).
BUILTIN_MODULES: tuple[str, ...] = (
    "occluface.models.resnet",
    "occluface.models.cbam_resnet",
    "occluface.models.iresnet",
    "occluface.models.ressanet",
    "occluface.models.dlib_resnet",
    "occluface.models.dlib_port",
    "occluface.models.dlib_finetuned",
    "occluface.models.sface",
)


@dataclass(frozen=True)
class Weights:
    """The shipped weights of a backbone, described once (torchvision's ``Weights`` idea): the chip they
    expect, a fingerprint stored with every enrolment (vectors of two fingerprints never meet), and the name of
    their calibrated thresholds (``occluface.recognition.thresholds``)."""

    chip: str  # "dlib" (150 px dlib chip) or "arcface" (112 px 5-point alignment)
    fingerprint: Callable[[], str]
    thresholds: str

    def version(self) -> str:
        return str(self.fingerprint())


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one backbone without building it."""

    name: str
    factory: Callable[..., Any]
    default_input_size: tuple[int, int]
    description: str
    weights: Weights | None = None  # None: no shipped weights (trainable architectures)


_REGISTRY: dict[str, ModelSpec] = {}
_builtins_loaded = False
_loading = False


def normalize_input_size(size: int | tuple[int, int] | list[int] | None, default: Any = 112) -> tuple[int, int]:
    """Turn 112 / (112, 96) / None into an (H, W) tuple of positive ints, rejecting anything else clearly."""
    if size is None:
        size = default
    if isinstance(size, (bool, str, bytes)):
        raise OccluFaceError(f"input_size must be an int or (H, W), got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise OccluFaceError(f"input_size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise OccluFaceError(f"input_size must be positive, got {(h, w)}")
    return h, w


def register(
    name: str, *, default_input_size: int | tuple[int, int] = 112, description: str = "", weights: Weights | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a factory `(embedding_size, input_size, **kwargs) -> nn.Module` under `name`.

    Re-registering a name replaces it (handy in tests and for plug-ins overriding a built-in).
    """
    key = name.strip().lower()
    if not key:
        raise OccluFaceError("model name must not be empty")
    size = normalize_input_size(default_input_size)

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        desc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[key] = ModelSpec(key, factory, size, desc, weights)
        return factory

    return decorator


def register_depths(
    prefix: str,
    stages: dict[int, Any],
    make: Callable[..., Any],
    *,
    options: dict[str, Any],
    default_input_size: int | tuple[int, int],
    describe: Callable[[int], str],
) -> None:
    """Register one architecture family at every depth: ``prefix + depth`` builds ``make(stages[depth],
    embedding_size=..., input_size=..., name=..., **options)``. ``options`` are the keyword options the family
    takes, with their defaults (the factory's signature shows them, so unknown options are refused by name)."""
    signature = inspect.Signature(
        [inspect.Parameter("embedding_size", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("input_size", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in options.items()]
    )
    for depth, stage in stages.items():
        name = f"{prefix}{depth}"

        def build(embedding_size: int, input_size: tuple[int, int], _stage: Any = stage, _name: str = name, **kwargs: Any):
            return make(_stage, embedding_size=embedding_size, input_size=input_size, name=_name, **{**options, **kwargs})

        build.__name__ = name
        build.__signature__ = signature  # type: ignore[attr-defined]
        register(name, default_input_size=default_input_size, description=describe(depth))(build)


def _load_builtins() -> None:
    """Import the built-in model modules once; a failing import raises again on the next lookup."""
    global _builtins_loaded, _loading
    if _builtins_loaded or _loading:  # _loading: a module being imported may itself look names up
        return
    _loading = True
    try:
        for module in BUILTIN_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:  # a stripped-down install may lack one family; others work
                if exc.name != module:
                    raise
        _builtins_loaded = True
    finally:
        _loading = False


def _spec(name: str) -> ModelSpec:
    _load_builtins()
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise OccluFaceError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[key]


def _check_kwargs(spec: ModelSpec, kwargs: dict[str, Any]) -> None:
    """Reject options the factory does not take with a message naming them (not a bare TypeError)."""
    params = inspect.signature(spec.factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        accepted = sorted(k for k in params if k not in ("embedding_size", "input_size"))
        raise OccluFaceError(
            f"model {spec.name!r} does not take option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )


def list_models() -> list[str]:
    """Names of every registered backbone, sorted naturally (resnet18 before resnet101)."""
    _load_builtins()
    return sorted(_REGISTRY, key=_natural_key)


def _natural_key(name: str) -> list[Any]:
    """resnet18 < resnet34 < resnet101: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def model_weights(name: str) -> Weights | None:
    """The shipped weights' description of a registered model (None for architectures without weights)."""
    return _spec(name).weights


def model_info(name: str) -> dict[str, Any]:
    """Name, one-line description and default (H, W) input of a registered model, without building it."""
    spec = _spec(name)
    return {"name": spec.name, "description": spec.description, "default_input_size": spec.default_input_size}


def create(
    name: str,
    *,
    embedding_size: int = 512,
    input_size: int | tuple[int, int] | None = None,
    **kwargs: Any,
) -> "torch.nn.Module":
    """Build backbone `name` mapping B x 3 x H x W images to B x embedding_size embeddings.

    `input_size=None` uses the model's default; the result always carries `.embedding_size` and
    `.input_size` (H, W) so callers never have to guess what to feed it.
    """
    spec = _spec(name)
    if isinstance(embedding_size, bool) or not isinstance(embedding_size, int) or embedding_size < 1:
        raise OccluFaceError(f"embedding_size must be a positive int, got {embedding_size!r}")
    size = normalize_input_size(input_size, spec.default_input_size)
    _check_kwargs(spec, kwargs)
    model = spec.factory(embedding_size=embedding_size, input_size=size, **kwargs)
    if not hasattr(model, "embedding_size"):
        model.embedding_size = embedding_size
    if not hasattr(model, "input_size"):
        model.input_size = size
    return model


def check_batch(x: Any, model_name: str, input_size: tuple[int, int] | None = None) -> None:
    """Fail with a readable message when a forward() gets something other than B x 3 x H x W images.

    `input_size` is enforced only by models whose head has a fixed flatten size (IResNet, ResSaNet).
    """
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[1] != 3:
        raise OccluFaceError(f"{model_name}: expected a B x 3 x H x W image batch, got shape {shape}")
    if input_size is not None and tuple(shape[2:]) != tuple(input_size):
        raise OccluFaceError(
            f"{model_name}: built for {input_size[0]}x{input_size[1]} inputs, got {shape[2]}x{shape[3]}; "
            f"create it with input_size={tuple(shape[2:])} or resize the faces"
        )
