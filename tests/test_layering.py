"""The package's layers, read from the source: `core` at the bottom (it imports only `errors`),
`cli` at the top (nothing imports it), no import cycle between the top-level subpackages, and
command-line handlers short enough to hold no library logic."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import facerec

PACKAGE_ROOT = Path(facerec.__file__).parent
MAX_CLI_FUNCTION_LINES = 30
# Handlers allowed past MAX_CLI_FUNCTION_LINES while they wait for their rewrite; empty, and it
# should stay so: a long handler holds logic that belongs in the library.
LONG_CLI_FUNCTIONS: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    """'facerec.data.datasets' for .../facerec/data/datasets.py; a package's __init__ is the package."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        yield module_name(path), path


def imported_modules(path: Path, module: str) -> set[str]:
    """Every facerec module `path` imports, anywhere in it (in functions too), relative imports
    resolved; `from a import b` counts as importing both a and a.b (b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(strip_type_checking(tree)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(node, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "facerec" or name.startswith("facerec.")}


def strip_type_checking(tree: ast.Module) -> ast.Module:
    """The module without its `if TYPE_CHECKING:` blocks: imports for annotations only never run."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            return None if name == "TYPE_CHECKING" else self.generic_visit(node)

    return Strip().visit(tree)


def resolve_from(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def subpackage(module: str) -> str | None:
    """The top-level part of facerec a module belongs to ('data' for facerec.data.lfw)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def subpackage_graph() -> dict[str, set[str]]:
    """Which top-level subpackages (and modules: config, errors ...) each one imports."""
    graph: dict[str, set[str]] = {}
    for module, path in source_files():
        source = subpackage(module)
        if source is None:
            continue
        targets = {subpackage(name) for name in imported_modules(path, module)}
        graph.setdefault(source, set()).update(t for t in targets if t is not None and t != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_nothing_outside_cli_imports_cli():
    offenders = [
        module
        for module, path in source_files()
        if subpackage(module) != "cli" and any(subpackage(name) == "cli" for name in imported_modules(path, module))
    ]
    assert not offenders, f"modules below the command line import facerec.cli: {offenders}"


def test_core_imports_nothing_of_facerec_but_errors():
    graph = subpackage_graph()
    assert graph.get("core", set()) <= {"errors"}, f"facerec.core imports {sorted(graph['core'] - {'errors'})}"


def test_subpackages_import_no_cycle():
    cycle = find_cycle(subpackage_graph())
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle or [])


def test_cli_functions_are_short():
    long = []
    for module, path in source_files():
        if subpackage(module) != "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLI_FUNCTION_LINES and f"{module}.{node.name}" not in LONG_CLI_FUNCTIONS:
                    long.append(f"{module}.{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_CLI_FUNCTION_LINES} lines in facerec.cli (move logic to the library): {long}"


def test_the_graph_helpers_see_imports(tmp_path):
    """The checks above are only as good as the graph: it must see imports in functions and
    relative imports, a known edge, and a known cycle."""
    source = tmp_path / "example.py"
    source.write_text("from ..cli import main\n\ndef f():\n    from . import lfw\n    import facerec.core.files\n")
    found = imported_modules(source, "facerec.data.example")
    assert {"facerec.cli", "facerec.cli.main", "facerec.data.lfw", "facerec.core.files"} <= found
    assert "errors" in subpackage_graph()["data"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Layers from the bottom up: a module may import its own layer and the layers below, never above.
LAYERS = [
    {"errors", "registry", "core"},
    {"config", "distributed"},
    {"data", "align", "heads"},
    {"models"},
    {"pipeline"},
    {"eval", "distill"},
    {"train", "analysis"},
    {"serve", "components"},
    {"cli"},
]


def module_graph() -> dict[str, set[str]]:
    """Module -> the facerec modules it imports. An import of one of the module's own parent
    packages is left out: `from facerec.models import iresnet` inside facerec.models means the
    sibling module, and the package's __init__ is not a dependency of its own parts."""
    modules = dict(source_files())
    graph = {}
    for module, path in modules.items():
        parents = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        graph[module] = {name for name in imported_modules(path, module) if name in modules} - parents - {module}
    return graph


def test_modules_import_no_cycle():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle or [])


def test_no_layer_imports_a_layer_above_it():
    level = {name: k for k, layer in enumerate(LAYERS) for name in layer}
    graph = subpackage_graph()
    assert set(graph) <= set(level), f"subpackages missing from LAYERS: {sorted(set(graph) - set(level))}"
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if level[b] > level[a]]
    assert not upward, f"imports that reach up a layer: {upward}"
