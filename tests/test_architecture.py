"""Issue 22: the import graph of hf_bridges has no cycle, and nothing decides what to import from ``sys.argv``.

Every import counts, at module level or inside a function (a lazy import is still a dependency), except the
guarded delegations of the remote-code set into the installed package (``try: from hf_bridges import building``
in ``hf_bridges/modeling``): the files next to the weights reach the package that way only when it is installed,
and the package itself imports them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_bridges"


def _modules() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    guarded = set()
    if name.startswith("hf_bridges.modeling"):
        guarded = {id(node) for t in ast.walk(tree) if isinstance(t, ast.Try) for node in ast.walk(t)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = ".".join([*parts[: len(parts) - node.level + 1], node.module or ""]).strip(".")
            base = base if node.level else node.module or ""
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {target for target in found if target in modules and target != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "hf_bridges.modeling.modeling_bridge" in graph["hf_bridges.building.text"]  # the graph sees imports
    assert _cycles(graph) == []


def test_nothing_reads_sys_argv_to_decide_what_to_import():
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if "sys.argv" in p.read_text() and p.name != "cli.py"]
    assert offenders == []
