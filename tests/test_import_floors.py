"""The house's floors (../shared/STYLE.md): `reward_workers/` and `envs/` at the ground, `actors/` above them,
`learner/` above that, `system/` (CLI, launch, config assembly) on top. Nothing imports upward, and no two modules
import each other, directly or in a circle. Imports inside functions count: a lazy upward import is still an
upward dependency. Read from the source (ast), so the check needs nothing installed beyond the repo."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"reward_workers": 0, "envs": 0, "actors": 1, "learner": 2, "system": 3}


def module_files() -> dict[str, Path]:
    files = {}
    for top in FLOORS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files["vlmrl." + ".".join(parts)] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts as ``a.b.c`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def floor(module: str) -> int:
    return FLOORS[module.split(".")[1]]


def test_nothing_imports_upward():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if floor(b) > floor(a))
    assert not upward, "upward imports (move the shared code down a floor):\n" + "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module are import circles."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = import_graph()
    # a package's __init__ re-exporting its own modules is not a circle of code
    graph = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in graph.items()}
    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_an_upward_import_and_a_circle():
    graph = {"vlmrl.envs.a": {"vlmrl.learner.b"}, "vlmrl.learner.b": {"vlmrl.envs.a"}}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["vlmrl.envs.a", "vlmrl.learner.b"]]
    assert floor("vlmrl.learner.b") > floor("vlmrl.envs.a")
    # and it reads real files: the learner imports the reward workers' client somewhere
    assert any(b.startswith("vlmrl.reward_workers") for a, bs in import_graph().items() if a.startswith("vlmrl.learner")
               for b in bs)
