"""Checks on the composed config that must fail before any data is touched, with the key in the message."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig

from digitcls.errors import ConfigError
from digitcls.model.backbones import MODEL_NAMES
from digitcls.model.optim import parse_scheduler


def img_size_hw(value: int | Sequence[int]) -> tuple[int, int]:
    """``img_size`` as (height, width): an int means a square."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = (value, value)
    elif isinstance(value, (Sequence, ListConfig)) and not isinstance(value, str) and len(value) == 2:
        size = (int(value[0]), int(value[1]))
    else:
        raise ConfigError(f"img_size: expected an int or [height, width], got {value!r}; e.g. img_size=32.")
    if min(size) <= 0:
        raise ConfigError(f"img_size: must be positive, got {value!r}; e.g. img_size=32.")
    if min(size) < 16:
        raise ConfigError(f"img_size: MobileNetV3 downsamples 32x, so it needs at least 16 px; got {value!r}.")
    return size


def _positive(cfg: DictConfig, key: str, example: str) -> None:
    value = cfg.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}: must be a positive number, got {value!r}; e.g. {key}={example}.")


def validate(cfg: DictConfig) -> None:
    """Fail fast, naming the key and a valid example."""
    if cfg.model_name not in MODEL_NAMES:
        raise ConfigError(
            f"model_name: unknown model {cfg.model_name!r}. Valid names: {', '.join(MODEL_NAMES)}; "
            "e.g. model_name=mobilenetv3_small."
        )
    _positive(cfg, "learning_rate", "0.001")
    _positive(cfg, "batch_size", "128")
    _positive(cfg, "epochs", "10")
    _positive(cfg, "class_number", "10")
    img_size_hw(cfg.img_size)
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay: must be >= 0, got {cfg.weight_decay}; e.g. weight_decay=0.0001.")
    for key in ("warmup_epoch", "freeze_nonlinear_epoch", "early_stop_patient", "try_to_train_items", "num_workers"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{key}: must be a whole number >= 0, got {value!r}.")
    if cfg.on_bad_image not in ("skip", "error"):
        raise ConfigError(f"on_bad_image: must be skip or error, got {cfg.on_bad_image!r}.")
    parse_scheduler(str(cfg.scheduler))

