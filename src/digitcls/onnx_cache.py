"""The ONNX export `predict` runs a checkpoint through: made once, beside the checkpoint, remade when it changes.

``<name>.ckpt`` -> ``<name>.ckpt.onnx`` (not ``<name>.onnx``, which is `make export`'s file). The export
records which checkpoint it was made from in its metadata: the checkpoint's size and modification time
(nanoseconds), plus :data:`FORMAT` for the export code itself. Any difference, e.g. ``last.ckpt`` rewritten
by a later epoch, and the export is made again. Size and time rather than a hash: reading a large
checkpoint to hash it would cost more than the start-up this cache saves.
"""

from __future__ import annotations

import json
from pathlib import Path

SOURCE_KEY = "digitcls_source_checkpoint"
FORMAT = 1  # raise when the exported graph changes (digitcls.export.Inference): older caches are remade


def cache_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".onnx")


def source_key(checkpoint: Path) -> str:
    """What identifies this version of ``checkpoint`` (a missing file is reported by the export)."""
    try:
        stat = checkpoint.stat()
    except OSError:
        return ""
    return json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": FORMAT})


def export(checkpoint: Path, cache: Path, key: str) -> Path:
    """Export ``checkpoint`` to ``cache`` (atomically) with ``key`` in its metadata; torch and Lightning
    are imported here, once per checkpoint version."""
    from digitcls.export import export_onnx
    from digitcls.model.module import load_classifier

    return export_onnx(load_classifier(checkpoint), cache, extra_metadata={SOURCE_KEY: key})
