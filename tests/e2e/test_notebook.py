"""The exploration notebook in a Jupyter kernel (a child process): it runs top to bottom headless on tiny
data, and a failing cell exits non-zero naming its error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from digitcls.notebook import has_outputs, main
from tests.helpers import FIGURE_CELLS, NOTEBOOK


def images_in(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.mark.timeout(400)
def test_notebook_runs_top_to_bottom_on_tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = NOTEBOOK.read_bytes()
    monkeypatch.setenv("DIGITCLS_NOTEBOOK_TINY", "1")
    monkeypatch.delenv("DIGITCLS_ROOT", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's scratch folder (tiny data, run) lands here
    # one intra-op thread: on a shared, busy CPU torch's 2-thread kernels were measured 10-100x slower
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    executed = tmp_path / "executed.ipynb"

    assert main([str(NOTEBOOK), "--output", str(executed), "--cwd", str(tmp_path), "--timeout", "300"]) == 0

    notebook = nbformat.read(executed, as_version=4)
    cells = {cell.get("id"): cell for cell in notebook.cells}
    errors = [
        (cell_id, out.get("ename"), out.get("evalue"))
        for cell_id, cell in cells.items()
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert all(cell.execution_count is not None for cell in notebook.cells if cell.cell_type == "code"), (
        "every code cell ran"
    )
    missing = [cell_id for cell_id in FIGURE_CELLS if images_in(cells[cell_id]) == 0]
    assert not missing, f"no picture in cells {missing}"
    assert images_in(cells["sample-grid"]) == 3  # one grid per split
    # the tiny run was trained in the scratch folder and found there like a real run
    text = "".join(str(out) for out in cells["tiny"].outputs)
    assert "tiny-run" in text and str(tmp_path) in text
    assert NOTEBOOK.read_bytes() == before, "the committed notebook must stay stripped"
    assert not (tmp_path / "outputs").exists(), "tiny mode writes nothing into the project folder"


def test_failing_cell_exits_non_zero_with_its_error(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("x = 1", id="fine"),
        nbformat.v4.new_code_cell("raise ValueError('the digit is upside down')", id="broken"),
        nbformat.v4.new_code_cell("never = True", id="after"),
    ]
    path = tmp_path / "bad.ipynb"
    nbformat.write(notebook, path)

    result = subprocess.run(
        [sys.executable, "-m", "digitcls.notebook", str(path), "--timeout", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    assert "ValueError: the digit is upside down" in result.stderr
    assert "cell 1 (id broken)" in result.stderr
    executed = nbformat.read(tmp_path / "outputs" / "notebooks" / "bad.ipynb", as_version=4)  # default place
    assert executed.cells[1].outputs[0]["ename"] == "ValueError"
    assert executed.cells[2].execution_count is None
    assert not has_outputs(nbformat.read(path, as_version=4))
