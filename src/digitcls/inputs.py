"""Every file and folder a config key names, opened and checked before any data is loaded (the values
themselves: :mod:`digitcls.schema`): a bad file ends the command in seconds, not after training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from digitcls.data.folders import discover_classes
from digitcls.errors import CheckpointError, ConfigError


def check_folders(cfg: DictConfig, keys: Sequence[str]) -> None:
    """A path key naming an existing regular file is a mistake (a missing folder may still be prepared)."""
    for key in keys:
        value = cfg.get(key)
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(
                f"{key}: {value} is a file; {key} must be a folder with one sub-folder per class, "
                f"e.g. {key}=data/test."
            )


def check_train_inputs(cfg: DictConfig, resume_from: Path | None) -> dict[str, list[str]]:
    """Open every file the training config names (``resume_from``: the checkpoint ``ckpt_path`` or
    ``resume=true`` chose); return each checkpoint's class names by key, for :func:`check_checkpoint_classes`
    once the training folders exist."""
    from digitcls.checkpoints import read_checkpoint  # torch: imported by the commands that open checkpoints
    from digitcls.model.backbones import read_weights  # torchvision: predict's check_folders needs neither

    check_folders(cfg, ("train_path", "val_path", "test_path"))
    if cfg.pretrained:
        read_weights(Path(cfg.pretrained))
    classes: dict[str, list[str]] = {}
    checkpoints = {"model_path": cfg.model_path, "ckpt_path" if cfg.ckpt_path else "resume": resume_from}
    for key, path in checkpoints.items():
        if not path:
            continue
        hint = f"Point {key} at a .ckpt written by digitcls.train, or set {key}=null."
        checkpoint = read_checkpoint(path, key, hint, mmap=True)  # weights_only, tensors mapped, not read
        hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
        if not isinstance(hparams, dict) or "class_names" not in hparams or "state_dict" not in checkpoint:
            raise CheckpointError(
                f"{key}: {path} is not a digitcls checkpoint (no state_dict and class_names in it). Use a .ckpt "
                "written by `python -m digitcls.train`; plain weights go to `pretrained=` instead."
            )
        classes[key] = [str(name) for name in hparams["class_names"]]
    return classes


def check_checkpoint_classes(classes_by_key: dict[str, list[str]], train_path: str | Path) -> None:
    """A checkpoint used with this training data must have been trained on the same class folders."""
    folders = discover_classes(train_path)
    for key, classes in classes_by_key.items():
        if classes != folders:
            raise CheckpointError(
                f"{key}: the checkpoint was trained on the classes {classes}, but train_path ({train_path}) has "
                f"{folders}. Point {key} at a checkpoint of these classes, or set {key}=null."
            )
