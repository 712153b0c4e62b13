"""The one report writer of the benchmarks: a Markdown table, the JSON it came from, and figures, in one folder.

Every ``write_report`` of ``occluface.bench`` returns the same keys -- ``markdown``, ``json`` (paths) and
``figures`` (a list of paths) -- so the CLI prints every report the same way. Files are written atomically
(``occluface.io``): a crash leaves the previous report, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from occluface.errors import OccluFaceError
from occluface.io import write_json, write_text


def digest(obj: Any, n: int = 10) -> str:
    """A short stable hash of JSON-able settings: the name of a cache or run folder that depends on them."""
    import hashlib
    import json

    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:n]


def report_dir(out: str | Path) -> Path:
    """The report folder, created; a clear error naming it when it cannot be."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OccluFaceError(f"{out}: cannot create the report folder ({exc.strerror or exc})") from None
    return out


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save and close a figure (tight layout), returning its path."""
    plt = pyplot()
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def save_report(out: str | Path, *, markdown: str | Sequence[str], data: Any, markdown_name: str = "report.md",
                json_name: str = "metrics.json", figures: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Write the Markdown (lines joined) and the JSON (``to_jsonable``) into ``out``; returns the report's paths."""
    from occluface.bench.report import to_jsonable

    out = report_dir(out)
    text = markdown if isinstance(markdown, str) else "\n".join(markdown)
    md = write_text(out / markdown_name, text.rstrip("\n") + "\n")
    js = write_json(out / json_name, to_jsonable(data))
    return {"markdown": md, "json": js, "figures": [Path(f) for f in figures]}


def grouped_bars(ax: Any, categories: Sequence[str], series: dict[str, Sequence[float]], *,
                 value_labels: bool = False) -> None:
    """One group of bars per category, one bar per series (side by side, legend labels = series names)."""
    import numpy as np

    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, list(values), width, label=label)
        if value_labels:
            ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], padding=1, fontsize=7)
    ax.set_xticks(x, categories)


def pct(x: float | None, unit: str = "") -> str:
    """A share as a percentage with one decimal for report tables ("n/a" when unknown); ``unit``: "%" or " %"."""
    return "n/a" if x is None else f"{100 * x:.1f}{unit}"
