"""`python -m digitcls.notebook notebooks/01_explore_mnist.ipynb`: execute a notebook headless, top to bottom.

The executed copy goes to ``outputs/notebooks/`` (the committed notebook stays stripped of outputs); a
failing cell ends the run with exit status 1 and that cell's error. The kernel is always the Python
running this command (a kernelspec written to a temp folder), whatever ``python3`` kernel Jupyter knows.

Also the tiny generated dataset the exploration notebook trains on when there is no data or run yet, so the
notebook itself shows ideas, not boilerplate.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from digitcls import atomic
from digitcls.atomic import atomic_path, writer

EXECUTED_DIR = Path("outputs/notebooks")
DEFAULT_TIMEOUT_S = 600  # per cell
KERNEL_NAME = "digitcls-python"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # IPython colours its tracebacks
TINY_SPLITS = {"train": 40, "val": 10, "test": 10}  # images per class: 400 / 100 / 100


# --- tiny stand-ins for a learner who has no data, run or sweep yet ---------------------------------


def draw_digit(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A size x size uint8 MNIST-like digit (white on black), randomly shifted, scaled, thickened, noised."""
    image = np.zeros((size, size), np.uint8)
    scale = rng.uniform(0.7, 0.95)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    font = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)[int(rng.integers(2))]
    cv2.putText(image, str(label), (7 + dx, 22 + dy), font, scale, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
    noisy = image + rng.normal(0, 10, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def make_tiny_dataset(root: str | Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """``root/{train,val,test}/<digit>/<n>.png`` like ``make data`` writes, but a few hundred drawn digits."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (per_class or TINY_SPLITS).items():
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                png = cv2.imencode(".png", draw_digit(digit, rng))[1].tobytes()
                atomic.write_bytes(folder / f"{n}.png", png, durable=False)  # drawn again in a second
    return root


# --- headless execution ---------------------------------------------------------------------------


class NotebookFailed(RuntimeError):
    """A cell raised: the message names the cell and carries its error."""


def has_outputs(notebook) -> bool:
    """True when any code cell keeps outputs or an execution count (what `stripped` means in git)."""
    return any(
        cell.get("outputs") or cell.get("execution_count") is not None
        for cell in notebook.cells
        if cell.cell_type == "code"
    )


def default_output(notebook_path: Path) -> Path:
    return EXECUTED_DIR / notebook_path.name


def _kernel_manager(spec_root: Path):
    """A kernel manager whose kernel is this very interpreter (so it imports the same digitcls)."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    write_kernel_spec(spec_root / KERNEL_NAME)
    specs = KernelSpecManager(kernel_dirs=[str(spec_root)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute(
    notebook_path: str | Path,
    output: str | Path | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    cwd: str | Path | None = None,
):
    """Run every cell in a fresh kernel working in ``cwd`` (default: the notebook's folder, as Jupyter does),
    write the executed copy to ``output`` (also when a cell fails) and return it; raise NotebookFailed.

    The kernel gets ``DIGITCLS_ROOT`` = the folder this runs from (unless already set): like every digitcls
    command, the notebook then works on that folder's data/, outputs/ and multirun/."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook_path = Path(notebook_path)
    output = Path(output) if output else default_output(notebook_path)
    if output.resolve() == notebook_path.resolve():
        raise NotebookFailed(f"--output {output} is the notebook itself: its committed copy stays stripped.")
    notebook = nbformat.read(notebook_path, as_version=4)
    workdir = Path(cwd) if cwd else notebook_path.resolve().parent
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="digitcls-kernel-") as spec_root:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            km=_kernel_manager(Path(spec_root)),
            resources={"metadata": {"path": str(workdir)}},
        )
        try:
            client.execute(
                env={**os.environ, "DIGITCLS_ROOT": os.environ.get("DIGITCLS_ROOT") or os.getcwd()}
            )
        except CellExecutionError as error:
            failure = f"{_failing_cell(notebook)}:\n{error}"
        except (CellTimeoutError, DeadKernelError) as error:
            failure = f"{_failing_cell(notebook)}: {type(error).__name__}: {error}"
    write_notebook(notebook, output)
    if failure:
        raise NotebookFailed(f"{notebook_path} failed in {failure}\n(executed copy: {output})")
    return notebook


@writer
def write_notebook(notebook, path: Path) -> Path:
    import nbformat

    with atomic_path(path) as tmp:
        nbformat.write(notebook, tmp)
    return path


def _failing_cell(notebook) -> str:
    """'cell N (id X)' of the last code cell that ran: the one that stopped the run."""
    ran = [
        (index, cell)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("execution_count") is not None or cell.get("outputs"))
    ]
    for index, cell in reversed(ran):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return f"cell {index} (id {cell.get('id', '?')})"
    return f"cell {ran[-1][0]} (id {ran[-1][1].get('id', '?')})" if ran else "the first cell"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m digitcls.notebook", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path, help="e.g. notebooks/01_explore_mnist.ipynb")
    parser.add_argument("--output", type=Path, help=f"executed copy (default: {EXECUTED_DIR}/<name>.ipynb)")
    parser.add_argument(
        "--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds per cell (default 600)"
    )
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.notebook.is_file():
        print(f"error: notebook {args.notebook} does not exist.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    output = args.output or default_output(args.notebook)
    try:
        execute(args.notebook, output, timeout=args.timeout, cwd=args.cwd)
    except NotebookFailed as error:
        message = str(error) if sys.stderr.isatty() else ANSI_ESCAPE.sub("", str(error))
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} in {time.perf_counter() - started:.0f} s -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
