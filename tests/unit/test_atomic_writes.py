"""Every writer is interrupted half-way through its new file: the old file stays intact, no temp file is left.

The interruption is a ``KeyboardInterrupt`` raised by the serialiser after it wrote half of its bytes, as
Ctrl-C or a full disk would leave it. (Prepared data: ``test_prepare.py``'s interrupted-run tests; a real
SIGKILL mid-training: ``test_resume_kill.py``.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from digitcls.atomic import atomic_path
from digitcls.callbacks.checkpoint import save_checkpoint_atomically
from digitcls.data import cache
from digitcls.predict import write_csv_atomically
from digitcls.reports.plots import save_figure
from digitcls.runs import write_summary

OLD = b"the old, complete file\n"


def half_then_interrupt(path_of: Callable[..., object]) -> Callable[..., None]:
    """A stand-in serialiser: writes half a file to the path it was given, then is interrupted."""

    def write(*args, **kwargs) -> None:
        Path(str(path_of(*args, **kwargs))).write_bytes(b"half of the new")
        raise KeyboardInterrupt

    return write


def interrupt_summary(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "write_text", half_then_interrupt(lambda self, *a, **k: self))
    write_summary(target.parent, {"best_val_acc": 0.99}, name=target.name)


def interrupt_csv(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt(lambda self, path, *a, **k: path))
    write_csv_atomically(pd.DataFrame({"image_id": ["a.png"], "label": ["1"], "confidence": [0.9]}), target)


def interrupt_checkpoint(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = SimpleNamespace(is_global_zero=True, save_checkpoint=half_then_interrupt(lambda path, *a: path))
    save_checkpoint_atomically(trainer, target)  # type: ignore[arg-type]


def interrupt_figure(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = plt.figure()
    monkeypatch.setattr(fig, "savefig", half_then_interrupt(lambda path, *a, **k: path))
    save_figure(fig, target)


def interrupt_cache(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache file is out of date (unreadable here), so it is rebuilt and rewritten."""

    def stale(*args, **kwargs) -> None:
        raise ValueError("stale cache")

    decoded = (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.long))
    monkeypatch.setattr(cache, "cache_key", lambda samples, img_size: target.stem)
    monkeypatch.setattr(cache, "_decode_all", lambda split: decoded)
    monkeypatch.setattr(torch, "load", stale)
    monkeypatch.setattr(torch, "save", half_then_interrupt(lambda obj, path, *a, **k: path))
    cache.load_split(SimpleNamespace(samples=[], img_size=(2, 2)), target.parent)  # type: ignore[arg-type]


WRITERS = {
    "summary.json": interrupt_summary,
    "pre.csv": interrupt_csv,
    "last.ckpt": interrupt_checkpoint,
    "predictions.png": interrupt_figure,
    "data cache": interrupt_cache,
}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_interrupted_writer_keeps_the_old_file(
    writer: Callable[[Path, pytest.MonkeyPatch], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "file.pt"
    target.parent.mkdir()
    target.write_bytes(OLD)
    with pytest.raises(KeyboardInterrupt):
        writer(target, monkeypatch)
    monkeypatch.undo()
    assert target.read_bytes() == OLD
    assert [p.name for p in target.parent.iterdir()] == [target.name], "the temporary file was removed"


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_bytes(OLD)
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")  # same filesystem: rename is atomic
        tmp.write_text("new")
        assert target.read_bytes() == OLD  # nothing visible until the block ends
    assert target.read_text() == "new" and not tmp.exists()
