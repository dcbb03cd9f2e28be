"""The code's shape: imports one way (srcore <- pipelines <- jobs), no import cycle, even through imports
hidden in function bodies, and no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("srcore", "pipelines")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, the names taken from it, line) for every import in the file, wherever it sits (in
    function bodies too), but for those under ``if TYPE_CHECKING``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for inner in ast.walk(node)}  # annotations only: never imported at run time
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            names = [alias.name for alias in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found.append((target, [n for n in names if f"{target}.{n}" not in known], node.lineno))
            found += [(sub, [], node.lineno) for sub in submodules]
    return found


def owner(target: str, known: set[str]) -> str | None:
    """The project module an import resolves to (``srcore.archs.registry``), or None for other packages."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for target, _, _ in imports_of(name, path, known):
            module = owner(target, known)
            # importing a.b.c runs a/__init__ and a/b/__init__ first; a module's own packages are already loading
            while module:
                if module != name and not name.startswith(module + "."):
                    graph[name].add(module)
                module = owner(module.rpartition(".")[0], known) if "." in module else None
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_srcore_or_pipelines():
    graph = import_graph()
    assert len(graph) > 60  # the walk found the packages
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_go_one_way_and_private_names_stay_in_their_module():
    found = modules()
    known = set(found)
    wrong, private = [], []
    for name, path in found.items():
        for target, names, line in imports_of(name, path, known):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = target.partition(".")[0]
            if name.startswith("srcore") and top in ("ray", "pipelines", "jobs"):
                wrong.append(f"{where} imports {target}")
            if name.startswith("pipelines") and top == "jobs":
                wrong.append(f"{where} imports {target}")
            module = owner(target, known)
            if module and module != name:
                private += [f"{where} takes {n} from {module}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert wrong == []
    assert private == []
