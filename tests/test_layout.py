"""The layout of core/ (README, "Code map"): rooms stacked in floors, imports only downwards, no cycles,
short modules; and the command line's help, byte for byte what it was before the rooms.

The imports are read with the standard library's ``ast`` (every import statement, also those inside
functions and under TYPE_CHECKING: a lazy import is still a dependency)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# room -> floor: a room may import only rooms on a lower floor (and itself); rooms on one floor stay apart
FLOORS = {"network": 0, "data": 0, "engine": 1, "rankings": 2, "interpret": 3, "pruning": 4, "cli": 5}
FACE = 6  # core/__init__.py, core/__main__.py, core/_flat_layout.py: the package's face, above every room
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``path`` imports (``from . import x`` of a submodule counts as x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from x import y``: the submodule x.y where there is one, else the module x
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(package: str) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports(path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, as the modules on it (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 and parts[1] in FLOORS else FACE


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else "core"


def downward_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        for target in sorted(targets):
            if room(target) == "core":
                if floor(source) != FACE:
                    bad.append(f"{source} -> {target} (a room imports the package's face)")
            elif room(target) != room(source) and floor(target) >= floor(source):
                bad.append(f"{source} (floor {floor(source)}) -> {target} (floor {floor(target)})")
    return bad


def test_every_module_of_core_is_in_a_room():
    loose = [name for name in modules("core") if room(name) == "core"
             and name not in ("core", "core.__main__", "core._flat_layout")]
    assert not loose, f"modules outside the rooms: {loose}; put each in the room that says what it holds"


def test_core_has_no_import_cycles():
    assert cycles(graph("core")) == []


def test_ui_has_no_import_cycles():
    assert cycles(graph("ui")) == []


def test_rooms_import_only_downwards():
    assert downward_violations(graph("core")) == []


def test_the_checks_catch_what_they_are_for():
    """The walk sees a lazy import inside a function, a cycle and an upward arrow on made-up graphs."""
    known = modules("core")
    lazy = imports(ROOT / "core/interpret/similarity.py", known)
    assert "core.rankings" in lazy  # ``from ..rankings import rank`` inside cluster_filters
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert downward_violations({"core.engine.masking": {"core.pruning.curves"}}) == [
        "core.engine.masking (floor 1) -> core.pruning.curves (floor 4)"]
    assert downward_violations({"core.network.models": {"core.data.split"}})  # one floor, two rooms: apart
    assert downward_violations({"core.rankings.shapley": {"core"}})  # a room never imports the face
    assert downward_violations({"core.pruning.plans": {"core.rankings", "core.engine.masking"}}) == []


def test_modules_stay_short():
    long = {name: n for name, path in modules("core").items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}; split each along a real seam"


def test_flat_layout_paths_still_import():
    """Notebooks written against the flat layout (core.curves, core.distributed, ...) keep working."""
    code = ("import core\nfrom core.curves import curve_set, layer_curve, summarize, curves_figure, network_curves\n"
            "from core.distributed import RayPool\nfrom core.compress import plan_from_widths\n"
            "import core.similarity\nassert core.prune is core.pruning.plans.prune\n"
            "assert core.curves.layer_curve is core.pruning.curves.layer_curve\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_cli_help_is_byte_identical_to_the_snapshot():
    """``python -m core [command] --help`` for every command, at 100 columns, as committed: the rooms (issue 18)
    changed none of it; a change that adds or edits a flag regenerates the snapshot in the same commit."""
    env = {**os.environ, "COLUMNS": "100"}
    parts = []
    for command in ["", "info", "evaluate", "train", "am", "clusters", "rank", "curve", "compress", "by-hand", "predict",
                    "interactions"]:
        args = [sys.executable, "-m", "core", *([command] if command else []), "--help"]
        out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        parts.append(f"=== python -m core {command} --help\n" + out.stdout + out.stderr)
    expected = (ROOT / "tests/snapshots/cli_help.txt").read_text()
    assert "".join(parts) == expected


if __name__ == "__main__":  # pragma: no cover - prints the graph for a reader
    for name, targets in sorted(graph("core").items()):
        print(name, "->", ", ".join(sorted(targets)) or "-")
    pytest.main([__file__])
