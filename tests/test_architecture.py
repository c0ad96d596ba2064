"""core/ in parts whose imports run one way (the map in core/__init__.py and the
README's "How lossopt is built"): every import is read from the source, those inside
functions and under TYPE_CHECKING included, since a deferred import is still a
dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"

# The floors of core/, lowest first. A module may import its own floor and those
# below; the parts of the top floor stand side by side and do not import each other.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("plugin mechanism", ("errors", "checks", "specs", "registry", "configs", "api")),
    (
        "one run",
        (
            "data",
            "_lightning_data",
            "adapter",
            "recipe",
            "module",
            "tracking",
            "plots",
            "train",
            "composition",
            "job_context",
            "store",
            "_kill_points",
            "_quiet",
            "_startup_heap",
            "mlflow_ui",
        ),
    ),
    ("sweeps", ("sweep",)),
    ("the train command", ("app",)),
    ("what the commands show", ("report", "conformance", "scaffold", "plugin_view")),
    ("the CLI", ("cli",)),
]
PARTS = {part: floor for floor, (_, parts) in enumerate(FLOORS) for part in parts}
SIDE_BY_SIDE = set(FLOORS[-2][1])


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The core modules ``path`` imports (``lossopt.core.X`` → ``X``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lossopt.core.sweep import job` imports the module sweep.job
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.startswith("lossopt.core."):
                target = name.removeprefix("lossopt.core.")
                if target in known:
                    found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    edges = {name: imports_of(path, known) for name, path in found.items()}
    # A package's __init__ is imported with each of its modules; that edge is Python's.
    return {
        name: {t for t in targets if not name.startswith(f"{t}.")}
        for name, targets in edges.items()
    }


def part_of(module: str) -> str:
    return module.split(".")[0]


def test_every_module_of_core_stands_in_a_part_on_a_floor():
    unplaced = sorted(m for m in modules() if m and part_of(m) not in PARTS)
    assert not unplaced, (
        f"{unplaced}: place each in a part (tests/test_architecture.py FLOORS) and say "
        "where it stands in core/__init__.py"
    )


def test_imports_run_down_the_floors_and_the_top_parts_stand_apart():
    wrong = []
    for source, targets in graph().items():
        if not source:
            continue
        for target in targets:
            mine, theirs = part_of(source), part_of(target)
            if PARTS[theirs] > PARTS[mine]:
                wrong.append(f"{source} → {target} (up, to {FLOORS[PARTS[theirs]][0]})")
            elif mine != theirs and mine in SIDE_BY_SIDE and theirs in SIDE_BY_SIDE:
                wrong.append(f"{source} → {target} (sideways, between the commands' parts)")
    assert not wrong, "imports against the floors:\n" + "\n".join(sorted(wrong))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_others():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", sorted(p.parent.name for p in CORE.glob("*/__init__.py")))
def test_each_part_says_what_it_owns_and_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((CORE / package / "__init__.py").read_text()))
    assert doc and "May import" in doc, f"core/{package}/__init__.py: say what it owns and imports"


def test_no_name_prefix_stands_in_for_a_folder():
    folders = {p.parent.name for p in CORE.glob("*/__init__.py")}
    prefixed = [
        p.name
        for p in CORE.glob("*.py")
        for folder in folders
        if p.stem.lstrip("_").startswith(f"{folder}_")
    ]
    assert not prefixed, f"{prefixed}: these belong in their part's folder"


def floors_of(edges: dict[str, set[str]]) -> int:
    """The longest chain of imports, in modules: how many floors the package stands on."""
    depth: dict[str, int] = {}

    def height(node: str) -> int:
        if node not in depth:
            depth[node] = 0  # cycles are caught by their own test
            depth[node] = 1 + max((height(t) for t in edges.get(node, ())), default=0)
        return depth[node]

    return max(height(n) for n in edges)


def test_the_package_stands_on_fewer_floors_than_before_its_parts():
    # 14 by this count (13 by the issue's) before core/ was cut into parts; 11 after.
    assert floors_of(graph()) <= 11
