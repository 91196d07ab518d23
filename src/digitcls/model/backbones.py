"""Backbones with a ``class_number``-way head, built without downloading anything, and local pretrained weights.

MobileNetV3 and ShuffleNetV2 are torchvision's (timm has no ShuffleNet); the tutorial's other names and any
``timm/<name>`` are timm's, the maintained home of those networks (docs/models.md): an optional extra,
imported only when one of its models is asked for. Heads are named (:func:`head_name`), never guessed from
the order of a state dict.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models import shufflenet_v2_x1_0
from torchvision.models.mobilenetv3 import MobileNetV3

from digitcls.checkpoints import read_checkpoint
from digitcls.choices import (
    MOBILENET_NAMES,
    OUTPUT_STRIDES,
    SHUFFLENET,
    timm_architecture,
    timm_config,
)
from digitcls.errors import CheckpointError, ConfigError
from digitcls.private_apis import BatchNorm, mobilenet_v3_blocks

log = logging.getLogger(__name__)

# model_name -> torchvision's architecture name
_MOBILENETS: dict[str, str] = dict(zip(MOBILENET_NAMES, ("mobilenet_v3_large", "mobilenet_v3_small"), strict=True))

# Prefixes other trainers put in front of the model's key names (Lightning's `model.`/`backbone.`
# attributes, DataParallel's `module.`, the tutorial's `pretrain_`). Stripped repeatedly, in any order.
KEY_PREFIXES = re.compile(r"^(?:pretrain_|model\.|module\.|backbone\.)+")


def head_name(model_name: str) -> str:
    """The module that outputs the ``class_number`` logits (its weight is ``<name>.weight`` in a state dict).

    timm records it in each architecture's config (``classifier``, ``fc``, ``head.fc``, ...; timm's own
    tests check that the state dict holds ``<classifier>.weight``).
    """
    if model_name in MOBILENET_NAMES:
        return "classifier.3"
    if model_name == SHUFFLENET:
        return "fc"
    classifier = timm_config(model_name).classifier
    return classifier if isinstance(classifier, str) else classifier[0]  # distilled models: (head, head_dist)


def normalization_for(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel, for images scaled to [0, 1], that ``model_name``'s architecture expects.

    torchvision's networks use ImageNet's statistics; timm's come from the architecture's config (e.g.
    (0.5, 0.5, 0.5) for AdvProp EfficientNets and Xception). Grayscale digits are replicated to 3 channels,
    so a single-channel mean/std is replicated too. Unknown names are a :class:`ConfigError`.
    """
    if model_name in MOBILENET_NAMES or model_name == SHUFFLENET:
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's
    config = timm_config(model_name)  # a ConfigError for a name neither library builds
    mean, std = tuple(config.mean), tuple(config.std)
    return (mean * 3, std * 3) if len(mean) == 1 else (mean, std)


class DropoutLinear(nn.Linear):
    """A Linear layer that applies dropout to its input: adds the ``dropout`` key to ShuffleNetV2's head
    while keeping torchvision's key names (``fc.weight``, ``fc.bias``), so its weights files still map."""

    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def build_backbone(
    model_name: str,
    class_number: int,
    dropout: float = 0.2,
    bn_momentum: float = 0.1,
    output_stride: int = 32,
) -> nn.Module:
    """A randomly initialised ``model_name`` with a ``class_number``-way head; never downloads weights.

    The arguments are trusted: :mod:`digitcls.schema` checked them. ``output_stride`` (docs/models.md) sets the
    first stride-2 blocks to stride 1 (torchvision's ``dilated=True`` would dilate the last stage instead, and has
    no 8); strides hold no weights, so weights files fit any value.
    """
    if model_name in MOBILENET_NAMES:
        # torchvision's own block table and network (what mobilenet_v3_large/small build), strides edited
        blocks, last_channel = mobilenet_v3_blocks(_MOBILENETS[model_name])
        for block in [block for block in blocks if block.stride == 2][: OUTPUT_STRIDES.index(output_stride)]:
            block.stride = 1
        model = MobileNetV3(blocks, last_channel, num_classes=class_number, dropout=dropout)
    elif model_name == SHUFFLENET:
        model = shufflenet_v2_x1_0(weights=None, num_classes=class_number)
        model.fc = DropoutLinear(model.fc.in_features, class_number, dropout)
    else:
        timm_config(model_name)  # a clear error for a name timm does not know, or for timm not installed
        import timm

        model = timm.create_model(
            timm_architecture(model_name), pretrained=False, num_classes=class_number, drop_rate=dropout, in_chans=3
        )
    # torchvision builds every BatchNorm with momentum=0.01: after a short run the running statistics
    # lag far behind the weights and eval accuracy collapses (26.9 % test after one MNIST epoch).
    for module in model.modules():
        if isinstance(module, BatchNorm):
            module.momentum = bn_momentum
    return model


def check_input_size(model: nn.Module, model_name: str, height: int, width: int) -> None:
    """A ConfigError now, not a traceback at the first batch, when a timm architecture cannot take
    ``height`` x ``width`` inputs: each has its own limits (a ViT needs sides divisible by its patch, some
    networks a fixed size), so one no-grad eval forward of a single blank image asks the model itself."""
    if timm_architecture(model_name) is None:  # MobileNetV3 and ShuffleNetV2 take any size the schema allows
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width))
    except Exception as error:  # each architecture fails its own way (AssertionError, RuntimeError, ...)
        _, pretrained_height, pretrained_width = timm_config(model_name).input_size
        raise ConfigError(
            f"img_size: {model_name} cannot take {height}x{width} images "
            f"({type(error).__name__}: {str(error).rstrip('.')}). "
            f"It was designed for {pretrained_height}x{pretrained_width}: e.g. img_size={pretrained_height}."
        ) from None
    finally:
        model.train(was_training)


def body_of(backbone: nn.Module) -> nn.Module:
    """What ``freeze_nonlinear_epoch`` freezes: everything but the classification head.

    MobileNetV3: ``features`` (its head is the whole ``classifier``; ``avgpool`` holds no weights). timm
    models: every submodule outside ``get_classifier()`` (timm's API for the head). ShuffleNetV2: all
    but ``fc``. Parameters held directly by a module that contains the head (a ViT's ``cls_token`` and
    ``pos_embed``) are not submodules and stay trainable. A module with none of these is all body.
    """
    if isinstance(backbone, MobileNetV3):
        return backbone.features
    get_classifier = getattr(backbone, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else getattr(backbone, "fc", None)
    return nn.ModuleList(_outside(backbone, head)) if isinstance(head, nn.Module) else backbone


def _outside(module: nn.Module, head: nn.Module) -> Iterator[nn.Module]:
    """The largest submodules of ``module`` that do not contain ``head``."""
    for child in module.children():
        if child is head:
            continue
        if any(descendant is head for descendant in child.modules()):
            yield from _outside(child, head)
        else:
            yield child


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


def read_weights(path: Path) -> Mapping[str, torch.Tensor]:
    fix = "Point `pretrained` at a local weights file (a state dict or a Lightning .ckpt), or set pretrained=null."
    obj: Mapping = read_checkpoint(path, "pretrained", fix)  # tensors and plain values only: never runs code
    obj = next((obj[w] for w in ("state_dict", "model") if isinstance(obj.get(w), Mapping)), obj)
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"pretrained: {path} is not a mapping of parameter names to tensors "
            f"(nor a checkpoint with one under 'state_dict' or 'model'). {fix}"
        )
    return obj


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load the matching tensors of a local weights file into ``model`` and report every mismatch.

    Keys are remapped by stripping :data:`KEY_PREFIXES`; tensors whose shape differs (typically the
    head, :func:`head_name`, when the class count differs) are skipped. Mismatches are logged, never
    hidden, and a file that matches fewer than half of the model's parameters is rejected.
    """
    path = Path(path)
    source = read_weights(path)
    target = model.state_dict()

    report = LoadReport()
    selected: dict[str, torch.Tensor] = {}
    for original_key, tensor in source.items():
        key = original_key if original_key in target else KEY_PREFIXES.sub("", original_key)
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
