"""The package's shape: data flows one way (recipe → session → locks → keys → layers →
image → outputs → checks), so no module imports itself back through others, and the
sources never reach up into what drives them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ociforge"
# What a source may not import: the orchestration above it, the CLI, the registry.
ABOVE_SOURCES = ("ociforge.session", "ociforge.layers", "ociforge.assemble",
                 "ociforge.outputs", "ociforge.recipes", "ociforge.catalog",
                 "ociforge.checks", "ociforge.sbom", "ociforge.cli", "ociforge.registry")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the package's modules it imports (anywhere in the file, lazy imports
    and `TYPE_CHECKING` blocks included: a cycle there is still a knot to untie)."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by depth-first search (empty when the graph is a DAG)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "ociforge.session" in graph and len(graph) > 50
    assert cycles(graph) == []


def test_sources_do_not_import_what_drives_them() -> None:
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items()
                 if m.startswith("ociforge.sources") for t in targets
                 if t.startswith(ABOVE_SOURCES))
    assert bad == []


def test_the_checker_sees_cycles_and_lazy_imports(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # A function-level import counts as an edge (the old builder-bases circle was lazy).
    assert "ociforge.assemble" in import_graph()["ociforge.session"]
