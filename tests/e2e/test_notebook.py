"""The exploration notebook executed as `make notebook` does (nbclient's `jupyter execute`, a kernel in a child
process): it runs top to bottom headless on tiny data, and a failing cell exits non-zero naming its error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.helpers import FIGURE_CELLS, NOTEBOOK


def execute(notebook: Path, output_stem: str, root: Path) -> subprocess.CompletedProcess:
    """The Makefile's `notebook` command; the kernel works in the notebook's folder, on DIGITCLS_ROOT's data."""
    return subprocess.run(
        [sys.executable, "-m", "jupyter", "execute", "--timeout=300", str(notebook), f"--output={output_stem}"],
        env={**os.environ, "DIGITCLS_ROOT": str(root)}, capture_output=True, text=True, timeout=380,
    )


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
    copy = Path(shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name))

    result = execute(copy, "executed", root=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    notebook = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
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

    result = execute(path, "executed", root=tmp_path)
    assert result.returncode == 1
    assert "ValueError" in result.stderr and "the digit is upside down" in result.stderr
    assert not (tmp_path / "executed.ipynb").exists()  # nbclient writes the executed copy only when every cell ran
