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


def _public_functions_without_annotations() -> list[str]:
    """Module-level functions and methods of public classes, not starting with ``_`` (``__init__`` / ``__call__``
    included), whose arguments or return lack a type hint. The ``evaluate`` metric scripts are left as evaluate's."""
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if "metrics" in path.parts[len(PACKAGE.parts) :]:
            continue

        def visit(node: ast.AST, public: bool, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, public and not child.name.startswith("_"), path)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and public:
                    if child.name.startswith("_") and child.name not in ("__init__", "__call__"):
                        continue
                    a = child.args
                    args = [x for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")]
                    args += [x for x in (a.vararg, a.kwarg) if x is not None]
                    if any(x.annotation is None for x in args) or (child.returns is None and child.name != "__init__"):
                        missing.append(f"{path.relative_to(PACKAGE.parent)}:{child.lineno} {child.name}")

        visit(ast.parse(path.read_text()), True)
    return missing


def test_public_functions_are_annotated():
    assert _public_functions_without_annotations() == []
