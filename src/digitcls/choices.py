"""The values some config keys may take, importable without torch.

:mod:`digitcls.schema` checks every command's config, `predict` included, and `predict` on onnxruntime
never needs torch: importing the modules that own these names (Lightning, torchvision, torchmetrics) would
cost it several seconds before any work. ``tests/unit/test_choices.py`` checks that each name here equals
its owner's (``digitcls.model.backbones.MODEL_NAMES``, ...), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# --- model_name (built by digitcls.model.backbones)
MOBILENET_NAMES: tuple[str, ...] = ("mobilenetv3", "mobilenetv3_small")  # torchvision's large and small
SHUFFLENET = "shufflenetv2"  # torchvision's shufflenet_v2_x1_0
# the tutorial's names -> timm's architecture (a `.tag` picks the pretrained config: its mean/std)
TIMM_ALIASES: dict[str, str] = {
    "adv-efficientnet-b2": "tf_efficientnet_b2.ap_in1k",  # EfficientNet-B2 as trained with AdvProp
    "se_resnext50_32x4d": "seresnext50_32x4d",
    "xception": "legacy_xception",  # Chollet's original Xception, the tutorial's pretrainedmodels network
}
TIMM_PREFIX = "timm/"
MODEL_NAMES: tuple[str, ...] = (*MOBILENET_NAMES, SHUFFLENET, *TIMM_ALIASES)
MODEL_NAMES_ALLOWED = f"one of {', '.join(MODEL_NAMES)} (mobilenetv3 = MobileNetV3-Large), or timm/<a timm model name>"
# total downsampling of MobileNetV3's `features`: 32 is torchvision's network; each halving drops its first stride-2 block
OUTPUT_STRIDES: tuple[int, ...] = (32, 16, 8)
METRICS: tuple[str, ...] = ("acc", "f1", "precision", "recall")  # digitcls.model.module
OPTIMIZER_NAMES: tuple[str, ...] = ("Adam", "AdamW", "SGD", "AdaBelief", "Ranger")  # digitcls.model.optim
BAD_IMAGE_POLICIES: tuple[str, ...] = ("skip", "error")  # digitcls.data.datamodule


def parse_img_size(value: int | Sequence[int]) -> tuple[int, int]:
    """``img_size`` as (height, width): an int means a square; [h, w] is taken in that order. Called where a
    value enters digitcls (the config's validation, an older checkpoint's hyperparameters); everything after
    takes the pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def check_model_name(model_name: str) -> None:
    """:func:`digitcls.model.backbones.check_model_name`; torch (and timm) imported only for a timm name."""
    if model_name in MOBILENET_NAMES or model_name == SHUFFLENET:
        return
    from digitcls.model.backbones import check_model_name as check

    check(model_name)


def output_stride_problem(model_name: str, output_stride: int) -> str | None:
    """Why ``output_stride`` cannot apply to ``model_name``, or None: only MobileNetV3's strides are edited."""
    if output_stride == 32 or model_name in MOBILENET_NAMES:
        return None
    return (f"output_stride: {output_stride} applies to MobileNetV3 only; model_name={model_name} keeps its own "
            "strides. Set output_stride=32, or use mobilenetv3 / mobilenetv3_small.")


def parse_augment(augment: Mapping[str, Any] | None) -> Any:
    """:func:`digitcls.data.transforms.parse_augment`, imported (with torch) only for a training config."""
    from digitcls.data.transforms import parse_augment as parse

    return parse(augment)


def parse_scheduler(spec: str) -> Any:
    """:func:`digitcls.model.optim.parse_scheduler`, imported (with torch) only for a training config."""
    from digitcls.model.optim import parse_scheduler as parse

    return parse(spec)
