"""The house has floors: imports point down, never up, and never in a circle.

From the bottom: ``common`` (what every room shares), ``proto`` (the wire), then the two
serving rooms ``frontend`` and ``model_container`` (which never import each other),
``train``, ``deploy``, ``bench``, and the ``parm`` command line (``cli``) on top.  A
module may import its own package and any package on a lower floor.  Imports made only
for type checking (under ``if TYPE_CHECKING:``) count too: a circle of types is still a
circle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS: dict[str, int] = {
    "common": 0,
    "proto": 1,
    "frontend": 2,
    "model_container": 2,
    "train": 3,
    "deploy": 4,
    "bench": 5,
    "cli": 6,
}
GENERATED = {"proto/inference_pb2.py", "proto/inference_pb2_grpc.py"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.as_posix() in GENERATED:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """Project modules that ``module`` imports (absolute and relative), at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in FLOORS:
                # the longest prefix that is a module of ours
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    yield name


GRAPH = {module: sorted(set(_imports(module, path))) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = module.split(".")[0]
    upward = [
        target
        for target in GRAPH[module]
        if (other := target.split(".")[0]) != own
        and (FLOORS[other] > FLOORS[own] or (FLOORS[other] == FLOORS[own]))
    ]
    assert not upward, f"{module} imports from its own floor or above: {upward}"


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components over the module graph: all of size one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, []):
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
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_the_walk_sees_the_project() -> None:
    """A guard on the walker itself: known arrows are found."""
    assert "frontend.core" in GRAPH["frontend.model"]
    assert "common.codes" in GRAPH["train.parity"]
