"""The values some config keys may take, importable without torch.

:mod:`digitcls.schema` checks every command's config, `predict` included, and `predict` on onnxruntime
never needs torch: importing the modules that own these names (Lightning, torchvision, torchmetrics) would
cost it several seconds before any work. ``tests/unit/test_choices.py`` checks that each name here equals
its owner's (``digitcls.model.backbones.MODEL_NAMES``, ...), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODEL_NAMES: tuple[str, ...] = ("mobilenetv3", "mobilenetv3_small")  # digitcls.model.backbones
OUTPUT_STRIDES: tuple[int, ...] = (32, 16, 8)  # digitcls.model.backbones
METRICS: tuple[str, ...] = ("acc", "f1", "precision", "recall")  # digitcls.model.module
OPTIMIZER_NAMES: tuple[str, ...] = ("Adam", "AdamW", "SGD", "AdaBelief", "Ranger")  # digitcls.model.optim
BAD_IMAGE_POLICIES: tuple[str, ...] = ("skip", "error")  # digitcls.data.datamodule


def parse_augment(augment: Mapping[str, Any] | None) -> Any:
    """:func:`digitcls.data.transforms.parse_augment`, imported (with torch) only for a training config."""
    from digitcls.data.transforms import parse_augment as parse

    return parse(augment)


def parse_scheduler(spec: str) -> Any:
    """:func:`digitcls.model.optim.parse_scheduler`, imported (with torch) only for a training config."""
    from digitcls.model.optim import parse_scheduler as parse

    return parse(spec)
