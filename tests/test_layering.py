"""The house's import rules (docs/ARCHITECTURE.md), measured on every import statement: module
level and inside functions, absolute and relative."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "superslomo"

# Bottom to top: a layer imports only itself and the layers before it in this list.
LAYERS = [
    "errors",
    "contracts",
    "model",
    "export",
    "runtime",
    "video",
    "eval",
    "calibration",
    "engine",
    "serving",
    "training",
    "apps",
    "hosts",
    "vapoursynth",  # the name VapourSynth scripts import: a thin module over hosts/
    "cli",
]
# An app on a Jetson ships numpy + TensorRT (or onnxruntime) and nothing of the PyTorch side.
TORCH_FREE = {"contracts", "runtime", "video"}
TORCH_SIDE = {"model", "export", "calibration", "training"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect_imports() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports (anywhere in its body)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:  # `from pkg import module` names a module
                    child = f"{module}.{alias.name}"
                    targets.add(child if child in files else module)
        graph[name] = {t for t in targets if t == "superslomo" or t.startswith("superslomo.")}
        graph[name] = {t for t in graph[name] if t in files} | {
            t.rpartition(".")[0] for t in graph[name] if t not in files and t.rpartition(".")[0] in files
        }
        graph[name].discard(name)
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "superslomo"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return collect_imports()


def test_every_module_belongs_to_a_layer(graph):
    unknown = sorted({layer_of(m) for m in graph} - set(LAYERS) - {"superslomo"})
    assert not unknown, f"packages missing from the layer list (docs/ARCHITECTURE.md): {unknown}"


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_imports_point_down(graph):
    backward = []
    for module, targets in graph.items():
        if layer_of(module) == "superslomo":
            continue
        rank = LAYERS.index(layer_of(module))
        for target in targets:
            if layer_of(target) == "superslomo":
                continue  # the package root holds only the version
            if LAYERS.index(layer_of(target)) > rank:
                backward.append(f"{module} -> {target}")
    assert backward == []


def test_runtime_side_never_reaches_the_pytorch_side(graph):
    offending = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if layer_of(m) in TORCH_FREE
        for t in targets
        if layer_of(t) in TORCH_SIDE
    )
    assert offending == []


def test_the_walk_sees_imports_inside_functions():
    # The rules above are only as good as the walk: it must see a late, relative import.
    graph = collect_imports()
    assert "superslomo.contracts.external_data" in graph["superslomo.contracts.manifest"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
