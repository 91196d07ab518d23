"""Pictures a user looks at: prediction grid, confusion matrix, worst mistakes (matplotlib, no screen).

Class names and paths are drawn as plain text (``parse_math=False``): a `$` in a folder name is not mathtext,
which would fail the whole figure on a name like `$\\x$`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI, servers, notebooks' own backend is unaffected once imported there
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitcls.atomic import atomic_path, writer


@writer
def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a PNG."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return Path(path)


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    wrong: Sequence[bool],
    path: str | Path,
    suptitle: str = "",
) -> Path:
    """Images (H x W [x 3] uint8) in a square-ish grid, each titled; wrong ones titled in red.

    One axes for the whole grid, each image placed by its extent: a subplot per image made `make predict`'s
    32-image picture cost 1.6 s, a third of labelling 10,000 images."""
    count = max(1, len(images))
    cols = min(8, count)
    rows = (count + cols - 1) // cols
    fig = plt.figure(figsize=(1.6 * cols, 1.8 * rows))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for index, (image, title, is_wrong) in enumerate(zip(images, titles, wrong, strict=False)):
        row, col = divmod(index, cols)  # a cell is 1 x 1 in data units: title on top, image below
        extent = (col + 0.1, col + 0.9, row + 0.98, row + 0.3)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=extent, interpolation="nearest")
        colour = "#d62728" if is_wrong else "#222222"  # wrong: red
        ax.text(col + 0.5, row + 0.27, title, ha="center", va="bottom", fontsize=8, color=colour, parse_math=False)
    ax.set(xlim=(0, cols), ylim=(rows, 0), aspect="auto")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1.02, parse_math=False)
    return save_figure(fig, path)


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Counts, true classes down, predicted across; the diagonal is what we got right."""
    size = max(4.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=90 if len(class_names) > 12 else 0, parse_math=False)
    ax.set_yticks(range(len(class_names)), class_names, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = np.log1p(matrix).max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if np.log1p(count) > threshold else "black"
            ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=7, color=colour)
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"confusion matrix — accuracy {accuracy:.4%} on {int(matrix.sum())} images")
    return save_figure(fig, path)
