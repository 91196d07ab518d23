"""The config schema: every key's type, range and cross-key rule, in one place, checked before any work.

* **Types** — one dataclass per command (:class:`TrainConfig`, :class:`EvaluateConfig`, :class:`PredictConfig`,
  :class:`ExportConfig`, :class:`ServeConfig`); a key several commands share is declared once, in a base class
  they inherit (``eval_path``, ``test_path`` and ``output`` are required by one command and may be null in
  another, so each command declares its own). The YAML files under ``conf/`` hold the values and their
  comments; the dataclasses declare what each key may hold. OmegaConf checks and converts the types
  (``epochs=2.5`` is refused, ``learning_rate=1`` becomes ``1.0``) and refuses keys the command's dataclass does not declare.
* **Ranges and choices** — :data:`RULES`, keyed by the key's name: a key shared by several commands
  (``batch_size``, ``on_bad_image``, ...) has one rule everywhere.
* **Cross-key rules** — :data:`CROSS_RULES`.

:func:`validated` applies all three and turns each violation into a :class:`~digitcls.errors.ConfigError`
naming the key, the value and what is allowed (the entry points print it and exit with status 2).
Constructors downstream trust these values. The schema is checked inside the task rather than through
Hydra's defaults list, because Hydra reports composition errors itself (status 1, its own wording).

To add a config key: its value (and comment) in the YAML file, its type in the command's dataclass here,
and, when not every value of that type is valid, one entry in :data:`RULES` (or :data:`CROSS_RULES`). A key
named like an argument of ``DigitClassifier`` or ``DigitDataModule`` reaches it through :func:`arguments_for`
(and the model's is saved in its checkpoints): adding the argument is the key's only other line.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from digitcls.choices import (  # not from their owners: those import torch, and predict may run without it
    BAD_IMAGE_POLICIES,
    METRICS,
    MODEL_NAMES_ALLOWED,
    OPTIMIZER_NAMES,
    OUTPUT_STRIDES,
    check_model_name,
    output_stride_problem,
    parse_augment,
    parse_img_size,
    parse_scheduler,
)
from digitcls.errors import ConfigError
from digitcls.preprocess import PREPROCESSORS

# MobileNetV3 downsamples 32x; below 16 px the last feature map is empty
MIN_IMG_SIZE = 16
EXPORT_FORMATS = ("onnx", "torchscript", "all")
SERVE_HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # this machine only, every IPv4 interface, every interface
MAX_SERVE_BATCH = 1024  # one batch is this many small images: bounded so memory per batch is bounded
SERVE_REQUEST_TIMEOUT_S = 30.0
SERVE_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


# --------------------------------------------------------------------------- types, one dataclass per command
# Optional[...] (not `X | None`): OmegaConf reads these annotations at run time on Python 3.10.


@dataclass
class ModelFile:  # every command reads or writes a checkpoint
    model_path: Optional[str] = MISSING  # noqa: UP045


@dataclass
class ImageReading(ModelFile):
    max_image_pixels: int = MISSING


@dataclass
class Batches(ImageReading):
    batch_size: int = MISSING
    num_workers: int = MISSING


@dataclass
class LabelledBatches(Batches):
    on_bad_image: str = MISSING
    output_dir: str = MISSING


@dataclass
class Seeded:
    random_seed: int = MISSING


@dataclass
class TrainConfig(LabelledBatches, Seeded):
    model_name: str = MISSING
    class_number: int = MISSING
    pretrained: Optional[str] = MISSING  # noqa: UP045
    dropout: float = MISSING
    bn_momentum: float = MISSING
    precise_bn_batches: int = MISSING
    output_stride: int = MISSING
    channels_last: bool = MISSING
    raw_dir: str = MISSING
    train_path: str = MISSING
    val_path: str = MISSING
    test_path: Optional[str] = MISSING  # noqa: UP045
    eval_path: Optional[str] = MISSING  # noqa: UP045
    img_size: Any = MISSING  # an int or [height, width]: RULES["img_size"]
    try_to_train_items: int = MISSING
    data_cache: bool = MISSING
    augment: Optional[dict[str, Any]] = MISSING  # noqa: UP045
    optimizer: str = MISSING
    learning_rate: float = MISSING
    weight_decay: float = MISSING
    scheduler: str = MISSING
    warmup_epoch: int = MISSING
    label_smooth: float = MISSING
    class_weight: Optional[list[float]] = MISSING  # noqa: UP045
    freeze_nonlinear_epoch: int = MISSING
    epochs: int = MISSING
    early_stop_patient: int = MISSING
    gradient_clip_val: Optional[float] = MISSING  # noqa: UP045
    ema_decay: Optional[float] = MISSING  # noqa: UP045
    save_best_only: bool = MISSING
    save_one_only: bool = MISSING
    metrics: list[str] = MISSING
    resume: bool = MISSING
    ckpt_path: Optional[str] = MISSING  # noqa: UP045
    deterministic: Any = MISSING  # true, false or "warn": Lightning's own check
    trainer: dict[str, Any] = field(default_factory=dict)  # Lightning's Trainer checks its own arguments
    logger: dict[str, Any] = field(default_factory=dict)  # the logger= group: each logger checks its own options


@dataclass
class EvaluateConfig(LabelledBatches):
    eval_path: str = MISSING  # required here, optional (null) in training
    worst_k: int = MISSING


@dataclass
class PredictConfig(Batches, Seeded):
    test_path: str = MISSING  # required here, optional (null) in training
    preprocess: str = MISSING
    output: str = MISSING
    errors_output: str = MISSING
    grid_output: Optional[str] = MISSING  # noqa: UP045
    grid_size: int = MISSING


@dataclass
class ExportConfig(ModelFile):
    format: str = MISSING
    output: Optional[str] = MISSING  # noqa: UP045
    opset: int = MISSING


@dataclass
class ServeConfig(ImageReading):
    host: str = MISSING
    port: int = MISSING
    workers: int = MISSING
    max_batch_size: int = MISSING
    batch_timeout: float = MISSING
    max_request_bytes: int = MISSING
    log_level: str = MISSING


SCHEMAS: dict[str, type] = {
    "train": TrainConfig, "evaluate": EvaluateConfig, "predict": PredictConfig, "export": ExportConfig,
    "serve": ServeConfig,
}


# --------------------------------------------------------------------------- value rules, one per key name


@dataclass(frozen=True)
class Rule:
    """``allowed`` says in words what ``ok(value)`` accepts; ``example`` is a valid command-line value."""

    allowed: str
    ok: Callable[[Any], bool]
    example: str


def _in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[Any], bool]:
    def ok(value: float) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return math.isfinite(value) and above and below

    return ok


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _at_least(low: int) -> Callable[[Any], bool]:
    return lambda value: value >= low


def _one_of(choices: Sequence[str], fold_case: bool = False) -> Callable[[Any], bool]:
    allowed = {c.lower() for c in choices} if fold_case else set(choices)
    return lambda value: (value.lower() if fold_case else value) in allowed


def _img_size_ok(value: int | list[int]) -> bool:
    sizes = value if isinstance(value, list) else [value]
    return len(sizes) == (2 if isinstance(value, list) else 1) and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= MIN_IMG_SIZE for s in sizes
    )


def _class_weight_ok(weights: Sequence[float] | None) -> bool:
    return weights is None or (
        all(math.isfinite(w) and w >= 0 for w in weights) and sum(weights) > 0
    )


def _delegated(check: Callable[[Any], object]) -> Callable[[Any], bool]:
    """A rule whose grammar has its own parser, which raises a ConfigError with the details."""

    def ok(value: Any) -> bool:
        check(value)
        return True

    return ok


RULES: dict[str, Rule] = {
    "model_name": Rule(MODEL_NAMES_ALLOWED, _delegated(check_model_name), "mobilenetv3_small"),
    "class_number": Rule("a whole number >= 2 (the number of class folders in train_path)", _at_least(2), "10"),
    "dropout": Rule("a number in [0, 1)", _in(0, 1, high_open=True), "0.2"),
    "bn_momentum": Rule("a number in (0, 1]", _in(0, 1, low_open=True), "0.1"),
    "precise_bn_batches": Rule("a whole number >= 0 (0 = off)", _at_least(0), "32"),
    "output_stride": Rule(f"one of {', '.join(map(str, OUTPUT_STRIDES))} (32 = torchvision's MobileNetV3 unchanged; "
                          "16 or 8 keep more resolution for small inputs)", _one_of(OUTPUT_STRIDES), "16"),
    "img_size": Rule(f"a whole number >= {MIN_IMG_SIZE} or [height, width] of such numbers (MobileNetV3 "
                     "downsamples 32x)", _img_size_ok, "32"),
    "try_to_train_items": Rule("a whole number >= 0 (0 = all)", _at_least(0), "1000"),
    "batch_size": Rule("a positive whole number", _at_least(1), "128"),
    "num_workers": Rule("a whole number >= 0", _at_least(0), "2"),
    "max_image_pixels": Rule("a positive whole number (the largest width x height decoded)", _at_least(1),
                             "40000000"),
    "on_bad_image": Rule(" or ".join(BAD_IMAGE_POLICIES), _one_of(BAD_IMAGE_POLICIES), "skip"),
    "augment": Rule("degrees / translate / scale / shear ranges", _delegated(parse_augment), "{degrees:10}"),
    "random_seed": Rule("a whole number in [0, 2**32)", _in(0, 2**32 - 1), "42"),
    "optimizer": Rule(f"one of {', '.join(OPTIMIZER_NAMES)} (case-insensitive)",
                      _one_of(OPTIMIZER_NAMES, fold_case=True), "AdamW"),
    "learning_rate": Rule("a positive number", _positive, "0.002"),
    "weight_decay": Rule("a number >= 0 (0 = off)", _in(0, math.inf, high_open=True), "0.0001"),
    "scheduler": Rule("a schedule", _delegated(parse_scheduler), "default-0.1-3"),
    "warmup_epoch": Rule("a whole number >= 0", _at_least(0), "1"),
    "label_smooth": Rule("a number in [0, 1) (0 = plain cross-entropy)", _in(0, 1, high_open=True), "0.1"),
    "class_weight": Rule("null or a list of class_number finite numbers >= 0, not all 0", _class_weight_ok,
                         "[1,1,1,1,1,1,1,1,1,2]"),
    "freeze_nonlinear_epoch": Rule("a whole number >= 0 (0 = never freeze)", _at_least(0), "2"),
    "epochs": Rule("a positive whole number", _at_least(1), "10"),
    "early_stop_patient": Rule("a whole number >= 0 (0 = never stop early)", _at_least(0), "5"),
    "gradient_clip_val": Rule("null or a number >= 0 (0 or null = no clipping)",
                              lambda v: v is None or _in(0, math.inf, high_open=True)(v), "1.0"),
    "ema_decay": Rule("null or a number in (0, 1)", lambda v: v is None or _in(0, 1, True, True)(v), "0.999"),
    "metrics": Rule(f"a list of {', '.join(METRICS)}", lambda names: all(n in METRICS for n in names),
                    "[acc,f1]"),
    "worst_k": Rule("a whole number >= 0", _at_least(0), "32"),
    "preprocess": Rule(" or ".join(PREPROCESSORS), _one_of(list(PREPROCESSORS)), "mnist"),
    "grid_size": Rule("a whole number >= 0 (0 = no picture)", _at_least(0), "32"),
    "format": Rule(" or ".join(EXPORT_FORMATS), _one_of(EXPORT_FORMATS), "onnx"),
    "host": Rule("127.0.0.1 (this machine only), or 0.0.0.0 / :: to accept connections from other machines",
                 _one_of(SERVE_HOSTS), "127.0.0.1"),
    "port": Rule("a whole number from 1024 to 65535", _in(1024, 65535), "8000"),
    "workers": Rule("a positive whole number", _at_least(1), "1"),
    "max_batch_size": Rule(f"a whole number from 1 (no batching) to {MAX_SERVE_BATCH}", _in(1, MAX_SERVE_BATCH), "16"),
    "batch_timeout": Rule(f"seconds from 0 to under {SERVE_REQUEST_TIMEOUT_S:g}",
                          _in(0, SERVE_REQUEST_TIMEOUT_S, high_open=True), "0.005"),
    "max_request_bytes": Rule("a positive whole number", _at_least(1), "10000000"),
    "log_level": Rule(" or ".join(SERVE_LOG_LEVELS), _one_of(SERVE_LOG_LEVELS), "warning"),
    "opset": Rule("an ONNX opset number >= 7", _at_least(7), "18"),
}


# --------------------------------------------------------------------------- cross-key rules


def _class_weight_per_class(cfg: DictConfig) -> str | None:
    weights = cfg.get("class_weight")
    if weights is not None and len(weights) != cfg.class_number:
        return (f"class_weight: has {len(weights)} values but class_number={cfg.class_number}; give one weight per "
                "class folder (in sorted order), or class_weight=null.")
    return None


def _epochs_after_warmup(cfg: DictConfig) -> str | None:
    if cfg.warmup_epoch and cfg.warmup_epoch >= cfg.epochs:
        return (f"warmup_epoch: {cfg.warmup_epoch} leaves no epoch after the warm-up (epochs={cfg.epochs}); "
                "use fewer warm-up epochs or more epochs.")
    return None


def _resume_or_ckpt_path(cfg: DictConfig) -> str | None:
    if cfg.resume and cfg.ckpt_path:
        return (f"resume=true and ckpt_path={cfg.ckpt_path} both choose a checkpoint to continue from; "
                "keep one of them.")
    return None


CROSS_RULES: dict[str, list[Callable[[DictConfig], str | None]]] = {
    "train": [_class_weight_per_class, _epochs_after_warmup, _resume_or_ckpt_path,
              lambda cfg: output_stride_problem(cfg.model_name, cfg.output_stride)],
}


# --------------------------------------------------------------------------- checking


def validated(cfg: DictConfig, command: str) -> DictConfig:
    """``cfg`` typed by ``command``'s dataclass and checked against every rule; a ConfigError otherwise."""
    schema = SCHEMAS[command]
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as error:
        raise _type_error(error, cfg, schema, command) from None
    missing = [spec.name for spec in fields(schema) if OmegaConf.is_missing(typed, spec.name)]  # resolves nothing
    if missing:
        raise ConfigError(f"{missing[0]}: has no value; set it, e.g. {missing[0]}=<value> (in conf/{command}.yaml).")
    for spec in fields(schema):
        rule = RULES.get(spec.name)
        if rule is None:
            continue
        value = _plain(OmegaConf.select(typed, spec.name, throw_on_missing=True))
        if value is None and _optional(spec.type):
            continue
        if not rule.ok(value):
            raise ConfigError(f"{spec.name}: got {value!r}; allowed: {rule.allowed}; e.g. {spec.name}={rule.example}.")
    for cross_rule in CROSS_RULES.get(command, []):
        message = cross_rule(typed)
        if message:
            raise ConfigError(message)
    if "img_size" in typed:  # parsed here, once: every module after takes [height, width]
        typed.img_size = list(parse_img_size(_plain(typed.img_size)))
    return typed


def arguments_for(target: Callable[..., Any], cfg: DictConfig, **given: Any) -> dict[str, Any]:
    """Keyword arguments for ``target``: each of its parameters that ``cfg`` has a key for, as a plain value,
    then ``given`` (values that come from elsewhere, e.g. the class names read from the data)."""
    parameters = inspect.signature(target).parameters
    return {**{name: _plain(cfg[name]) for name in parameters if name in cfg}, **given}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def _optional(annotation: str) -> bool:
    return annotation.startswith("Optional[") or annotation == "Any"


def _type_error(error: OmegaConfBaseException, cfg: DictConfig, schema: type, command: str) -> ConfigError:
    key = str(error.full_key or "")
    top = key.split(".")[0].split("[")[0]
    declared = {spec.name: spec.type for spec in fields(schema)}
    if top not in declared:
        return ConfigError(
            f"{key}: not a key of `digitcls.{command}` (a typo?). Valid keys: {', '.join(declared)}. New keys "
            "are declared in src/digitcls/schema.py."
        )
    value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    rule = RULES.get(top)
    allowed = f"; allowed: {rule.allowed}; e.g. {top}={rule.example}" if rule else ""
    return ConfigError(f"{key}: got {_plain(value)!r}, which is not {_type_words(declared[top])}{allowed}.")


def _type_words(annotation: str) -> str:
    """The dataclass annotation (source text, as ``from __future__ import annotations`` keeps it) in words."""
    words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string"}
    base = annotation.removeprefix("Optional[").removesuffix("]")
    if base.startswith("list["):
        described = f"a list of {words[base[5:-1]].removeprefix('a ')}s"
    elif base.startswith("dict["):
        described = "a mapping of keys to values"
    else:
        described = words.get(base, "a value")
    return f"{described} or null" if annotation.startswith("Optional[") else described
