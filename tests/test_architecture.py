"""The package's shape, read from its source with `ast`: no import cycle between its modules (imports inside
functions count too, so a cycle cannot hide in one), an import of the package's own inside a function only where it
defers a heavy third-party library (and says so), and no module over MAX_LINES lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "roberta_infer"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_LINES = 450


def module_name(path: Path) -> str:
    """src/roberta_infer/serve/app.py → roberta_infer.serve.app; a package's __init__.py is the package itself."""
    parts = (PACKAGE, *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The package's module that importing `name` runs: `name` itself, else the longest of its parents that is one
    (`from .x import y` where y is a function of x). None outside the package."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imported(module: str, tree: ast.AST) -> set[str]:
    """The package's modules that `module` imports anywhere in its source: at the top, and inside functions."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from .pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg.
            names = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in map(resolve, names) if target is not None and target != module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module: imported(module, ast.parse(path.read_text(), str(path))) for module, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None: depth-first search, a back edge closes a cycle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_resolve_to_the_package_modules():
    graph = import_graph()
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.default"]  # `from .errors import RobertaInferError`
    assert f"{PACKAGE}.serve.app" in graph[f"{PACKAGE}.serve"]  # `from .app import create_app` in serve/__init__.py
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.commands.args"]  # `from ..errors import …`, two levels up


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def deferred_without_reason(module: str) -> list[str]:
    """`path:line` of each import of the package's own inside a function of `module` whose group of import lines
    (the line and the import lines right above it) has no `# deferred: <the heavy library>` comment."""
    path = MODULES[module]
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines), str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            own = isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGE + "."))
            if not own:
                continue
            first = node.lineno - 1
            while first > 0 and lines[first - 1].lstrip().startswith(("from ", "import ")):
                first -= 1
            if not any("# deferred" in line for line in lines[first : node.end_lineno]):
                found.append(f"{path.relative_to(SOURCE.parent)}:{node.lineno}")
    return found


def test_imports_inside_functions_say_why():
    undeclared = [place for module in MODULES for place in deferred_without_reason(module)]
    assert not undeclared, ("imports of the package's own modules inside functions, without a `# deferred: <heavy "
                            "library>` comment (import them at the top, or say what they defer): " + ", ".join(undeclared))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_too_long(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (at most {MAX_LINES}): split it by concern"
