"""The values some config keys may take and the grammars of the others, importable without torch.

:mod:`digitcls.schema` checks every command's config, `predict` included, and `predict` on onnxruntime
never needs torch: importing the modules that use these values (Lightning, torchvision, torchmetrics) would
cost it several seconds before any work. Those modules import from here, never the other way round;
``tests/unit/test_choices.py`` checks that each name list here equals its user's table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from digitcls.errors import ConfigError

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


def output_stride_problem(model_name: str, output_stride: int) -> str | None:
    """Why ``output_stride`` cannot apply to ``model_name``, or None: only MobileNetV3's strides are edited."""
    if output_stride == 32 or model_name in MOBILENET_NAMES:
        return None
    return (f"output_stride: {output_stride} applies to MobileNetV3 only; model_name={model_name} keeps its own "
            "strides. Set output_stride=32, or use mobilenetv3 / mobilenetv3_small.")


# --- model_name: timm's names (timm imported only for one of them)


def timm_architecture(model_name: str) -> str | None:
    """timm's name for ``model_name`` (one of :data:`TIMM_ALIASES` or ``timm/<name>``); None for torchvision's."""
    return model_name.removeprefix(TIMM_PREFIX) if model_name.startswith(TIMM_PREFIX) else TIMM_ALIASES.get(model_name)


def timm_config(model_name: str):  # -> timm.models.PretrainedCfg (timm is imported lazily)
    """The pretrained config timm keeps for the architecture (its head's name, mean and std); a
    :class:`ConfigError` for a name timm does not know."""
    architecture = timm_architecture(model_name)
    if architecture is None:
        raise ConfigError(
            f"model_name: got {model_name!r}; allowed: {MODEL_NAMES_ALLOWED}; e.g. model_name=mobilenetv3_small."
        )
    try:
        import timm
    except ImportError:
        raise ConfigError(
            f"model_name: {model_name} is built by timm, which is not installed. Install the timm extra (pip "
            "install -e '.[timm]', or pip install timm), or use mobilenetv3, mobilenetv3_small or shufflenetv2."
        ) from None
    hint = f"timm/<name> takes a name from timm.list_models() (timm {timm.__version__}), e.g. timm/resnet18"
    if not architecture or not timm.is_model(architecture):
        similar = timm.list_models(f"*{architecture.split('.')[0]}*")[:5] if architecture else []
        nearest = f"; similar names: {', '.join(similar)}" if similar else ""
        raise ConfigError(f"model_name: timm has no model {architecture!r}{nearest}. {hint}.")
    try:
        config = timm.get_pretrained_cfg(architecture, allow_unregistered=False)
    except RuntimeError as error:  # an unknown `.tag`
        raise ConfigError(f"model_name: {model_name}: {error} {hint}.") from None
    if not config.classifier:  # allow_unregistered=False: never None
        raise ConfigError(f"model_name: timm has no configuration (head, mean, std) for {architecture!r}. {hint}.")
    return config


def check_model_name(model_name: str) -> None:
    """A :class:`ConfigError` unless ``model_name`` can be built here (timm installed and knowing the name)."""
    if model_name not in MOBILENET_NAMES and model_name != SHUFFLENET:
        timm_config(model_name)


# --- augment (applied by digitcls.data.transforms.batch_augment)


@dataclass(frozen=True)
class AffineAugment:
    """Ranges of the random affine: each sample draws its own angle, shift, scale and shear.

    degrees: rotation in [-degrees, degrees]; translate: (fx, fy) shift as a fraction of width/height;
    scale: (low, high) zoom factor; shear: x-shear angle in [-shear, shear] degrees.
    """

    degrees: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self == AffineAugment()


def parse_augment(augment: Mapping | AffineAugment | None) -> AffineAugment:
    """The ``augment`` config (None, or a mapping of degrees / translate / scale / shear) as ranges.

    ``translate`` is a fraction (or [fx, fy]); ``scale`` is [low, high], or a number s meaning [1 - s, 1 + s]
    (so 0 is no zoom). Missing keys and zeros mean "no such transform"; all zero is the identity.
    """
    if isinstance(augment, AffineAugment):
        return augment
    if not augment:
        return AffineAugment()
    keys = [key.name for key in fields(AffineAugment)]
    if unknown := sorted(set(augment) - set(keys)):
        raise ConfigError(f"augment: unknown key(s) {unknown}; valid keys: {', '.join(keys)}.")
    try:
        params = AffineAugment(
            degrees=abs(float(augment.get("degrees") or 0.0)),
            translate=_pair(augment.get("translate") or 0.0, around=0.0),
            scale=_pair(augment.get("scale") or 0.0, around=1.0),
            shear=abs(float(augment.get("shear") or 0.0)),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"augment: {error}; e.g. augment.degrees=10 augment.scale=[0.9,1.1].") from None
    if params.scale[0] <= 0 or params.scale[0] > params.scale[1]:
        raise ConfigError(f"augment.scale: expected 0 < low <= high, got {list(params.scale)}.")
    return params


def _pair(value: float | Sequence[float], around: float) -> tuple[float, float]:
    """translate: s -> (s, s) per axis; scale: s -> (1 - s, 1 + s); a pair is used as given."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"expected a number or a pair, got {list(value)}")
        return float(value[0]), float(value[1])
    number = abs(float(value))
    return (number, number) if around == 0.0 else (around - number, around + number)


# --- scheduler (built by digitcls.model.optim.build_scheduler)

_INT = r"(\d+)"
_FLOAT = r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise ValueError(reason)


def _plateau(factor: str, patience: str) -> dict[str, Any]:
    _check(0 < float(factor) < 1, f"the factor F must be in (0, 1), got {float(factor)}")
    return {"factor": float(factor), "patience": int(patience)}


def _step(step_size: str, gamma: str) -> dict[str, Any]:
    _check(int(step_size) >= 1, "the step S must be >= 1 epoch")
    _check(0 < float(gamma) <= 1, f"gamma G must be in (0, 1], got {float(gamma)}")
    return {"step_size": int(step_size), "gamma": float(gamma)}


def _sgdr(t_0: str, t_mult: str) -> dict[str, Any]:
    _check(int(t_0) >= 1 and int(t_mult) >= 1, f"T0 and TMULT must be integers >= 1, got T0={t_0}, TMULT={t_mult}")
    return {"T_0": int(t_0), "T_mult": int(t_mult)}


def _multi(milestones_text: str, gamma: str) -> dict[str, Any]:
    milestones = tuple(int(m) for m in re.split("[,_]", milestones_text))
    increasing = milestones[0] >= 1 and all(a < b for a, b in zip(milestones, milestones[1:], strict=False))
    _check(increasing, f"milestones must be strictly increasing epochs >= 1, got {list(milestones)}")
    _check(0 < float(gamma) <= 1, f"gamma G must be in (0, 1], got {float(gamma)}")
    return {"milestones": milestones, "gamma": float(gamma)}


@dataclass(frozen=True)
class SchedulerForm:
    """One form of the grammar: ``pattern`` must match the whole string (first word case-insensitive);
    ``read`` turns its groups into :attr:`SchedulerSpec.params` or raises ``ValueError(reason)``."""

    form: str
    examples: tuple[str, ...]
    meaning: str  # Markdown, as in docs/configuration.md
    pattern: str
    read: Callable[..., dict[str, Any]] = dict


# kind -> form: the single description of the grammar (parser, error message, docs/configuration.md's table)
SCHEDULER_FORMS: dict[str, SchedulerForm] = {
    "default": SchedulerForm(
        "default-F-P", ("default-0.1-3",),
        "ReduceLROnPlateau on `val_acc`: lr × F after P epochs without improvement (0 < F < 1, P ≥ 0)",
        rf"default-{_FLOAT}-{_INT}", _plateau,
    ),
    "step": SchedulerForm(
        "step-S-G", ("step-10-0.5",), "StepLR: lr × G every S epochs (S ≥ 1, 0 < G ≤ 1; G is a float)",
        rf"step-{_INT}-{_FLOAT}", _step,
    ),
    "sgdr": SchedulerForm(
        "SGDR-T0-TMULT", ("SGDR-5-2",),
        "cosine annealing with warm restarts: first cycle T0 epochs, each next TMULT× longer (integers ≥ 1)",
        rf"sgdr-{_INT}-{_INT}", _sgdr,
    ),
    "multi": SchedulerForm(
        "multi-M1,M2,...-G", ("multi-10,20-0.1", "multi-10_20-0.1"), "MultiStepLR: lr × G at epochs M1 < M2 < …",
        rf"multi-(\d+(?:[,_]\d+)*)-{_FLOAT}", _multi,
    ),
    "cosine": SchedulerForm("cosine", ("cosine",), "cosine annealing from `learning_rate` to 0 over the epochs", "cosine"),
    "onecycle": SchedulerForm(
        "onecycle", ("onecycle",), "OneCycleLR, stepped every batch, peak = `learning_rate`", "onecycle"
    ),
    "none": SchedulerForm("none", ("none",), "constant `learning_rate`", "none"),
}  # fmt: skip


def scheduler_table() -> str:
    """docs/configuration.md's Markdown table of the grammar."""
    rows = [
        f"| `{f.form}` | {' or '.join(f'`{example}`' for example in f.examples)} | {f.meaning} |"
        for f in SCHEDULER_FORMS.values()
    ]
    return "\n".join(["| form | example | meaning |", "|---|---|---|", *rows])


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``scheduler`` string: ``kind`` is a key of :data:`SCHEDULER_FORMS`; ``params``:

    default: factor, patience · step: step_size, gamma · sgdr: T_0, T_mult · multi: milestones, gamma.
    """

    kind: str
    params: Mapping[str, Any]


def _invalid(spec: object, reason: str = "") -> ConfigError:
    forms = "; ".join(f"{f.form} (e.g. {' or '.join(f.examples)}): {f.meaning}" for f in SCHEDULER_FORMS.values())
    return ConfigError(
        f"scheduler: {spec!r} is not a valid schedule{f' ({reason})' if reason else ''}. Valid forms, "
        f"first word case-insensitive: {forms.replace('`', '')}. In a Hydra sweep write multi-10_20-0.1 or "
        "quote the comma: 'scheduler=\"multi-10,20-0.1\"'."
    )


def parse_scheduler(spec: str) -> SchedulerSpec:
    """Parse the ``scheduler`` string; anything but a whole valid form raises :class:`ConfigError`."""
    if isinstance(spec, str):
        for kind, form in SCHEDULER_FORMS.items():
            if match := re.fullmatch(form.pattern, spec, re.IGNORECASE | re.ASCII):
                try:
                    return SchedulerSpec(kind, form.read(*match.groups()))
                except ValueError as error:
                    raise _invalid(spec, str(error)) from None
    raise _invalid(spec)
