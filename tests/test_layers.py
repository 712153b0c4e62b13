"""The import layers of docs/architecture.md: no upward import, no circle, the benchmarks above the product.

The layer map is read from the ```layers block of docs/architecture.md, so the document and this check cannot
disagree. Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "occluface"


def layer_map() -> dict[str, int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    out = {}
    for line in block.group(1).strip().splitlines():
        level, names = line.split(":", 1)
        for name in names.split():
            out[name] = int(level)
    return out


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_edges(known: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from a import b`` counts as a.b when b is a module)."""
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for t in targets:
                if t == "occluface" or t.startswith("occluface."):
                    r = resolve(t, known)
                    if r and r != name:
                        found.add(r)
        edges[name] = found
    return edges


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    best = None
    for prefix, level in layers.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, level)
    return None if best is None else best[1]


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return known, import_edges(known), layer_map()


def test_every_module_has_a_layer(graph):
    known, _, layers = graph
    missing = sorted(m for m in known if layer_of(m, layers) is None)
    assert not missing, f"modules outside the layer map of docs/architecture.md: {missing}"


def test_no_upward_import(graph):
    known, edges, layers = graph
    bad = [f"{a} (layer {layer_of(a, layers)}) imports {b} (layer {layer_of(b, layers)})"
           for a, targets in sorted(edges.items()) for b in sorted(targets)
           if layer_of(b, layers) > layer_of(a, layers)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_benchmarks_only_imported_by_cli(graph):
    _, edges, _ = graph
    bad = [f"{a} imports {b}" for a, targets in sorted(edges.items()) for b in sorted(targets)
           if b.startswith("occluface.bench") and not a.startswith(("occluface.bench", "occluface.cli"))]
    assert not bad, "\n".join(bad)


def test_no_import_circle(graph):
    _, edges, _ = graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a low module importing the CLI is reported (guards against a check that passes vacuously)."""
    layers = layer_map()
    assert layer_of("occluface.errors", layers) < layer_of("occluface.cli.operate", layers)
    assert layer_of("occluface.data.occlusion.styles", layers) == layers["occluface.data"]
    assert layer_of("occluface.data.images", layers) == layers["occluface.data.images"]
