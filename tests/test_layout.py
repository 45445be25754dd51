"""The package's house rules: imports point down the layers, no cycles, small files and functions.

A module's layer is its package's (or its own) rank below; an import of a module of a higher
rank, or of another module of the same rank outside its own package, is an arrow back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dyncdi_hpc"

# lowest first: a module may import modules of lower rank, and modules of its own package
RANKS = {
    "errors": 0,
    "identity": 0,
    "provenance": 0,
    "_lazy": 0,
    "physics": 1,
    "config": 2,
    "store": 3,
    "data": 4,
    "recon": 5,
    "analysis": 5,
    "merge": 6,
    "multi.sets": 6,
    "inputs": 7,
    "sweep": 7,
    "task": 7,
    "multi": 7,
    "report": 7,
    "schedule": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _rank(module: str) -> tuple[int, str]:
    """(rank, the package that owns it) of a module name relative to dyncdi_hpc."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in RANKS:
            return RANKS[key], key
    raise AssertionError(f"dyncdi_hpc.{module} has no layer in tests/test_layout.py RANKS")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules a module imports (relative to dyncdi_hpc), lazy imports included."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1] if node.level > 1 else here
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("dyncdi_hpc"):
                target = node.module.split(".")[1:]
            else:
                continue
            # `from . import x` imports the submodule x; `from .m import x` imports m
            names = [
                ".".join([*target, a.name])
                if ".".join([*target, a.name]) in known
                else ".".join(target)
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            names = [
                a.name.split(".", 1)[1] for a in node.names if a.name.startswith("dyncdi_hpc.")
            ]
        for name in names:
            if name in known and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def test_no_import_runs_back_up_the_layers():
    back = []
    for module, targets in _graph().items():
        rank, owner = _rank(module)
        for target in targets:
            t_rank, t_owner = _rank(target)
            same_package = t_owner == owner or target.startswith(owner + ".")
            if t_rank > rank or (t_rank == rank and not same_package):
                back.append(f"{module} -> {target}")
    assert not back, "imports back up the layers: " + ", ".join(sorted(back))


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_files_and_functions_stay_small(path: Path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path}: {len(lines)} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse("\n".join(lines)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"
