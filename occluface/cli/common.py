"""What every `occluface` command module shares: the root app, the consoles, one way to fail, option parsing,
the shared options, the data-path defaults and the end of every benchmark (its report and the files it wrote).

Nothing heavy is imported here: `occluface --help` imports this module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from occluface.errors import OccluFaceError
from occluface.settings import DATA_ENV, DEFAULT_DETECTOR, DEFAULT_SHARED, shared_data

class App(typer.Typer):
    """``typer.Typer`` whose commands turn an :class:`OccluFaceError` into one clear line and exit status 2
    (:func:`fail`), so no command repeats that ``try``/``except``."""

    def command(self, *args: Any, **kwargs: Any):
        register = super().command(*args, **kwargs)

        def decorator(fn):
            @functools.wraps(fn)
            def run(*a: Any, **kw: Any):
                try:
                    return fn(*a, **kw)
                except OccluFaceError as exc:
                    fail(str(exc))

            register(run)
            return fn

        return decorator


app = App(
    name="occluface",
    help="Occlusion-robust face recognition: train, evaluate and benchmark backbones; detect, align and occlude faces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error line stays one line: paths in it can be copied


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line and exit: users see the problem, not a traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# ----------------------------------------------------------------------------- option parsing
def str_list(text: str, *, lower: bool = False) -> list[str]:
    """A comma-separated option as its stripped, non-empty items (``"a, b,,"`` -> ``["a", "b"]``)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [t.lower() for t in items] if lower else items


def int_list(text: str, error: str, *, underscores: bool = False) -> list[int]:
    """A comma-separated option of whole numbers (empty items skipped, ``""`` -> ``[]``); ``fail(error)`` on a bad one.

    ``underscores``: drop every ``_`` of an item first (``1_000_000``)."""
    try:
        return [int(t.replace("_", "") if underscores else t) for t in text.split(",") if t.strip()]
    except ValueError:
        fail(error)


def set_threads(threads: int) -> None:
    """``--threads N``: torch's CPU threads (0 = leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- data paths
def data_default(*parts: str) -> str:
    """How a help text names the default data folder, e.g. ``$OCCLUFACE_DATA/yaleb or ../shared/data/yaleb``."""
    return " or ".join(str(Path(root, *parts)) for root in (f"${DATA_ENV}", DEFAULT_SHARED))


def data_option(what: str, *parts: str) -> Any:
    """A ``--data`` option defaulting to ``shared_data(*parts)``, looked up when the command runs (not at import),
    so ``OCCLUFACE_DATA`` set at any time before it moves the default."""
    return typer.Option(
        None, "--data", help=f"{what} (default: {data_default(*parts)}).",
        callback=lambda value: shared_data(*parts) if value is None else value,
    )


# ----------------------------------------------------------------------------- shared options
GalleryOpt = typer.Option(None, "--gallery", "-g", help="Gallery: a file, or a postgresql:// URL shared by several servers (default: a file under the user's data directory).",
                          envvar="OCCLUFACE_GALLERY")


def _default_model() -> str:
    from occluface.recognition.service import DEFAULT_MODEL

    return DEFAULT_MODEL


ModelOpt = typer.Option(_default_model(), "--model", "-m", help="Matcher or embedding model: sface / sface-erase (SFace matchers), routed (dlib for bare faces, occluface_resnet for masked ones), a registry name such as dlib_resnet, or a checkpoint .pt. A gallery keeps each model's enrolments apart.")
DetectorOpt = typer.Option(DEFAULT_DETECTOR, "--detector", help="Face detector (see `occluface bench detect`): auto-roi (default: YuNet proposes, CenterFace confirms on a crop), auto (CenterFace on the whole photo), fast (YuNet only: quicker, worse landmarks on masked faces), centerface, yunet, ...")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")

# The crop cache a trained mask classifier is scored or calibrated on: every option must match its training run.
_MASK_SPLIT_OPTIONS: dict[str, tuple[type, Any]] = {
    "data": (Path, data_option("Shared data folder")),
    "cache": (Path, typer.Option(Path("runs/maskcls2/data.npz"), "--cache", help="Cropped-face cache (built on first use).")),
    "seed": (int, typer.Option(0, "--seed", min=0, help="Seed of the split (must match the one trained with).")),
    "max_unmasked": (int, typer.Option(0, "--max-unmasked", min=0, help="Unmasked mask_cls photos used (as trained with); 0: all.")),
    "val_fraction": (float, typer.Option(0.2, "--val-fraction", min=0.05, max=0.5, help="Validation share (as trained with).")),
    "lfw_train": (int, typer.Option(0, "--lfw-train", min=0, help="Extra lfw_dev training people (as trained with).")),
    "yaleb_train": (int, typer.Option(0, "--yaleb-train", min=0, help="Yale B training photos per person (as trained with).")),
}


@dataclass(frozen=True)
class MaskSplit:
    """The mask-classifier data split a command was given (the options of :func:`mask_split_options`)."""

    data: Path
    cache: Path
    seed: int
    max_unmasked: int
    val_fraction: float
    lfw_train: int
    yaleb_train: int

    def build(self, *, progress: bool = True):
        """The cropped-face data set of this split (built into the cache on first use)."""
        from occluface.maskcheck.data import build_dataset

        return build_dataset(self.data, self.cache, seed=self.seed, max_unmasked=self.max_unmasked or None,
                             val_fraction=self.val_fraction, lfw_train=self.lfw_train, yaleb_train=self.yaleb_train,
                             progress=progress)


def option_group(options: dict[str, tuple[type, Any]], into: str, pack: Any) -> Any:
    """A decorator that gives a command a group of options defined once (``name: (type, typer.Option)``); the
    command takes them as one argument ``into`` = ``pack(**values)``. Typer reads the wrapper's signature."""

    def decorate(command: Any) -> Any:
        sig = inspect.signature(command, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name != into]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
                 for name, (kind, option) in options.items()]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            group = pack(**{name: kwargs.pop(name) for name in options})
            return command(**{into: group}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return wrapper

    return decorate


#: the mask-split options of the mask-classifier commands, as ``split: MaskSplit``
mask_split_options = option_group(_MASK_SPLIT_OPTIONS, "split", MaskSplit)


@dataclass(frozen=True)
class Listing:
    """What a listing command was asked for: a time window, the gallery, and the output form."""

    since: str | None
    until: str | None
    gallery: str | None
    as_csv: bool
    as_json: bool

    def open(self):
        from occluface.gallery.connect import open_gallery

        return open_gallery(self.gallery)

    def emit(self, rows: list[dict], keys: list[str], *, data: Any = None) -> bool:
        """Print ``rows`` as CSV (``keys``; lists joined by spaces) or ``data``/``rows`` as JSON if asked; True if
        printed (the command then skips its table)."""
        import csv
        import io
        import sys

        if self.as_csv:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows([{k: " ".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows])
            sys.stdout.write(buf.getvalue())
            return True
        if self.as_json:
            print_json(rows if data is None else data)
            return True
        return False


@dataclass(frozen=True)
class RecognizerOptions:
    """The gallery, matcher and detector a recognition command was given."""

    gallery: str | None
    model: str
    detector: str

    def build(self):
        from occluface.gallery.connect import open_gallery
        from occluface.recognition.service import Recognizer

        return Recognizer(open_gallery(self.gallery), model=self.model, detector=self.detector)


#: the options of every command that recognises faces against the gallery, as ``recognizer: RecognizerOptions``
recognizer_options = option_group({"gallery": (str, GalleryOpt), "model": (str, ModelOpt), "detector": (str, DetectorOpt)},
                                  "recognizer", RecognizerOptions)


#: the options of every listing command (check-ins, attendance, audit), as ``listing: Listing``
listing_options = option_group({
    "since": (str, typer.Option(None, "--since", help="From this ISO time (UTC), e.g. 2026-12-07T06:00.")),
    "until": (str, typer.Option(None, "--until", help="Before this ISO time (UTC).")),
    "gallery": (str, GalleryOpt),
    "as_csv": (bool, typer.Option(False, "--csv", help="Print CSV.")),
    "as_json": (bool, JsonOpt),
}, "listing", Listing)


def print_json(data) -> None:
    import json

    console.print_json(json.dumps(data, default=str))


# ----------------------------------------------------------------------------- the end of a benchmark
Report = Mapping[str, Any] | Sequence[Path]


def report_files(paths: Report) -> list[Path]:
    """The files a benchmark wrote, in order: a ``write_report`` dict (``markdown``, ``json``, ``figures``) or the
    paths as given (the Markdown first)."""
    if isinstance(paths, Mapping):
        return [Path(paths["markdown"]), Path(paths["json"]), *(Path(f) for f in paths.get("figures", ()))]
    return [Path(p) for p in paths]


def show_report(paths: Report) -> None:
    """Print a benchmark's Markdown report, then the files it wrote (every bench command ends this way)."""
    files = report_files(paths)
    console.print(files[0].read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in files), highlight=False)
