"""Where runs live and how later commands find them (newest run's best checkpoint, last.ckpt to resume)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from digitcls import atomic
from digitcls.errors import CheckpointError, ConfigError

RUN_ROOTS = (Path("outputs"), Path("multirun"))
SUMMARY_FILE = "summary.json"


def newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime, default=None)


def newest_best_checkpoint(roots: tuple[Path, ...] = RUN_ROOTS) -> Path:
    """The best checkpoint recorded by the most recent finished training run."""
    summaries = [s for root in roots if root.is_dir() for s in root.rglob(SUMMARY_FILE)]
    for summary in sorted(summaries, key=lambda p: p.stat().st_mtime, reverse=True):
        best = json.loads(summary.read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best)
    raise CheckpointError(
        f"no trained model found under {', '.join(str(r) + '/' for r in roots)}: train one with `make train` "
        "(python -m digitcls.train +experiment=mbv3), or choose a checkpoint with MODEL=<file.ckpt> "
        "(model_path=<file.ckpt>)."
    )


def resume_checkpoint(ckpt_path: str | None, resume: bool, output_dir: Path) -> Path | None:
    """The checkpoint to continue from: ``ckpt_path``, else with ``resume=true`` this run folder's
    ``last.ckpt`` or, failing that, the newest ``last.ckpt`` under ``outputs/``. Its content is checked by
    :func:`digitcls.inputs.check_train_inputs` (tensors and plain values only) before Lightning reads it."""
    if ckpt_path:
        path = Path(ckpt_path)
        if not path.is_file():
            raise CheckpointError(f"ckpt_path: {path} does not exist; point it at a last.ckpt or drop it.")
        return path
    if not resume:
        return None
    own = output_dir / "checkpoints" / "last.ckpt"
    if own.is_file():
        return own
    found = newest(list(RUN_ROOTS[0].rglob("last.ckpt")))
    if found is None:
        raise CheckpointError(
            "resume=true: no last.ckpt under outputs/ to continue from. Start a fresh run without resume, "
            "or pass ckpt_path=<file>."
        )
    return found


def writable_folder(folder: str | Path, key: str) -> Path:
    """Create ``folder`` and prove a file can be written in it, before any long work that would end
    in a failed write; the error names the config ``key`` that chose the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"{key}: cannot write to {folder} ({error.strerror or error}). Choose a folder you can write to "
            f"with {key}=<path>."
        ) from None
    return folder


def write_summary(output_dir: Path, summary: dict, name: str = SUMMARY_FILE) -> Path:
    """Atomically write a JSON summary (by default the run summary that later commands read)."""
    return atomic.write_json(output_dir / name, summary)
