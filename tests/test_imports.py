"""Two app sessions can import the library at the same moment (Streamlit's fast reruns start a new script
thread while the last one still runs): nothing may come out half-initialized (see explorer.py)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPTS = [ROOT / "explorer.py", *sorted((ROOT / "pages").glob("*.py"))]

RACE = r"""
import ast, sys, threading
sys.path.insert(0, {root!r})
scripts = {scripts!r}
statements = []  # each app script's import statements, run as the script would run them
for path in scripts:
    tree = ast.parse(open(path).read())
    nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
             and getattr(n, "module", None) != "__future__"]
    statements.append(compile(ast.Module(nodes, []), path, "exec"))
statements.append(compile("import core; core.interpret.similarity.MIN_SILHOUETTE; core.rankings.agreement.compare", "core", "exec"))
statements = statements * 2  # two sessions on every page
barrier = threading.Barrier(len(statements))
errors = []

def run(code):
    barrier.wait()
    try:
        exec(code, {{}})
    except BaseException as exc:
        errors.append(f"{{code.co_filename}}: {{type(exc).__name__}}: {{exc}}")

threads = [threading.Thread(target=run, args=(code,)) for code in statements]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(errors) or "ok")
"""


def test_every_app_script_imports_at_once_from_many_threads_on_a_fresh_interpreter():
    assert len(SCRIPTS) >= 7
    for _ in range(3):  # the race depends on timing: a few fresh interpreters
        done = subprocess.run([sys.executable, "-c", RACE.format(root=str(ROOT), scripts=[str(s) for s in SCRIPTS])],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "ok", done.stdout


def test_every_app_script_imports_the_whole_library_first():
    """``from core.x import y`` (or ``import pandas``) as a thread's first import takes that module's lock
    while another thread holds the half-loaded ``core`` that needs it: the lock-order inversion behind the
    broken-for-everyone page. ``import core`` before anything else that is not already loaded waits instead."""
    for path in SCRIPTS:
        first = next(node for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))
                     and _top(node) not in sys.stdlib_module_names | {"__future__", "streamlit"})
        assert isinstance(first, ast.Import) and [a.name for a in first.names] == ["core"], \
            f"{path.relative_to(ROOT)}: the first import besides streamlit and the standard library must be `import core`"


def _top(node: ast.stmt) -> str:
    name = node.names[0].name if isinstance(node, ast.Import) else node.module or ""
    return name.split(".")[0]


def test_no_module_of_core_imports_its_own_package_at_run_time():
    """A submodule importing from the package it belongs to (``from . import Ranking`` in core/rankings/x.py)
    is an import cycle: it breaks when two threads import at once."""
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:  # module level only: `if TYPE_CHECKING:` never runs
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module is None:
                package = path.parents[node.level - 1]
                names = [a.name for a in node.names]
                if any(not (package / f"{n}.py").exists() and not (package / n).is_dir() for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}: from {'.' * node.level} import {', '.join(names)}")
    assert not offenders, offenders
