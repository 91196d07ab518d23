"""Every bad input a user can give, in one table: exit status 2, one paragraph naming the key or file and
the fix, no traceback.

Each case runs the real Hydra entry point (``python -m digitcls.<command>`` minus the interpreter start-up,
which would cost ~6 s per case): ``sys.argv`` is set and ``main()`` called, so Hydra parses the overrides
exactly as on the command line. ``tests/e2e/`` (``test_bad_inputs.py``, ``test_train.py``, ``test_predict.py``)
runs a few of the same cases in a real subprocess. Bad *images* are skipped with a
warning by default (``test_datamodule.py``, ``test_predict.py``); ``on_bad_image=error`` is in the table.

``EARLY_CASES`` must answer within ``EARLY_S`` seconds, before any data is loaded or trained on. The schema
(``digitcls.schema``) is also checked in-process, on the composed config: a wrong type for every numeric and
bool key and a float for every int key (both lists built from the schema itself), and one case per rule.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

from digitcls.data.datamodule import DigitDataModule
from digitcls.errors import EXIT_USER_ERROR, ConfigError
from digitcls.model.module import DigitClassifier
from digitcls.schema import SCHEMAS, validated
from tests.helpers import TINY_TRAIN, compose_config, run_in_process, save_checkpoint

FAST = TINY_TRAIN


@dataclass
class Ctx:
    """What a case may use: the tiny dataset (its own copy), a scratch folder and a valid checkpoint."""

    data: Path
    tmp: Path
    checkpoint: Path

    def train_args(self, *overrides: str) -> list[str]:
        paths = [f"{key}_path={self.data / key}" for key in ("train", "val", "test")]
        return ["+experiment=mbv3", *FAST, *paths, f"output_dir={self.tmp / 'run'}", *overrides]


Setup = Callable[[Ctx], list[str]]


def _empty_dir(ctx: Ctx) -> Path:
    (ctx.tmp / "empty").mkdir(exist_ok=True)
    return ctx.tmp / "empty"


def _val_without_images(ctx: Ctx) -> list[str]:
    for image in (ctx.data / "val").rglob("*.png"):
        image.unlink()
    return ctx.train_args()


def _unknown_val_class(ctx: Ctx) -> list[str]:
    shutil.copytree(ctx.data / "val" / "3", ctx.data / "val" / "11")
    return ctx.train_args()


def _zero_byte_image_with_error_policy(ctx: Ctx) -> list[str]:
    (ctx.data / "train" / "4" / "blank.png").write_bytes(b"")
    return ctx.train_args("on_bad_image=error")


def _text_as_pretrained(ctx: Ctx) -> list[str]:
    (ctx.tmp / "weights.pt").write_text("not weights")
    return ctx.train_args(f"pretrained={ctx.tmp / 'weights.pt'}")


def _pickled_model_as_pretrained(ctx: Ctx) -> list[str]:
    torch.save(torch.nn.Linear(2, 2), ctx.tmp / "model.pt")  # a whole module, not a state dict
    return ctx.train_args(f"pretrained={ctx.tmp / 'model.pt'}")


def _under_a_file(ctx: Ctx, name: str) -> Path:
    """A path below a regular file: no folder can be made there."""
    (ctx.tmp / "a_file").write_text("")
    return ctx.tmp / "a_file" / name


def _truncated_checkpoint(ctx: Ctx) -> Path:
    path = ctx.tmp / "truncated.ckpt"
    path.write_bytes(ctx.checkpoint.read_bytes()[:5000])
    return path


def _three_class_checkpoint(ctx: Ctx) -> Path:
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["0", "1", "2"], img_size=(32, 32))
    return save_checkpoint(model, ctx.tmp / "three.ckpt")


def _text_file(ctx: Ctx, name: str) -> Path:
    (ctx.tmp / name).write_text("not a checkpoint")
    return ctx.tmp / name


def _weights_only_file(ctx: Ctx) -> Path:
    """Plain weights (a state dict) are a `pretrained` file, not a checkpoint to resume or test."""
    model = DigitClassifier(model_name="mobilenetv3_small", img_size=(32, 32))
    torch.save(model.state_dict(), ctx.tmp / "weights.pt")
    return ctx.tmp / "weights.pt"


def _file_instead_of(ctx: Ctx, split: str) -> Path:
    """A regular file where a labelled folder belongs (the folder itself is moved away)."""
    shutil.rmtree(ctx.data / split)
    (ctx.data / split).write_text("")
    return ctx.data / split


TRAIN, PREDICT, EVALUATE, EXPORT = "digitcls.train", "digitcls.predict", "digitcls.evaluate", "digitcls.export"

# (id, command, argv builder, words the message must contain)
CASES: list[tuple[str, str, Setup, list[str]]] = [
    # --- data folders
    ("missing train_path", TRAIN, lambda c: c.train_args(f"train_path={c.tmp / 'nowhere'}"),
     ["train_path", "nowhere", "make data"]),
    ("empty train_path", TRAIN, lambda c: c.train_args(f"train_path={_empty_dir(c)}"),
     ["empty", "class"]),
    ("split without images", TRAIN, _val_without_images, ["val", "no images"]),
    ("unknown class in val", TRAIN, _unknown_val_class, ["'11'", "val"]),
    ("class_number mismatch", TRAIN, lambda c: c.train_args("class_number=7"),
     ["class_number=7", "10 class folders", "class_number=10"]),
    ("zero-byte image, on_bad_image=error", TRAIN, _zero_byte_image_with_error_policy,
     ["blank.png", "on_bad_image=skip"]),
    # --- model, optimizer, scheduler
    ("unknown model_name", TRAIN, lambda c: c.train_args("model_name=mobilenetv3_tiny"),
     ["model_name", "mobilenetv3_small"]),
    ("unknown optimizer", TRAIN, lambda c: c.train_args("optimizer=Adamm"), ["optimizer", "AdamW"]),
    ("malformed scheduler", TRAIN, lambda c: c.train_args("scheduler=steplr-5-0.5"), ["scheduler", "step-S-G"]),
    # --- numbers that must be positive
    *[
        (f"{key}={value}", TRAIN, lambda c, o=f"{key}={value}": c.train_args(o), [key, "positive"])
        for key, value in [("learning_rate", 0), ("learning_rate", -0.1), ("batch_size", 0), ("batch_size", -8),
                           ("epochs", 0)]
    ],
    *[
        (f"img_size={value}", TRAIN, lambda c, o=f"img_size={value}": c.train_args(o), ["img_size", ">= 16"])
        for value in (0, "[32,-1]")
    ],
    # --- files the user points at
    ("missing pretrained", TRAIN, lambda c: c.train_args(f"pretrained={c.tmp / 'none.pt'}"),
     ["pretrained", "does not exist", "pretrained=null"]),
    ("pretrained is text", TRAIN, _text_as_pretrained, ["pretrained", "weights.pt"]),
    ("pretrained is a pickled model", TRAIN, _pickled_model_as_pretrained, ["pretrained", "state_dict"]),
    ("missing ckpt_path", TRAIN, lambda c: c.train_args(f"ckpt_path={c.tmp / 'last.ckpt'}"),
     ["ckpt_path", "does not exist"]),
    ("output folder cannot be written", TRAIN, lambda c: c.train_args(f"output_dir={_under_a_file(c, 'run')}"),
     ["output_dir", "a_file", "cannot write"]),
    ("missing model_path", PREDICT, lambda c: [f"model_path={c.tmp / 'none.ckpt'}", f"test_path={c.data / 'test'}"],
     ["model_path", "none.ckpt"]),
    ("truncated model_path", PREDICT,
     lambda c: [f"model_path={_truncated_checkpoint(c)}", f"test_path={c.data / 'test'}"],
     ["truncated.ckpt"]),
    ("model_path is plain weights", PREDICT,
     lambda c: [f"model_path={_weights_only_file(c)}", f"test_path={c.data / 'test'}"], ["model_path", "weights.pt"]),
    ("model_path is text", PREDICT,
     lambda c: [f"model_path={_text_file(c, 'model.ckpt')}", f"test_path={c.data / 'test'}"],
     ["model_path", "model.ckpt"]),
    ("model_path of another class count", EVALUATE,
     lambda c: [f"model_path={_three_class_checkpoint(c)}", f"eval_path={c.data / 'test'}",
                f"output_dir={c.tmp / 'eval'}"],
     ["three.ckpt", "'3'"]),
    ("empty predict folder", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={_empty_dir(c)}", f"output={c.tmp / 'pre.csv'}"],
     ["no images", "empty"]),
    ("predict output cannot be written", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={c.data / 'test'}",
                f"output={_under_a_file(c, 'pre.csv')}"],
     ["output", "a_file", "cannot write"]),
    ("export to an unknown format", EXPORT, lambda c: [f"model_path={c.checkpoint}", "format=tflite"],
     ["format", "onnx"]),
]

# Answered before any data is loaded or any training step: each within EARLY_S seconds.
EARLY_S = 15.0  # generous: the machine running the suite may be shared; these take ~1 s on a quiet CPU
EARLY_CASES: list[tuple[str, str, Setup, list[str]]] = [
    ("float where an int belongs", TRAIN, lambda c: c.train_args("epochs=2.5"), ["epochs", "2.5", "whole number"]),
    ("text for a number", TRAIN, lambda c: c.train_args("learning_rate=fast"), ["learning_rate", "'fast'"]),
    ("training model_path missing", TRAIN, lambda c: c.train_args(f"model_path={c.tmp / 'none.ckpt'}"),
     ["model_path", "none.ckpt", "does not exist"]),
    ("training model_path of other classes", TRAIN,
     lambda c: c.train_args(f"model_path={_three_class_checkpoint(c)}"),
     ["model_path", "['0', '1', '2']", "train_path"]),
    ("training model_path not a checkpoint", TRAIN,
     lambda c: c.train_args(f"model_path={_text_file(c, 'model.ckpt')}"), ["model_path", "model.ckpt", "could not"]),
    ("truncated ckpt_path", TRAIN, lambda c: c.train_args(f"ckpt_path={_truncated_checkpoint(c)}"),
     ["ckpt_path", "truncated.ckpt", "truncated"]),
    ("ckpt_path is not a checkpoint", TRAIN, lambda c: c.train_args(f"ckpt_path={_weights_only_file(c)}"),
     ["ckpt_path", "weights.pt", "not a digitcls checkpoint"]),
    ("ckpt_path is text", TRAIN, lambda c: c.train_args(f"ckpt_path={_text_file(c, 'last.ckpt')}"),
     ["ckpt_path", "last.ckpt", "could not be read"]),
    ("resume and ckpt_path together", TRAIN,
     lambda c: c.train_args("resume=true", f"ckpt_path={c.checkpoint}"), ["resume=true", "ckpt_path"]),
    ("missing pretrained (before data)", TRAIN, lambda c: c.train_args(f"pretrained={c.tmp / 'none.pt'}"),
     ["pretrained", "does not exist"]),
    ("test_path is a file (train)", TRAIN, lambda c: c.train_args(f"test_path={_file_instead_of(c, 'test')}"),
     ["test_path", "is a file", "folder"]),
    ("eval_path is a file", EVALUATE,
     lambda c: [f"model_path={c.checkpoint}", f"eval_path={_file_instead_of(c, 'test')}",
                f"output_dir={c.tmp / 'eval'}"], ["eval_path", "is a file"]),
    ("test_path is a file (predict)", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={_file_instead_of(c, 'test')}",
                f"output={c.tmp / 'pre.csv'}"], ["test_path", "is a file"]),
    ("unknown preprocess", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={c.data / 'test'}", "preprocess=fancy"],
     ["preprocess", "'fancy'", "mnist"]),
    ("predict batch_size=0", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={c.data / 'test'}", "batch_size=0"],
     ["batch_size", "0", "positive"]),
    ("export output cannot be written", EXPORT,
     lambda c: [f"model_path={c.checkpoint}", f"output={_under_a_file(c, 'model')}"], ["output", "cannot write"]),
    ("a key no command has", TRAIN, lambda c: c.train_args("+epoch=3"), ["epoch", "not a key", "schema.py"]),
]


@pytest.mark.parametrize(
    ("command", "setup", "words", "limit_s"),
    [(*case[1:], None) for case in CASES] + [(*case[1:], EARLY_S) for case in EARLY_CASES],
    ids=[c[0] for c in CASES + EARLY_CASES],
)
def test_bad_input_is_one_clear_message(
    command: str,
    setup: Setup,
    words: list[str],
    limit_s: float | None,
    tiny_folders: Path,
    untrained_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = setup(Ctx(tiny_folders, tmp_path, untrained_checkpoint))
    importlib.import_module(command)  # the import is start-up, not the answer
    started = time.perf_counter()
    status = run_in_process(command, argv, tmp_path / "hydra", monkeypatch)
    elapsed = time.perf_counter() - started

    captured = capsys.readouterr()
    assert status == EXIT_USER_ERROR, captured.err[-2000:]
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith("error: "), captured.err[-2000:]
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in captured.out + captured.err
    if limit_s is not None:
        assert elapsed < limit_s, f"answered after {elapsed:.1f} s: the check ran after data loading or training"
        assert not (tmp_path / "run" / "checkpoints").exists(), "training started"


def test_full_error_env_shows_the_traceback(tiny_folders: Path, tmp_path: Path, monkeypatch) -> None:
    """HYDRA_FULL_ERROR=1 is the way to the traceback: the error is raised, not turned into a message."""
    from digitcls.errors import ConfigError

    ctx = Ctx(tiny_folders, tmp_path, tmp_path / "unused.ckpt")
    monkeypatch.setattr(sys, "argv", [TRAIN, *ctx.train_args("optimizer=Adamm"), f"hydra.run.dir={tmp_path}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="optimizer"):
        importlib.import_module(TRAIN).main()


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_ckpt(
    tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Epoch 0 trains and saves last.ckpt; then the training loss turns NaN, as a diverging run's does (here
    forced: the loss module returns NaN from the first training step of epoch 1). The run stops with a
    message naming epoch 1 and its step, and epoch 0's last.ckpt still holds finite weights."""
    steps_per_epoch = 200 // 16 + 1  # tiny_folders: 200 training images, batch_size=16
    real_forward = torch.nn.CrossEntropyLoss.forward
    training_calls = 0

    def diverging_forward(self, *args, **kwargs):
        nonlocal training_calls
        loss = real_forward(self, *args, **kwargs)
        if torch.is_grad_enabled():  # training steps only, not validation
            training_calls += 1
            if training_calls > steps_per_epoch:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", diverging_forward)
    ctx = Ctx(tiny_folders, tmp_path, tmp_path / "unused.ckpt")
    status = run_in_process(TRAIN, ctx.train_args("epochs=3", "scheduler=none"), tmp_path / "hydra", monkeypatch)

    err = capsys.readouterr().err
    assert status == EXIT_USER_ERROR, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert f"training loss became nan at epoch 1, step {steps_per_epoch}" in message, message
    assert "learning_rate" in message and "last.ckpt" in message
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and saved["global_step"] == steps_per_epoch
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


# --------------------------------------------------------------------------- the schema, in-process

def check(command: str, overrides: list[str]) -> str:
    """The message ``validated`` answers with, asserted to come within EARLY_S seconds."""
    cfg = compose_config(command, overrides)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        validated(cfg, command)
    assert time.perf_counter() - started < EARLY_S
    return str(error.value)


def _typed_keys(*types: str) -> list[tuple[str, str, str]]:
    """(command, key, type) for every key of every command whose type (or Optional type) is one of ``types``."""
    return [
        (command, spec.name, str(spec.type).removeprefix("Optional[").removesuffix("]"))
        for command, schema in SCHEMAS.items()
        for spec in fields(schema)
        if str(spec.type).removeprefix("Optional[").removesuffix("]") in types
    ]


NOT_OF_TYPE = {"int": "abc", "float": "abc", "bool": "maybe"}


@pytest.mark.parametrize(("command", "key", "kind"), _typed_keys("int", "float", "bool"),
                         ids=lambda v: str(v))
def test_every_numeric_and_bool_key_refuses_a_wrong_type(command: str, key: str, kind: str) -> None:
    message = check(command, [f"{key}={NOT_OF_TYPE[kind]}"])
    assert message.startswith(f"{key}: got '{NOT_OF_TYPE[kind]}'"), message
    assert {"int": "whole number", "float": "a number", "bool": "true or false"}[kind] in message


@pytest.mark.parametrize(("command", "key", "kind"), _typed_keys("int"), ids=lambda v: str(v))
def test_a_float_where_an_int_belongs(command: str, key: str, kind: str) -> None:
    message = check(command, [f"{key}=2.5"])
    assert message.startswith(f"{key}: got 2.5, which is not a whole number"), message


def test_the_type_tables_cover_the_numeric_keys() -> None:
    """The parametrizations above are built from the schema: make sure they found what they should."""
    names = {key for _, key, _ in _typed_keys("int", "float", "bool")}
    assert {"epochs", "batch_size", "learning_rate", "data_cache", "grid_size", "opset", "ema_decay"} <= names


# (command, override, words the message must contain): one or more cases per rule in digitcls.schema
RULE_CASES: list[tuple[str, str, list[str]]] = [
    ("train", "model_name=mobilenetv3_tiny", ["model_name", "mobilenetv3, mobilenetv3_small"]),
    ("train", "model_name=MobileNetV3", ["model_name"]),
    ("train", "class_number=1", ["class_number", ">= 2"]),
    ("train", "dropout=1.0", ["dropout", "[0, 1)"]),
    ("train", "bn_momentum=0", ["bn_momentum", "(0, 1]"]),
    ("train", "img_size=12", ["img_size", ">= 16"]),
    ("train", "output_stride=4", ["output_stride", "one of 32, 16, 8"]),
    ("train", "output_stride=64", ["output_stride", "one of 32, 16, 8"]),
    ("train", "output_stride=16.5", ["output_stride", "whole number"]),
    ("train", "precise_bn_batches=-1", ["precise_bn_batches", ">= 0 (0 = off)"]),
    ("train", "precise_bn_batches=1.5", ["precise_bn_batches", "whole number"]),
    ("train", "max_image_pixels=0", ["max_image_pixels", "positive whole number"]),
    ("predict", "max_image_pixels=-5", ["max_image_pixels", "positive whole number"]),
    ("evaluate", "max_image_pixels=1e9", ["max_image_pixels", "whole number"]),
    ("train", "img_size=[32,8]", ["img_size", "[height, width]"]),
    ("train", "img_size=[32,32,32]", ["img_size"]),
    ("train", "img_size=[32]", ["img_size", "[height, width]"]),
    ("train", "img_size=0", ["img_size", "got 0", ">= 16"]),
    ("train", "img_size=-3", ["img_size", "got -3", ">= 16"]),
    ("train", "img_size=[32,0]", ["img_size", "[32, 0]", ">= 16"]),
    ("train", "img_size='32'", ["img_size", "got '32'", "whole number"]),
    ("train", "img_size=true", ["img_size", "got True", "whole number"]),
    ("train", "img_size=[32.5,32]", ["img_size", "32.5", "whole number"]),
    ("train", "try_to_train_items=-1", ["try_to_train_items", ">= 0"]),
    ("train", "num_workers=-2", ["num_workers"]),
    ("train", "on_bad_image=ignore", ["on_bad_image", "skip or error"]),
    ("train", "+augment.rotate=10", ["augment", "rotate"]),
    ("train", "random_seed=-1", ["random_seed"]),
    ("train", "optimizer=Adamm", ["optimizer", "Adam, AdamW, SGD, AdaBelief, Ranger"]),
    ("train", "optimizer=adam_w", ["optimizer"]),
    ("train", "learning_rate=0", ["learning_rate", "positive"]),
    ("train", "learning_rate=-0.1", ["learning_rate", "positive"]),
    ("train", "learning_rate=nan", ["learning_rate", "positive"]),
    ("train", "weight_decay=-0.0001", ["weight_decay", ">= 0"]),
    ("train", "scheduler=steplr-5-0.5", ["scheduler", "step-S-G"]),
    ("train", "warmup_epoch=-1", ["warmup_epoch", ">= 0"]),
    ("train", "label_smooth=1.0", ["label_smooth", "[0, 1)"]),
    ("train", "class_weight=[1,-1,1,1,1,1,1,1,1,1]", ["class_weight", ">= 0"]),
    ("train", "class_weight=[0,0,0,0,0,0,0,0,0,0]", ["class_weight", "not all 0"]),
    ("train", "class_weight=[1,2,3]", ["class_weight", "3 values", "class_number=10"]),
    ("train", "freeze_nonlinear_epoch=-1", ["freeze_nonlinear_epoch", ">= 0"]),
    ("train", "epochs=0", ["epochs", "positive"]),
    ("train", "early_stop_patient=-1", ["early_stop_patient"]),
    ("train", "gradient_clip_val=-1", ["gradient_clip_val", ">= 0"]),
    ("train", "ema_decay=1.0", ["ema_decay", "(0, 1)"]),
    ("train", "metrics=[acc,top5]", ["metrics", "acc, f1, precision, recall"]),
    ("train", "warmup_epoch=15", ["warmup_epoch", "no epoch after the warm-up", "epochs=15"]),
    ("train", "save_best_only=sometimes", ["save_best_only", "true or false"]),
    ("evaluate", "worst_k=-1", ["worst_k"]),
    ("evaluate", "on_bad_image=ignore", ["on_bad_image", "skip or error"]),
    ("predict", "preprocess=fancy", ["preprocess", "none or mnist"]),
    ("predict", "grid_size=-1", ["grid_size"]),
    ("export", "format=tflite", ["format", "onnx or torchscript or all"]),
    ("export", "opset=3", ["opset", ">= 7"]),
    ("serve", "host=192.168.1.5", ["host", "'192.168.1.5'", "0.0.0.0"]),
    ("serve", "port=80", ["port", "1024 to 65535"]),
    ("serve", "workers=0", ["workers", "positive"]),
    ("serve", "max_batch_size=0", ["max_batch_size", "1 (no batching) to 1024"]),
    ("serve", "max_batch_size=5000", ["max_batch_size", "5000"]),
    ("serve", "batch_timeout=-1", ["batch_timeout", "under 30"]),
    ("serve", "max_request_bytes=0", ["max_request_bytes", "positive"]),
    ("serve", "max_image_pixels=-5", ["max_image_pixels", "positive"]),
    ("serve", "log_level=loud", ["log_level", "warning"]),
]


@pytest.mark.parametrize(("command", "override", "words"), RULE_CASES, ids=[c[1] for c in RULE_CASES])
def test_each_rule_names_key_value_and_what_is_allowed(command: str, override: str, words: list[str]) -> None:
    message = check(command, [override])
    for word in words:
        assert word in message, (word, message)


def test_the_shipped_configs_pass_the_schema() -> None:
    for command, overrides in (("train", []), ("train", ["experiment=mbv3_quick"]), ("evaluate", []),
                               ("predict", []), ("export", [])):
        validated(compose_config(command, overrides), command)


def test_a_value_of_the_right_type_is_converted() -> None:
    cfg = validated(compose_config("train", ["learning_rate=1", "img_size=[32,48]"]), "train")
    assert isinstance(cfg.learning_rate, float) and list(cfg.img_size) == [32, 48]


@pytest.mark.parametrize(("given", "pair"), [("img_size=28", [28, 28]), ("img_size=[20,36]", [20, 36])])
def test_img_size_leaves_validation_as_height_then_width(given: str, pair: list[int]) -> None:
    """Parsed once, here: the DataModule, the model and the exports take this pair as it is."""
    assert list(validated(compose_config("train", [given]), "train").img_size) == pair


# --------------------------------------------------------------------------- data cache on a read-only dataset

def test_data_cache_on_a_read_only_dataset_falls_back_to_memory(
    tiny_folders: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache folder beside the splits cannot be written: the run goes on with the decoded splits in memory,
    and one warning says where it tried to cache. (The parent is made read-only; root ignores permissions,
    so a file also stands where the cache folder would be made.)"""
    (tiny_folders / ".cache").write_text("")
    tiny_folders.chmod(0o555)
    try:
        datamodule = DigitDataModule(
            train_path=tiny_folders / "train", val_path=tiny_folders / "val", test_path=tiny_folders / "test",
            img_size=(32, 32), batch_size=16, num_workers=0, data_cache=True,
        )
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="digitcls"):
            datamodule.setup("fit")
        assert time.perf_counter() - started < EARLY_S
    finally:
        tiny_folders.chmod(0o755)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.uint8 and len(labels) == 16
    assert len(datamodule.train_dataset) == 200  # all in memory: no file was skipped
    warnings = [r.getMessage() for r in caplog.records if "data_cache" in r.getMessage()]
    assert warnings and str(tiny_folders / ".cache") in warnings[0] and "in memory" in warnings[0]
    assert (tiny_folders / ".cache").is_file()  # nothing written there
