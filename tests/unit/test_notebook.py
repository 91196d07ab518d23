"""The exploration notebook: committed without outputs and valid; `digitcls.notebook` refuses to write over it
(it runs in a kernel in tests/e2e/test_notebook.py)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from digitcls.notebook import has_outputs, main
from tests.helpers import FIGURE_CELLS, NOTEBOOK


def test_committed_notebook_is_stripped_and_valid() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert not has_outputs(notebook), "strip the outputs: save it with no outputs and execution_count null"
    ids = {cell.get("id") for cell in notebook.cells}
    assert set(FIGURE_CELLS) <= ids, sorted(set(FIGURE_CELLS) - ids)


def test_refuses_to_write_over_the_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    assert main([str(path), "--output", str(path)]) == 1
    assert "stays stripped" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ipynb")]) == 2
