"""The package layering holds: no import cycle between fedtune's top-level packages and modules.

Each ``import fedtune.X...`` in ``src/fedtune/A/...`` is an edge A -> X (runtime imports only:
those under ``if TYPE_CHECKING:`` are type hints, not dependencies). A cycle means two packages
can no longer be understood, tested or replaced one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fedtune

ROOT = Path(fedtune.__file__).parent


def _unit(module: str) -> str | None:
    """The top-level package or module of ``fedtune.a.b`` ('a'), None outside fedtune."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fedtune" and len(parts) > 1 else None


def _runtime_imports(tree: ast.AST):
    """Imported module names, skipping ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield from _runtime_imports(other)
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names if node.module == "fedtune")
        yield from _runtime_imports(node)


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        src = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for name in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            dst = _unit(name)
            if dst and dst != src and dst != "__init__":
                graph.setdefault(src, set()).add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, …, a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_packages():
    cycle = find_cycle(package_graph())
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_engines_name_no_algorithm():
    """Engines read what a strategy declares; none names an algorithm."""
    import fedtune.algorithms

    names = fedtune.algorithms.ALGORITHMS.names()
    for package in ("engine", "flower"):
        for path in (ROOT / package).rglob("*.py"):
            if "deploy" in path.parts:  # deployment helpers: "local" there is Flower's local SuperLink
                continue
            text = path.read_text(encoding="utf-8")
            for name in names:
                assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path} names algorithm {name!r}"
