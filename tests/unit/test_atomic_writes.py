"""Every file digitcls writes goes through ``digitcls.atomic``, and no interruption leaves half a file.

The writers under test come from the registry in the code (``digitcls.atomic.WRITERS``, filled by the
``@atomic.writer`` decorator), not from a list kept here: a writer registered without a case below fails
:func:`test_every_registered_writer_has_an_interruption_case`, and a file write in ``src/digitcls`` outside
a registered writer's ``atomic_path`` block fails :func:`test_no_file_is_written_outside_a_registered_writer`
naming the place. (Prepared data: ``test_prepare.py``'s interrupted-run tests; a real SIGKILL mid-training:
``test_resume_kill.py``.)
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

import digitcls
from digitcls import atomic, checkpoints, export
from digitcls.atomic import atomic_path
from digitcls.callbacks import checkpoint
from digitcls.data import cache
from digitcls.model.module import DigitClassifier
from digitcls.reports import plots

for _module in pkgutil.walk_packages(digitcls.__path__, "digitcls."):
    importlib.import_module(_module.name)  # each module registers its writers on import

OLD = b"the old, complete file\n"
SRC = Path(digitcls.__file__).parent


def _tiny_classifier() -> DigitClassifier:
    """A classifier whose backbone is one layer: tracing MobileNetV3 costs ~10 s a format on a busy CPU, and
    the write, not the graph, is under test here (real exports: test_evaluate_export.py)."""
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["0", "1"], img_size=(32, 32))
    model.backbone = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    return model.eval()


# registered writer -> how to call it on a target path
CASES: dict[str, Callable[[Path], object]] = {
    "digitcls.atomic.write_bytes": lambda target: atomic.write_bytes(target, b"new"),
    "digitcls.reports.plots.save_figure": lambda target: plots.save_figure(plt.figure(), target),
    "digitcls.atomic.write_csv_atomically": lambda target: atomic.write_csv_atomically(
        pd.DataFrame({"image_id": ["a.png"], "label": ["1"], "confidence": [0.9]}), target),
    "digitcls.callbacks.checkpoint.AtomicCheckpointIO.save_checkpoint": lambda target: (
        checkpoint.AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, target)),
    "digitcls.data.cache.save_split": lambda target: cache.save_split(
        target, torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)),
    "digitcls.export.export_onnx": lambda target: export.export_onnx(_tiny_classifier(), target),
    "digitcls.export.export_torchscript": lambda target: export.export_torchscript(_tiny_classifier(), target),
    "digitcls.checkpoints.save_plain_checkpoint": lambda target: checkpoints.save_plain_checkpoint(
        {"state_dict": {"w": torch.zeros(1)}}, target),
}


def test_every_registered_writer_has_an_interruption_case() -> None:
    assert atomic.WRITERS, "no writer registered: the registry is not filled on import"
    assert set(atomic.WRITERS) - set(CASES) == set(), "registered writers without a case in CASES"
    assert set(CASES) - set(atomic.WRITERS) == set(), "CASES name writers that are not registered"


@pytest.mark.parametrize("name", sorted(atomic.WRITERS))
def test_interrupted_writer_keeps_the_old_file(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer is interrupted (Ctrl-C) after its serialiser wrote the new content, before the rename."""
    if name not in CASES:
        pytest.fail(f"{name} is registered in digitcls.atomic.WRITERS but has no case in CASES")
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(OLD)
    written_first: list[int] = []

    def interrupted(tmp: Path, path: Path, durable: bool) -> None:
        written_first.append(tmp.stat().st_size)  # the serialiser wrote into the temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CASES[name](target)
    monkeypatch.undo()
    assert written_first and written_first[0] > 0, "the writer wrote nothing through atomic_path"
    assert target.read_bytes() == OLD
    assert [p.name for p in target.parent.iterdir()] == [target.name], "the temporary file was removed"


@pytest.mark.parametrize("name", sorted(atomic.WRITERS))
def test_a_registered_writer_writes_its_file(name: str, tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    CASES[name](target)
    assert target.read_bytes() != OLD and target.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_bytes(OLD)
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")  # same filesystem: rename is atomic
        tmp.write_text("new")
        assert target.read_bytes() == OLD  # nothing visible until the block ends
    assert target.read_text() == "new" and not tmp.exists()


# --------------------------------------------------------------------------- no write outside the registry

# method names that write a file, whatever object they are called on
WRITE_METHODS = {"write_text", "write_bytes", "to_csv", "to_json", "to_parquet", "savefig", "save_checkpoint",
                 "imwrite", "dump", "write", "save", "copyfile", "copy2", "move"}
# `shutil.copy` writes a file; `array.copy()` / `dict.copy()` do not
# receivers whose `.write`/`.save`/`.dump` is not a file write (`atomic`: the registered writers themselves;
# `os.write`: a file descriptor, stderr in the Ctrl-C handler)
NOT_FILES = {"self", "handle", "table", "stream", "sys", "os", "log", "logger", "hasher", "digest", "atomic"}

# Writes that are atomic at the folder level and reviewed by hand: `make data` writes each split's PNGs into
# a temporary folder that `prepare_dataset` renames over the split as a whole; the lock file holds no data.
REVIEWED = {
    ("data/prepare.py", "_write_pngs"): "PNGs of a split written in a temporary folder, swapped in whole",
    ("data/prepare.py", "_exclusive"): "an empty lock file, never read",
    ("callbacks/checkpoint.py", "on_train_epoch_end"): "last.ckpt through the AtomicCheckpointIO that BestCheckpoint installs",
    ("callbacks/interrupt.py", "on_exception"): "last.ckpt on Ctrl-C, through the same AtomicCheckpointIO",
}


def _is_write(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "open" and _opens_for_writing(call, mode_index=1)
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "open":
        return _opens_for_writing(call, mode_index=0)
    receiver = func.value.id if isinstance(func.value, ast.Name) else None
    if func.attr == "copy":
        return receiver == "shutil"
    if func.attr in ("to_csv", "to_json") and not call.args and "path_or_buf" not in {k.arg for k in call.keywords}:
        return False  # no path: pandas returns the text
    return func.attr in WRITE_METHODS and receiver not in NOT_FILES


def _opens_for_writing(call: ast.Call, mode_index: int) -> bool:
    modes = [kw.value for kw in call.keywords if kw.arg == "mode"] + call.args[mode_index : mode_index + 1]
    return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
               for m in modes)


def _atomic_names(node: ast.With) -> set[str]:
    """The ``as`` names bound to ``atomic_path(...)`` by this ``with``."""
    return {
        item.optional_vars.id
        for item in node.items
        if isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "id", "") == "atomic_path"
        and isinstance(item.optional_vars, ast.Name)
    }


def _is_registered(function: ast.FunctionDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "writer") or (isinstance(d, ast.Attribute) and d.attr == "writer")
        for d in function.decorator_list
    )


def _writes_outside_registry() -> Iterator[str]:
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_write(n)):
            ancestors = []
            node: ast.AST = call
            while node in parents:
                node = parents[node]
                ancestors.append(node)
            function = next((a for a in ancestors if isinstance(a, ast.FunctionDef)), None)
            name = function.name if function else "<module>"
            if (relative, name) in REVIEWED:
                continue
            tmp_names = set().union(*(_atomic_names(a) for a in ancestors if isinstance(a, ast.With)))
            uses_tmp = any(isinstance(n, ast.Name) and n.id in tmp_names for n in ast.walk(call))
            if not (uses_tmp and function is not None and _is_registered(function)):
                yield f"src/digitcls/{relative}:{call.lineno} in {name}(): {ast.unparse(call)[:80]}"


def test_no_file_is_written_outside_a_registered_writer() -> None:
    """Every write call in src/digitcls writes the temporary path of an ``atomic_path`` block inside a function
    registered with ``@atomic.writer`` (or is one of the REVIEWED folder-level writes)."""
    offenders = list(_writes_outside_registry())
    assert not offenders, (
        "file writes that bypass digitcls.atomic (write to `atomic_path`'s temporary path inside a function "
        "decorated with @atomic.writer, and add a case to CASES):\n" + "\n".join(offenders)
    )


def test_the_scan_finds_a_plain_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan itself: an in-place write in a module is reported with its file and line."""
    fake_src = tmp_path / "digitcls"
    fake_src.mkdir()
    (fake_src / "report.py").write_text("def save(frame, path):\n    frame.to_csv(path)\n")
    monkeypatch.setitem(globals(), "SRC", fake_src)
    assert list(_writes_outside_registry()) == ["src/digitcls/report.py:2 in save(): frame.to_csv(path)"]
