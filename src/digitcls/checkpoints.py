"""Reading checkpoint and weights files without running code (docs/troubleshooting.md, "Security").

Every ``torch.load`` of a file digitcls did not just write itself goes through :func:`read_checkpoint`
(``weights_only=True``: a file from elsewhere can hold wrong weights but cannot run code); digitcls's own
checkpoints need no extra allowed type. ``python -m digitcls.checkpoints <in> <out>`` converts a trusted file.
"""

from __future__ import annotations

import argparse
import enum
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from digitcls.atomic import atomic_path, writer
from digitcls.cli import friendly_errors
from digitcls.errors import CheckpointError
from digitcls.private_apis import STATE_DICT_METADATA

CONVERT_COMMAND = "python -m digitcls.checkpoints"


def read_checkpoint(
    path: str | Path, key: str, hint: str = "", map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, which must give a dict; every failure is a
    :class:`CheckpointError` naming the config ``key`` that chose the file, ending with ``hint`` (how to
    get a good file). ``mmap``: map the tensors instead of reading them (a cheap check of a large file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: {path} does not exist. {hint}".strip())
    try:
        # weights_only passed explicitly: the TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD variable cannot turn it off
        # mmap needs torch's zip format; an older (legacy) file is read whole
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as error:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if culprit:
            raise CheckpointError(
                f"{key}: {path} holds Python objects besides tensors and plain values ({culprit.group(1)}). "
                "digitcls never unpickles those, since unpickling can run any code. If you trust the file, "
                f"convert it once with `{CONVERT_COMMAND} {path} <converted.ckpt>` (it loads the file with "
                "weights_only=False and keeps only tensors and plain values: state_dict, hyperparameters, "
                f"training state), then point {key} at the converted file."
            ) from None
        first_line = next(iter(str(error).splitlines()), "")  # truncated zip, not a torch file at all, ...
        raise CheckpointError(
            f"{key}: {path} could not be read by torch.load ({type(error).__name__}: {first_line}). "
            f"It may be truncated or not a PyTorch file. {hint}".strip()
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{key}: {path} holds a {type(obj).__name__}, not a checkpoint (a dict with a state_dict). {hint}".strip()
        )
    return obj  # type: ignore[return-value]


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with every value a ``weights_only`` load accepts: tensors, plain containers, numbers,
    strings. Modules become their state dict, configs and paths plain values; anything else is an error."""
    if isinstance(obj, torch.Tensor | torch.device | torch.dtype | str | bytes | int | float | complex | None):
        return obj
    if isinstance(obj, torch.nn.Module):
        return to_plain(obj.state_dict(), where)
    if isinstance(obj, DictConfig | ListConfig):
        return to_plain(OmegaConf.to_container(obj, resolve=True), where)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value, where)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, Mapping):
        # an OrderedDict state dict keeps its type and _metadata (BatchNorm version info for load_state_dict)
        plain = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for name, value in obj.items():
            plain[to_plain(name, where)] = to_plain(value, f"{where}[{name!r}]")
        if hasattr(obj, STATE_DICT_METADATA):
            setattr(plain, STATE_DICT_METADATA, to_plain(getattr(obj, STATE_DICT_METADATA), where))
        return plain
    if isinstance(obj, list | tuple | set | frozenset):
        items = [to_plain(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, argparse.Namespace):  # hyperparameters saved by older argparse scripts
        return to_plain(vars(obj), where)
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which has no plain equivalent; "
        "re-save the checkpoint's state_dict and hyperparameters yourself."
    )


def convert_trusted(source: str | Path, target: str | Path) -> Path:
    """Load ``source`` trusting it (``weights_only=False``: it may run code), keep tensors and plain values
    only, write ``target`` atomically and prove it reads back with :func:`read_checkpoint`."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise CheckpointError(f"{source} does not exist.")
    if source.resolve() == target.resolve():
        raise CheckpointError(f"write the converted checkpoint to a new file, not over {source}.")
    obj = torch.load(source, map_location="cpu", weights_only=False)  # the user vouched for this file
    save_plain_checkpoint(to_plain(obj), target)
    read_checkpoint(target, "converted file")
    return target


@writer
def save_plain_checkpoint(checkpoint: Mapping[str, Any], target: str | Path) -> Path:
    """``torch.save`` a checkpoint of plain values atomically (a reader never sees half a file)."""
    with atomic_path(target) as tmp:
        torch.save(checkpoint, tmp)
    return Path(target)


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=CONVERT_COMMAND,
        description="Convert a checkpoint you TRUST (loading it can run code) into one that digitcls reads "
        "safely: tensors and plain values only.",
    )
    parser.add_argument("source", type=Path, help="the trusted checkpoint or weights file")
    parser.add_argument("target", type=Path, help="where to write the converted file")
    args = parser.parse_args(argv)
    print(f"converted {args.source} -> {convert_trusted(args.source, args.target)}")


if __name__ == "__main__":
    main()
