"""`logger=`: the CSV logger always, TensorBoard / MLflow / W&B on request; which loggers are built, and the
messages for a wrong choice. Each tracker's files are read back in `tests/e2e/test_logger_sweep.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from digitcls import loggers as loggers_module
from digitcls.errors import ConfigError
from digitcls.loggers import MAX_FOLDER_NAME, build_loggers, folder_name
from tests.helpers import TINY_TRAIN, compose_train


def compose(overrides: list[str], tmp_path: Path):
    return compose_train([*TINY_TRAIN, f"output_dir={tmp_path / 'run'}", *overrides])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ([], [CSVLogger]),
        (["logger=csv"], [CSVLogger]),
        (["logger=tensorboard"], [CSVLogger, TensorBoardLogger]),  # the CSV logger is always written
        (["logger=[csv,tensorboard]"], [CSVLogger, TensorBoardLogger]),
        (
            ["logger=[tensorboard,csv]"],
            [CSVLogger, TensorBoardLogger],
        ),  # CSV first: trainer.log_dir is the run
    ],
)
def test_logger_choice_builds_csv_first_plus_trackers(
    choice: list[str], expected: list[type], tmp_path: Path
) -> None:
    built = build_loggers(compose(choice, tmp_path), tmp_path / "run")
    assert [type(logger) for logger in built] == expected
    assert Path(built[0].log_dir) == tmp_path / "run"
    if len(built) > 1:  # a single run: <run>/tensorboard
        assert Path(built[1].log_dir) == tmp_path / "run" / "tensorboard"


def test_unknown_logger_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(MissingConfigException) as error:
        compose(["logger=neptune"], tmp_path)
    assert "logger/neptune" in str(error.value)
    assert all(name in str(error.value) for name in ("csv", "mlflow", "tensorboard", "wandb"))
    added_by_hand = compose(["+logger.neptune={project: x}"], tmp_path)  # past Hydra's check of the group
    with pytest.raises(
        ConfigError, match=r"logger: unknown logger 'neptune'; valid: csv, tensorboard, mlflow, wandb"
    ):
        build_loggers(added_by_hand, tmp_path / "run")


def test_missing_tracker_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every tracker is installed here; a package name that does not exist stands in for a missing one
    monkeypatch.setitem(loggers_module.TRACKERS, "wandb", "wandb_not_installed")
    with pytest.raises(
        ConfigError, match=r"logger=wandb needs the wandb_not_installed package.*make install"
    ):
        build_loggers(compose(["logger=wandb"], tmp_path), tmp_path / "run")


def test_mlflow_store_in_an_unwritable_folder_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = compose(["logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{blocker}/mlflow.db"], tmp_path)
    with pytest.raises(ConfigError, match=r"logger.mlflow.tracking_uri: cannot write to .*a-file"):
        build_loggers(cfg, tmp_path / "run")


def test_folder_name_has_no_separator_and_fits() -> None:
    assert folder_name("optimizer=SGD,train_path=data/train") == "optimizer=SGD,train_path=data_train"
    long_a, long_b = "x=" + "a" * 300, "x=" + "a" * 299 + "b"
    assert len(folder_name(long_a).encode()) <= MAX_FOLDER_NAME
    assert folder_name(long_a) != folder_name(long_b)  # cut to the same prefix, told apart by the hash


# --------------------------------------------------------------------------- a real sweep, read back
