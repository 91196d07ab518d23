"""MobileNetV3 backbones (torchvision, built without downloading anything) and local pretrained weights.

The model is torchvision's own ``MobileNetV3``: ``model.features`` is the convolutional body (what
:class:`~digitcls.callbacks.freeze.FreezeBackbone` freezes) and ``model.classifier`` the head,
``Linear(960|576, 1280|1024) -> Hardswish -> Dropout(dropout) -> Linear(1280|1024, class_number)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models.mobilenetv3 import MobileNetV3

from digitcls.checkpoints import read_checkpoint
from digitcls.errors import CheckpointError
from digitcls.private_apis import BatchNorm, mobilenet_v3_blocks

log = logging.getLogger(__name__)

# model_name -> torchvision's architecture name
_ARCHITECTURES: dict[str, str] = {
    "mobilenetv3": "mobilenet_v3_large",
    "mobilenetv3_small": "mobilenet_v3_small",
}
MODEL_NAMES: tuple[str, ...] = tuple(_ARCHITECTURES)
# total downsampling of `features`: 32 is torchvision's network; each halving drops its first stride-2 block
OUTPUT_STRIDES: tuple[int, ...] = (32, 16, 8)

# Prefixes other trainers put in front of the torchvision key names (Lightning's `model.`/`backbone.`
# attributes, DataParallel's `module.`, the tutorial's `pretrain_`). Stripped repeatedly, in any order.
KEY_PREFIXES: tuple[str, ...] = ("pretrain_", "model.", "module.", "backbone.")


def build_backbone(
    model_name: str,
    class_number: int,
    dropout: float = 0.2,
    bn_momentum: float = 0.1,
    output_stride: int = 32,
) -> nn.Module:
    """A randomly initialised MobileNetV3 with a ``class_number``-way head; never downloads weights.

    torchvision's classifier structure is kept (Linear -> Hardswish -> Dropout -> Linear) so that
    ImageNet-style checkpoints still map onto it; only the dropout ``p`` and the last Linear change.

    ``output_stride`` 32 is torchvision's network unchanged: a 32 px digit is 1x1 after the last stage.
    16 or 8 set the first one or two stride-2 inverted-residual blocks to stride 1 (as CIFAR-sized
    variants do), so later stages see 2x2 or 4x4 maps at 32 px, for about 2x/4x the compute of those
    stages. Strides hold no weights: the parameters, and so weights files, are the same for every value.
    The arguments are trusted: :mod:`digitcls.schema` checked them.
    """
    # torchvision's own block table and network (what mobilenet_v3_large/small build), strides edited
    blocks, last_channel = mobilenet_v3_blocks(_ARCHITECTURES[model_name])
    strided = [block for block in blocks if block.stride == 2]
    for block in strided[: OUTPUT_STRIDES.index(output_stride)]:
        block.stride = 1
    model = MobileNetV3(blocks, last_channel, num_classes=class_number, dropout=dropout)
    # torchvision builds every BatchNorm with momentum=0.01: after a short run the running statistics
    # lag far behind the weights and eval accuracy collapses (26.9 % test after one MNIST epoch).
    for module in model.modules():
        if isinstance(module, BatchNorm):
            module.momentum = bn_momentum
    return model


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key.

    ``loaded``: model keys set from the file. ``missing``: model keys absent from the file (left as
    initialised). ``unexpected``: file keys (original names) the model has no use for.
    ``skipped_shape``: model keys present in the file with another shape (e.g. the head).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped = True
    return key


def read_weights(path: Path) -> Mapping[str, torch.Tensor]:
    fix = "Point `pretrained` at a local weights file (a state dict or a Lightning .ckpt), or set pretrained=null."
    obj: Mapping = read_checkpoint(path, "pretrained", fix)  # tensors and plain values only: never runs code
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"pretrained: {path} is not a mapping of parameter names to tensors "
            f"(nor a checkpoint with one under 'state_dict' or 'model'). {fix}"
        )
    return obj


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load the matching tensors of a local weights file into ``model`` and report every mismatch.

    Keys are remapped by stripping :data:`KEY_PREFIXES`; tensors whose shape differs (typically the
    last classifier layer when the class count differs) are skipped. Mismatches are logged, never
    hidden, and a file that matches fewer than half of the model's parameters is rejected.
    """
    path = Path(path)
    source = read_weights(path)
    target = model.state_dict()

    report = LoadReport()
    selected: dict[str, torch.Tensor] = {}
    for original_key, tensor in source.items():
        key = original_key if original_key in target else _strip_prefixes(original_key)
        if key not in target or key in selected:
            report.unexpected.append(original_key)
        elif tensor.shape != target[key].shape:
            report.skipped_shape.append(key)
            log.warning(
                "pretrained: skipping %s: shape %s in %s, %s in the model",
                key,
                tuple(tensor.shape),
                path,
                tuple(target[key].shape),
            )
        else:
            selected[key] = tensor
    report.loaded = list(selected)
    report.missing = [key for key in target if key not in selected and key not in report.skipped_shape]

    parameter_names = [name for name, _ in model.named_parameters()]
    matched = sum(name in selected for name in parameter_names)
    if matched < len(parameter_names) / 2:
        raise CheckpointError(
            f"pretrained: {path} matches almost nothing in this model: {matched} of {len(parameter_names)} "
            f"parameters found with the right shape ({len(report.unexpected)} unexpected keys, e.g. "
            f"{report.unexpected[:5]}; the model expects e.g. {parameter_names[:3]}). Check that it was "
            f"trained with the same model_name, or set pretrained=null."
        )

    for key in report.missing:
        log.warning("pretrained: %s not in %s; left as initialised", key, path)
    for key in report.unexpected:
        log.warning("pretrained: %s in %s is not used by the model", key, path)
    # every key is accounted for above, so non-strict loading hides nothing
    model.load_state_dict(selected, strict=False)
    log.info(
        "pretrained: loaded %d tensors from %s (%d missing, %d unexpected, %d skipped for shape)",
        len(report.loaded),
        path,
        len(report.missing),
        len(report.unexpected),
        len(report.skipped_shape),
    )
    return report
