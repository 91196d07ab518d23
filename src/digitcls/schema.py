"""Every config key declared once: type, default, rule and one line of help, in one dataclass per command.

``conf/<command>.yaml``'s keys and docs/configuration.md's key table are written from these declarations by
``python -m digitcls.schema`` (tests/unit/test_schema.py fails when either is stale). :func:`validated` applies
them and turns each violation into a :class:`~digitcls.errors.ConfigError` naming the key, the value and what is
allowed (the entry points print it and exit with status 2). The schema is checked inside the task rather than
through Hydra's defaults list, because Hydra reports composition errors itself (status 1, its own wording).
A key named like an argument of ``DigitClassifier`` or ``DigitDataModule`` reaches it through
:func:`arguments_for`: the argument, defaulting to ``TRAIN.<key>``, is the key's use.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from digitcls import atomic
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


# --------------------------------------------------------------------------- rules


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
    return weights is None or (all(math.isfinite(w) and w >= 0 for w in weights) and sum(weights) > 0)


def _delegated(check: Callable[[Any], object]) -> Callable[[Any], bool]:
    """A rule whose grammar has its own parser, which raises a ConfigError with the details."""

    def ok(value: Any) -> bool:
        check(value)
        return True

    return ok


def setting(default: Any, help: str, rule: Rule | None = None) -> Any:
    """One config key's declaration: its default, one line of help (the comment in ``conf/<command>.yaml`` and the
    text of docs/configuration.md) and, when not every value of its type is valid, its rule."""
    metadata = {"help": help, "rule": rule}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def redefault(schema: type, name: str, default: Any) -> Any:
    """The setting ``name`` declared in ``schema``, with another default for one command."""
    spec = next(spec for spec in fields(schema) if spec.name == name)
    return setting(default, spec.metadata["help"], spec.metadata["rule"])


def group(choice: str, help: str) -> Any:
    """A config group (``trainer=``, ``logger=``): its files under conf/ hold the values and check their own."""
    return field(default_factory=dict, metadata={"help": help, "rule": None, "group": choice})


# --------------------------------------------------------------------------- one dataclass per command
# Optional[...] (not `X | None`): OmegaConf reads these annotations at run time on Python 3.10.


@dataclass
class ModelFile:  # every command reads or writes a checkpoint
    model_path: Optional[str] = setting(  # noqa: UP045
        None, "a .ckpt (evaluate, predict, serve: or an .onnx export); null = the newest training run's best "
        "checkpoint (train: the checkpoint to test after training, null = this run's best)")


@dataclass
class ImageReading(ModelFile):
    # 40 megapixels: far above any digit photo, and a decoded image stays around 120 MB (a 1 KB PNG can
    # declare 50,000 x 50,000 pixels: 7.5 GB decoded, or an OpenCV assertion above its own 1 Gpixel limit)
    max_image_pixels: int = setting(
        40_000_000, "an image whose header declares more pixels (width x height) is not decoded: a bad image, or "
        "413 in serve", Rule("a positive whole number", _at_least(1), "40000000"))


@dataclass
class Batches(ImageReading):
    batch_size: int = setting(128, "images per batch, per process", Rule("a positive whole number", _at_least(1), "128"))
    num_workers: int = setting(2, "DataLoader worker processes (folder reading only); in predict, threads decoding "
                               "images ahead of the model", Rule("a whole number >= 0", _at_least(0), "2"))


@dataclass
class LabelledBatches(Batches):
    on_bad_image: str = setting("skip", "a corrupt or empty image: skip it with one warning naming it, or error",
                                Rule(" or ".join(BAD_IMAGE_POLICIES), _one_of(BAD_IMAGE_POLICIES), "skip"))
    output_dir: str = setting("${hydra:runtime.output_dir}", "where the run writes its files (Hydra's run folder)")


@dataclass
class Seeded:
    random_seed: int = setting(42, "seeds Python, NumPy, torch and the workers (0 is a valid seed)",
                               Rule("a whole number in [0, 2**32)", _in(0, 2**32 - 1), "42"))


@dataclass
class TrainConfig(LabelledBatches, Seeded):
    model_name: str = setting(
        "mobilenetv3", "mobilenetv3 (large) or mobilenetv3_small; shufflenetv2, adv-efficientnet-b2, "
        "se_resnext50_32x4d, xception or timm/<name> (docs/models.md)",
        Rule(MODEL_NAMES_ALLOWED, _delegated(check_model_name), "mobilenetv3_small"))
    class_number: int = setting(10, "number of classes: must equal the number of class folders in train_path",
                                Rule("a whole number >= 2 (the number of class folders in train_path)", _at_least(2),
                                     "10"))
    pretrained: Optional[str] = setting(  # noqa: UP045
        None, "a local weights file (state dict or Lightning checkpoint); never downloads")
    dropout: float = setting(0.2, "dropout before the last linear layer",
                             Rule("a number in [0, 1)", _in(0, 1, high_open=True), "0.2"))
    bn_momentum: float = setting(0.1, "BatchNorm momentum; torchvision's 0.01 makes short runs' eval accuracy collapse",
                                 Rule("a number in (0, 1]", _in(0, 1, low_open=True), "0.1"))
    precise_bn_batches: int = setting(
        32, "before each validation, recompute the BatchNorm statistics on this many training batches; 0 = off",
        Rule("a whole number >= 0 (0 = off)", _at_least(0), "32"))
    output_stride: int = setting(
        32, "MobileNetV3's downsampling: 32 = torchvision's network; 16 or 8 keep more resolution for 28-32 px digits",
        Rule(f"one of {', '.join(map(str, OUTPUT_STRIDES))} (32 = torchvision's MobileNetV3 unchanged; 16 or 8 keep "
             "more resolution for small inputs)", _one_of(OUTPUT_STRIDES), "16"))
    channels_last: bool = setting(True, "NHWC memory format: faster on CPU for MobileNetV3 (docs/benchmarks.md)")
    raw_dir: str = setting("data/raw", "where the MNIST IDX files are looked for (raw_dir/MNIST/raw/ or raw_dir/)")
    train_path: str = setting("data/train", "training images, one sub-folder per class")
    val_path: str = setting("data/val", "validation images, one sub-folder per class")
    test_path: Optional[str] = setting(  # noqa: UP045
        "data/test", "train: labelled images to test the best checkpoint on (null = no test); predict: every image "
        "below it, at any depth, is labelled")
    img_size: Any = setting(32, "input size: an int or [height, width]", Rule(
        f"a whole number >= {MIN_IMG_SIZE} or [height, width] of such numbers (MobileNetV3 downsamples 32x)",
        _img_size_ok, "32"))
    try_to_train_items: int = setting(0, "0 = all training images, else a seeded random subset of that many",
                                      Rule("a whole number >= 0 (0 = all)", _at_least(0), "1000"))
    data_cache: bool = setting(False, "decode each split once into a uint8 tensor cached in data/.cache/ (read per batch, "
                               "with a warning, when it would take more than half the free memory)")
    augment: Optional[dict[str, Any]] = setting(  # noqa: UP045
        {"degrees": 10.0, "translate": 0.1, "scale": [0.9, 1.1], "shear": 0.0},
        "random affine on training batches only; null = off",
        Rule("degrees / translate / scale / shear ranges", _delegated(parse_augment), "{degrees:10}"))
    optimizer: str = setting("AdamW", "Adam, AdamW, SGD (Nesterov, momentum 0.9), AdaBelief or Ranger",
                             Rule(f"one of {', '.join(OPTIMIZER_NAMES)} (case-insensitive)",
                                  _one_of(OPTIMIZER_NAMES, fold_case=True), "AdamW"))
    learning_rate: float = setting(0.002, "peak learning rate",
                                   Rule("a positive number", _in(0, math.inf, True, True), "0.002"))
    weight_decay: float = setting(0.0001, "weight decay; 0 = off",
                                  Rule("a number >= 0 (0 = off)", _in(0, math.inf, high_open=True), "0.0001"))
    scheduler: str = setting("default-0.1-3", "default-F-P, step-S-G, SGDR-T0-TMULT, multi-M1,M2-G, cosine, onecycle "
                             "or none (see the scheduler grammar)",
                             Rule("a schedule", _delegated(parse_scheduler), "default-0.1-3"))
    warmup_epoch: int = setting(0, "warm-up epochs: the lr ramps every batch from learning_rate/10 to learning_rate",
                                Rule("a whole number >= 0", _at_least(0), "1"))
    label_smooth: float = setting(0.1, "label smoothing of the cross-entropy; 0 = plain cross-entropy",
                                  Rule("a number in [0, 1) (0 = plain cross-entropy)", _in(0, 1, high_open=True), "0.1"))
    class_weight: Optional[list[float]] = setting(  # noqa: UP045
        None, "a list of class_number loss weights, or null",
        Rule("null or a list of class_number finite numbers >= 0, not all 0", _class_weight_ok, "[1,1,1,1,1,1,1,1,1,2]"))
    freeze_nonlinear_epoch: int = setting(0, "train only the head for this many epochs first, then everything",
                                          Rule("a whole number >= 0 (0 = never freeze)", _at_least(0), "2"))
    epochs: int = setting(10, "maximum epochs", Rule("a positive whole number", _at_least(1), "10"))
    early_stop_patient: int = setting(5, "stop after this many epochs without a better val accuracy; 0 = never; not used "
                                      "with onecycle or cosine, which end where their schedule has annealed",
                                      Rule("a whole number >= 0 (0 = never stop early)", _at_least(0), "5"))
    gradient_clip_val: Optional[float] = setting(  # noqa: UP045
        None, "clip the gradient norm (Lightning, after backward); null or 0 = no clipping",
        Rule("null or a number >= 0 (0 or null = no clipping)", _in(0, math.inf, high_open=True), "1.0"))
    ema_decay: Optional[float] = setting(  # noqa: UP045
        None, "e.g. 0.999: validate and save an exponential moving average of the weights",
        Rule("null or a number in (0, 1)", _in(0, 1, True, True), "0.999"))
    save_best_only: bool = setting(True, "true: save a checkpoint when val accuracy improves; false: every epoch")
    save_one_only: bool = setting(True, "true: keep a single file, the best, never replaced by a worse one")
    metrics: list[str] = setting(["acc", "f1"], "logged per stage: acc (micro), f1, precision, recall (macro)",
                                 Rule(f"a list of {', '.join(METRICS)}", lambda names: all(n in METRICS for n in names),
                                      "[acc,f1]"))
    resume: bool = setting(False, "true: continue from this run folder's last.ckpt, else the newest under outputs/")
    ckpt_path: Optional[str] = setting(None, "continue from this checkpoint")  # noqa: UP045
    deterministic: Any = setting(False, "passed to the Trainer: true, false or warn")
    trainer: dict[str, Any] = group("default", "Lightning Trainer arguments (conf/trainer/): accelerator, devices, "
                                    "strategy, num_nodes, precision (null: 32-true on CPU, bf16-mixed on GPUs that "
                                    "have it, else 16-mixed), ...; each checked by Lightning")
    logger: dict[str, Any] = group("csv", "csv, tensorboard, mlflow, wandb, or several: logger=[csv,mlflow]; "
                                   "the CSV logger is always written")


@dataclass
class EvaluateConfig(LabelledBatches):
    batch_size: int = redefault(Batches, "batch_size", 256)
    eval_path: str = setting("data/test", "labelled folders that evaluate scores: <eval_path>/<class name>/<image>")
    worst_k: int = setting(32, "how many of the most confident mistakes to show",
                           Rule("a whole number >= 0", _at_least(0), "32"))


@dataclass
class PredictConfig(Batches, Seeded):
    batch_size: int = redefault(Batches, "batch_size", 256)
    random_seed: int = redefault(Seeded, "random_seed", 0)
    test_path: str = redefault(TrainConfig, "test_path", "data/test")
    preprocess: str = setting("none", "none, or mnist for photos/scans of digits: invert, crop, fit 20x20, centre",
                              Rule(" or ".join(PREPROCESSORS), _one_of(list(PREPROCESSORS)), "mnist"))
    output: str = setting("pre.csv", "image_id (path relative to test_path), label (class name), confidence")
    errors_output: str = setting("pre_errors.csv", "unreadable images: path, reason (only written when there are some)")
    grid_output: Optional[str] = setting(  # noqa: UP045
        "predictions.png", "a seeded random sample with predicted labels, wrong ones in red; null = none")
    grid_size: int = setting(32, "images in that picture; 0 = no picture",
                             Rule("a whole number >= 0 (0 = no picture)", _at_least(0), "32"))


@dataclass
class ExportConfig(ModelFile):
    format: str = setting("onnx", "onnx, torchscript or all",
                          Rule(" or ".join(EXPORT_FORMATS), _one_of(EXPORT_FORMATS), "onnx"))
    output: Optional[str] = setting(  # noqa: UP045
        None, "file stem of the export; null = next to the checkpoint, same name (.onnx / .pt)")
    opset: int = setting(18, "ONNX opset", Rule("an ONNX opset number >= 7", _at_least(7), "18"))


@dataclass
class ServeConfig(ImageReading):
    host: str = setting("127.0.0.1", "127.0.0.1: this machine only; 0.0.0.0 or :: listen on every interface",
                        Rule("127.0.0.1 (this machine only), or 0.0.0.0 / :: to accept connections from other "
                             "machines", _one_of(SERVE_HOSTS), "127.0.0.1"))
    port: int = setting(8000, "the HTTP port; one already in use is an error naming it",
                        Rule("a whole number from 1024 to 65535", _in(1024, 65535), "8000"))
    workers: int = setting(1, "model worker processes (LitServe workers_per_device, on CPU)",
                           Rule("a positive whole number", _at_least(1), "1"))
    max_batch_size: int = setting(16, "requests run together in one forward pass; 1 = no batching",
                                  Rule(f"a whole number from 1 (no batching) to {MAX_SERVE_BATCH}",
                                       _in(1, MAX_SERVE_BATCH), "16"))
    batch_timeout: float = setting(0.005, "seconds a worker waits for a batch to fill",
                                   Rule(f"seconds from 0 to under {SERVE_REQUEST_TIMEOUT_S:g}",
                                        _in(0, SERVE_REQUEST_TIMEOUT_S, high_open=True), "0.005"))
    max_request_bytes: int = setting(10_000_000, "a larger request body is refused (413) before it is read",
                                     Rule("a positive whole number", _at_least(1), "10000000"))
    log_level: str = setting("info", "uvicorn/LitServe log level: warning hides the per-request access lines",
                             Rule(" or ".join(SERVE_LOG_LEVELS), _one_of(SERVE_LOG_LEVELS), "warning"))


SCHEMAS: dict[str, type] = {
    "train": TrainConfig, "evaluate": EvaluateConfig, "predict": PredictConfig, "export": ExportConfig,
    "serve": ServeConfig,
}
TRAIN = TrainConfig()  # the declared defaults, for constructors that take the same keys (DigitClassifier, ...)


# --------------------------------------------------------------------------- cross-key rules


def _check_across_keys(cfg: DictConfig) -> None:
    """train's rules between keys: a ConfigError for the first one ``cfg`` breaks."""
    weights = cfg.get("class_weight")
    if weights is not None and len(weights) != cfg.class_number:
        raise ConfigError(f"class_weight: has {len(weights)} values but class_number={cfg.class_number}; give one "
                          "weight per class folder (in sorted order), or class_weight=null.")
    if cfg.warmup_epoch and cfg.warmup_epoch >= cfg.epochs:
        raise ConfigError(f"warmup_epoch: {cfg.warmup_epoch} leaves no epoch after the warm-up (epochs={cfg.epochs}); "
                          "use fewer warm-up epochs or more epochs.")
    if cfg.resume and cfg.ckpt_path:
        raise ConfigError(f"resume=true and ckpt_path={cfg.ckpt_path} both choose a checkpoint to continue from; "
                          "keep one of them.")
    if message := output_stride_problem(cfg.model_name, cfg.output_stride):
        raise ConfigError(message)


# --------------------------------------------------------------------------- checking


def validated(cfg: DictConfig, command: str) -> DictConfig:
    """``cfg`` typed by ``command``'s dataclass and checked against every rule; a ConfigError otherwise."""
    schema = SCHEMAS[command]
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as error:
        key = str(error.full_key or "")
        top = key.split(".")[0].split("[")[0]
        by_name = {spec.name: spec for spec in fields(schema)}
        if top not in by_name:
            raise ConfigError(
                f"{key}: not a key of `digitcls.{command}` (a typo?). Valid keys: {', '.join(by_name)}. New keys "
                "are declared in src/digitcls/schema.py."
            ) from None
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        rule = by_name[top].metadata.get("rule")
        allowed = f"; allowed: {rule.allowed}; e.g. {top}={rule.example}" if rule else ""
        raise ConfigError(
            f"{key}: got {_plain(value)!r}, which is not {_type_words(by_name[top].type)}{allowed}."
        ) from None
    if missing := [spec.name for spec in fields(schema) if OmegaConf.is_missing(typed, spec.name)]:  # resolves nothing
        raise ConfigError(f"{missing[0]}: has no value; set it, e.g. {missing[0]}=<value> (in conf/{command}.yaml).")
    for spec in fields(schema):
        rule = spec.metadata.get("rule")
        if rule is None:
            continue
        value = _plain(OmegaConf.select(typed, spec.name, throw_on_missing=True))
        optional_none = value is None and (spec.type.startswith("Optional[") or spec.type == "Any")
        if not optional_none and not rule.ok(value):
            raise ConfigError(f"{spec.name}: got {value!r}; allowed: {rule.allowed}; e.g. {spec.name}={rule.example}.")
    if command == "train":
        _check_across_keys(typed)
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


# --------------------------------------------------------------------------- what is derived from the declarations

CONF = Path(__file__).parent / "conf"
DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"
YAML_MARKERS = ("# --- keys: written by `python -m digitcls.schema` from src/digitcls/schema.py; edit them there ---",
                "# --- end of keys ---")
TABLE_MARKERS = ("<!-- table:config-keys -->", "<!-- /table:config-keys -->")


def default_of(spec: Any) -> Any:
    return spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).removesuffix("\n...\n").strip()


def declared(command: str) -> list[Any]:
    """The command's keys, its own first (in declaration order), then those it shares with other commands."""
    schema = SCHEMAS[command]
    return sorted(fields(schema), key=lambda spec: spec.name not in schema.__annotations__)


def yaml_keys(command: str) -> str:
    """The keys of conf/<command>.yaml: each declared default, commented with its help."""
    return "\n".join(f"{f'{spec.name}: {_yaml(default_of(spec))}':<32} # {spec.metadata['help']}"
                     for spec in declared(command) if "group" not in spec.metadata)  # groups: from the defaults list


def key_table() -> str:
    """docs/configuration.md's table: one row per declaration, the commands that take it, the recipes' values."""
    recipes = {path.stem: OmegaConf.load(path) for path in sorted((CONF / "experiment").glob("*.yaml"))}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for command in SCHEMAS:
        for spec in declared(command):
            rows.setdefault((spec.name, spec.metadata["help"]), {})[command] = spec
    lines = ["| key | commands | default | allowed | what it does |", "|---|---|---|---|---|"]
    for (name, help_text), specs in rows.items():
        spec = next(iter(specs.values()))
        if "group" in spec.metadata:
            defaults = f"`{name}={spec.metadata['group']}`"
        else:
            by_value: dict[str, list[str]] = {}
            for command, each in specs.items():
                by_value.setdefault(f"`{_yaml(default_of(each))}`", []).append(command)
            defaults = by_value.popitem()[0] if len(by_value) == 1 else "; ".join(
                f"{value} ({', '.join(commands)})" for value, commands in by_value.items())
            in_recipes = [f"*{recipe}*: `{_yaml(OmegaConf.to_container(cfg)[name])}`" for recipe, cfg in recipes.items()
                          if "train" in specs and cfg.get(name, default_of(specs["train"])) != default_of(specs["train"])]
            defaults += f" ({'; '.join(in_recipes)})" if in_recipes else ""
        rule = spec.metadata["rule"]
        allowed = rule.allowed if rule else _type_words(str(spec.type))
        cells = [f"`{name}`", ", ".join(specs), defaults, allowed, help_text]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def between(text: str, markers: tuple[str, str], content: str) -> str:
    """``text`` with what lies between the two marker lines replaced by ``content``."""
    head, found, rest = text.partition(markers[0] + "\n")
    _, end, tail = rest.partition(markers[1])
    if not (found and end):
        raise ValueError(f"markers {markers} not found")
    return f"{head}{markers[0]}\n{content}\n{markers[1]}{tail}"


def generated() -> dict[Path, str]:
    """Each derived file and the text it should hold."""
    parts = {CONF / f"{c}.yaml": (YAML_MARKERS, yaml_keys(c)) for c in SCHEMAS} | {DOCS: (TABLE_MARKERS, key_table())}
    return {path: between(path.read_text(), markers, content) for path, (markers, content) in parts.items()}


if __name__ == "__main__":  # python -m digitcls.schema: rewrite conf/*.yaml's keys and docs/configuration.md's table
    for path, text in generated().items():
        if path.read_text() != text:
            atomic.write_text(path, text)
            print(f"wrote {path}", file=sys.stderr)
