"""The exploration notebook is committed without outputs and valid (it runs in a kernel in tests/e2e/test_notebook.py)."""

from __future__ import annotations

import nbformat

from tests.helpers import FIGURE_CELLS, NOTEBOOK


def test_committed_notebook_is_stripped_and_valid() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(cell.get("outputs") or cell.get("execution_count") is not None for cell in code), (
        "strip the outputs: save it with no outputs and execution_count null"
    )
    ids = {cell.get("id") for cell in notebook.cells}
    assert set(FIGURE_CELLS) <= ids, sorted(set(FIGURE_CELLS) - ids)
