"""The `occluface` command: one entry point for operators and researchers.

Command bodies import their heavy modules lazily so `occluface --help` stays fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from occluface.errors import OccluFaceError

app = typer.Typer(
    name="occluface",
    help="Occlusion-robust face recognition: train, evaluate and benchmark backbones; detect, align and occlude faces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: each writes a Markdown table, JSON and plots.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one clear line and exit: users see the problem, not a traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# ----------------------------------------------------------------------------- commands
# (each command lives below; keep them thin: parse options, call the library, print)


def main() -> None:
    """Console-script entry: turn occluface errors into one line and exit status 2."""
    try:
        app()
    except OccluFaceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
