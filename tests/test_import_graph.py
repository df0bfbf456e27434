"""The layering of fpcli, read from its source: no import cycle between its files (function-level imports count,
`if TYPE_CHECKING:` blocks do not), and each layer imports only the layers below it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import fpcli

ROOT = Path(fpcli.__file__).parent
# Layer of each package, top first; a file may import its own layer and those below (a larger number).
LAYERS = {"fpcli.cli": 0, "fpcli.devtools": 0, "fpcli.lmms": 1, "fpcli.run": 1, "fpcli.scale": 2, "fpcli.eval": 2,
          "fpcli.model": 3, "fpcli.prune": 4, "fpcli.video": 4, "fpcli.viz": 4}


def module_files() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The fpcli modules `name` imports: `from package import submodule` counts as the submodule alone."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {module for module in found if module in modules and module != name}


def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                strong(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            strong(node)
    return found


def layer_of(module: str) -> int | None:
    return next((layer for package, layer in LAYERS.items() if module == package or module.startswith(package + ".")),
                None)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_files():
    assert cycles(graph()) == []


def test_imports_point_down():
    upward = [(module, other) for module, others in graph().items() for other in others
              if layer_of(module) is not None and layer_of(other) is not None and layer_of(other) < layer_of(module)]
    assert upward == []


def test_the_cli_holds_no_orchestration():
    """fpcli/cli parses, calls fpcli.run and renders: no model loading, sessions or clip loops of its own."""
    source = "\n".join(path.read_text() for path in (ROOT / "cli").glob("*.py"))
    for call in ("get().start(", "llm.start(", "load_model(", "features_for(", "SessionPool(", "answer_clip(",
                 "clip_units("):
        assert call not in source, call
