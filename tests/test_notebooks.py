"""The notebooks in notebooks/ execute top to bottom (so they can never rot) and are stored without outputs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["tour.ipynb", "interactive.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        f"{name} is committed with outputs: clear them before committing"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, monkeypatch):
    """Runs every cell in a fresh kernel (the test session's cache folder, from NRE_CACHE_DIR);
    a cell that raises fails the test with its traceback. One torch thread in the kernel: on a loaded
    2-core CI machine, more threads made the same work 2-6x slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = {mime for o in outputs if o.output_type in ("display_data", "execute_result") for mime in o.data}
    if name == "interactive.ipynb":
        assert "application/vnd.jupyter.widget-view+json" in shown  # the widgets themselves
    else:
        assert "image/png" in shown  # contact sheet, cluster rows
        assert "application/vnd.plotly.v1+json" in shown or "text/html" in shown  # plotly figures
