"""Each hyperparameter is declared once: the model's and the DataModule's arguments are config keys, reach the
constructors through ``schema.arguments_for`` and travel config -> ``hparams`` -> checkpoint -> loaded model,
with no code per key (the checks below iterate over the constructors' signatures)."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from digitcls.checkpoints import read_checkpoint
from digitcls.data.datamodule import DigitDataModule
from digitcls.model.module import DigitClassifier, load_classifier
from digitcls.schema import validated
from digitcls.train import build_datamodule, build_model
from tests.helpers import TINY_TRAIN, compose_train

CLASS_NAMES = [str(d) for d in range(10)]
# a value other than the constructor's default for every model argument, so that no default can pass for it
NOT_DEFAULTS = [
    "model_name=mobilenetv3_small", "dropout=0.3", "bn_momentum=0.2", "output_stride=16", "img_size=[32,40]",
    "optimizer=SGD", "learning_rate=0.05", "weight_decay=0.001", "scheduler=step-2-0.5", "warmup_epoch=1",
    "epochs=3", "label_smooth=0.05", "class_weight=[1,1,1,1,1,1,1,1,1,2]", "metrics=[acc,precision]",
    "channels_last=false", "batch_size=8", "try_to_train_items=24", "random_seed=7", "augment.degrees=5",
    "data_cache=true", "on_bad_image=error", "max_image_pixels=100000",
]  # fmt: skip


def arguments(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


def test_every_argument_round_trips_config_hparams_checkpoint_loaded_model(tiny_folders: Path, tmp_path: Path) -> None:
    cfg = validated(compose_train([
        *TINY_TRAIN, *NOT_DEFAULTS, f"train_path={tiny_folders / 'train'}", f"val_path={tiny_folders / 'val'}",
        f"test_path={tiny_folders / 'test'}", f"output_dir={tmp_path}",
    ]), "train")  # fmt: skip
    config = OmegaConf.to_container(cfg, resolve=True)  # the values as plain Python, independently of the code
    model_args, data_args = arguments(DigitClassifier), arguments(DigitDataModule)
    # every argument is a config key, except what the data decides (class names) or predict alone passes
    assert set(model_args) - set(config) == {"class_names"}
    assert set(data_args) - set(config) == {"class_names"}
    expected_model = {name: config.get(name, CLASS_NAMES) for name in model_args}
    assert all(expected_model[name] != spec.default for name, spec in model_args.items()), "a default passes"

    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.class_names)
    assert dict(model.hparams) == expected_model
    assert dict(datamodule.hparams) == {name: config.get(name) for name in data_args if name != "class_names"}

    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=cfg.epochs, limit_train_batches=1, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "round_trip.ckpt"
    trainer.save_checkpoint(path)

    saved = read_checkpoint(path, "round trip")  # weights_only: only plain values were written
    assert saved["hyper_parameters"] == expected_model
    assert saved["datamodule_hyper_parameters"] == dict(datamodule.hparams)
    loaded = load_classifier(path)
    assert dict(loaded.hparams) == expected_model
    assert loaded.backbone.classifier[-1].out_features == len(CLASS_NAMES)
    assert loaded.backbone.classifier[2].p == config["dropout"]  # the value reached the layer, not only hparams


def test_paths_given_as_path_objects_are_saved_as_strings(tiny_folders: Path) -> None:
    """Checkpoints are read back with weights_only, which refuses pathlib objects."""
    datamodule = DigitDataModule(tiny_folders / "train", tiny_folders / "val", None, img_size=(32, 32))
    assert datamodule.hparams.train_path == str(tiny_folders / "train")
    assert datamodule.hparams.test_path is None
