"""Every file under ``src/digitcls/conf/`` composes as a user selects it, passes the schema, and builds.

Each file is composed with Hydra's compose API the way its command line selects it (``trainer=ddp``,
``+sweep=optuna``, ...), checked by ``digitcls.schema.validated``, then what it configures is built: the
loggers (in a scratch folder), a Lightning Trainer from the ``trainer`` keys, Hydra's callbacks, the
launcher and sweeper plugins, and every value a sweep would try is checked by the schema too. A new file in
a new folder fails here until ``SELECTED_BY`` says how it is selected.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

import digitcls.conf
from digitcls.devices import plan_devices
from digitcls.errors import ConfigError
from digitcls.loggers import TRACKERS, build_loggers
from digitcls.schema import validated

CONF = Path(digitcls.conf.__file__).parent
# folder -> the override that selects one of its files (composed with `train +experiment=mbv3`)
SELECTED_BY = {
    "experiment": "+experiment={name}",
    "trainer": "trainer={name}",
    "logger": "logger={name}",
    "sweep": "+sweep={name}",
    "launcher": "+launcher={name}",
    "hydra": "hydra={name}",
    "hydra/help": "hydra/help={name}",
}
LOGGER_CLASSES = {
    "csv": CSVLogger,
    "tensorboard": TensorBoardLogger,
    "mlflow": MLFlowLogger,
    "wandb": WandbLogger,
}
CONF_FILES = sorted(path.relative_to(CONF).as_posix() for path in CONF.rglob("*.yaml"))


def command_line(conf_file: str) -> tuple[str, list[str]]:
    """The command (primary config) and overrides that select ``conf_file``."""
    folder, _, name = conf_file.removesuffix(".yaml").rpartition("/")
    if not folder:
        return name, []
    assert folder in SELECTED_BY, f"conf/{conf_file}: say in SELECTED_BY how a file of {folder}/ is selected"
    selected = SELECTED_BY[folder].format(name=name)
    return "train", [selected] if folder == "experiment" else ["+experiment=mbv3", selected]


def compose_from(conf: Path, command: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name=command, overrides=overrides, return_hydra_config=with_hydra)


def swept_values(params: DictConfig | None) -> list[str]:
    """``key=value`` for every value a sweeper's ``params`` would try: each choice, or an interval's two ends."""
    parser = OverridesParser.create()
    values = []
    for key, spec in (params or {}).items():
        override = parser.parse_override(f"{key}={spec}")
        if override.is_interval_sweep():
            values += [f"{key}={override.value().start}", f"{key}={override.value().end}"]
        else:
            values += [f"{key}={value}" for value in override.sweep_string_iterator()]
    return values


def test_every_conf_folder_is_covered() -> None:
    """The parametrization below found the files (a moved conf package would leave it empty)."""
    folders = {path.rpartition("/")[0] for path in CONF_FILES}
    assert folders == {"", *SELECTED_BY}, folders
    assert {"train.yaml", "experiment/mbv3.yaml", "logger/wandb.yaml", "sweep/optuna.yaml"} <= set(CONF_FILES)


def check_conf_file(conf: Path, conf_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose ``conf_file`` of the config folder ``conf`` as selected, validate it and build what it configures."""
    command, overrides = command_line(conf_file)
    cfg = validated(compose_from(conf, command, overrides), command)
    if command != "train":
        return

    # the loggers it names, built as a run builds them (stores and folders in the scratch folder)
    chosen = [name for name in cfg.logger if name != "csv"]
    for name in set(chosen) & set(TRACKERS):
        pytest.importorskip(TRACKERS[name], reason=f"the loggers extra is not installed ({name})")
    monkeypatch.chdir(tmp_path)
    for variable in (
        "WANDB_MODE",
        "MLFLOW_DISABLE_TELEMETRY",
    ):  # set by build_loggers; restored after the test
        monkeypatch.setenv(variable, "")
    loggers = build_loggers(cfg, tmp_path)
    assert [type(logger) for logger in loggers] == [CSVLogger, *(LOGGER_CLASSES[name] for name in chosen)]

    # a Trainer from every trainer key, on this machine's CPU, with the devices and strategy it plans for
    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    planned, _ = plan_devices(trainer_kwargs, visible_gpus=0, multirun=False, cluster=False)
    trainer = L.Trainer(
        **{**planned, "accelerator": "cpu", "precision": "32-true"}, logger=False, default_root_dir=tmp_path
    )
    assert trainer.num_devices == (planned["devices"] if isinstance(planned["devices"], int) else 1)

    # Hydra's side: callbacks, the launcher and sweeper plugins a file selects, and every swept value
    hydra_cfg = compose_from(conf, command, overrides, with_hydra=True).hydra
    for callback in hydra_cfg.callbacks.values():
        assert isinstance(instantiate(callback), get_class(callback._target_))
    for plugin in (hydra_cfg.launcher, hydra_cfg.sweeper):
        if plugin._target_.startswith(
            "hydra_plugins."
        ):  # Hydra refuses to build its own built-ins from config
            assert isinstance(instantiate(plugin), get_class(plugin._target_))
    for value in swept_values(hydra_cfg.sweeper.get("params")):
        validated(compose_from(conf, command, [*overrides, value]), command)


@pytest.mark.parametrize("conf_file", CONF_FILES)
def test_conf_file_composes_validates_and_builds(
    conf_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_conf_file(CONF, conf_file, tmp_path, monkeypatch)


def test_swept_values_include_both_ends_of_an_interval() -> None:
    """What the check above validates for a search space; the grid's choices are checked where they run
    (tests/e2e/test_sweep.py::test_named_grid_runs_every_combination_without_dash_m)."""
    search = compose_from(CONF, "train", ["+sweep=optuna"], with_hydra=True).hydra.sweeper.params
    assert (
        swept_values(search)[:2] == ["learning_rate=0.0001", "learning_rate=0.01"]
        and len(swept_values(search)) == 6
    )


BROKEN_FILES = [  # (file added to a copy of conf/, its content, the error, words the error must contain)
    ("experiment/broken.yaml", "# @package _global_\noptimizer: Adamm\n", ConfigError, "optimizer"),
    ("trainer/broken.yaml", "defaults:\n  - default\nmax_epoch: 3\n", TypeError, "max_epoch"),
    ("logger/broken.yaml", "neptune: {}\n", ConfigError, "neptune"),
    (
        "sweep/broken.yaml",
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      epochs: 1,0\n",
        ConfigError,
        "epochs",
    ),
    ("callbacks/extra.yaml", "patience: 3\n", AssertionError, "SELECTED_BY"),
]


@pytest.mark.parametrize(
    ("conf_file", "content", "error", "words"), BROKEN_FILES, ids=[c[0] for c in BROKEN_FILES]
)
def test_a_broken_conf_file_fails_the_check(
    conf_file: str,
    content: str,
    error: type[Exception],
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above on a copy of conf/ with one broken file added: it fails, naming what is wrong."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / conf_file).parent.mkdir(exist_ok=True)
    (conf / conf_file).write_text(content)
    with pytest.raises(error, match=words):
        check_conf_file(conf, conf_file, tmp_path, monkeypatch)
