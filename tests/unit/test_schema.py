"""Each config key is declared once, in digitcls.schema: the YAML files, the docs table and the constructors'
defaults follow from those declarations, and these tests fail when one of them drifts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from digitcls import schema
from digitcls.choices import parse_img_size
from digitcls.data.datamodule import DigitDataModule
from digitcls.model.module import DigitClassifier

REGENERATE = "stale: run `python -m digitcls.schema` (it rewrites conf/*.yaml's keys and docs/configuration.md's table)"


@pytest.mark.parametrize("path", sorted(schema.generated(), key=str), ids=lambda p: p.name)
def test_generated_files_are_up_to_date(path: Path) -> None:
    assert path.read_text() == schema.generated()[path], f"{path}: {REGENERATE}"


@pytest.mark.parametrize("command", sorted(schema.SCHEMAS))
def test_each_composed_yaml_holds_the_declared_defaults(command: str) -> None:
    """A second path: Hydra composes conf/<command>.yaml with no override; every declared key has its default
    (the same config with the keys removed from the YAML would fail here, not merely fall back on the dataclass)."""
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        cfg = compose(config_name=command)
    for spec in schema.declared(command):
        if "group" in spec.metadata:
            assert spec.name in cfg, spec.name  # the defaults list selects the group
            continue
        assert spec.name in cfg, f"{spec.name} is declared for {command} but missing from conf/{command}.yaml"
        value = OmegaConf.to_container(cfg, resolve=False)[spec.name]
        assert value == schema.default_of(spec), spec.name


def test_eval_path_is_an_evaluate_key_only() -> None:
    assert [c for c in schema.SCHEMAS if "eval_path" in {s.name for s in schema.declared(c)}] == ["evaluate"]


@pytest.mark.parametrize("target", [DigitClassifier, DigitDataModule], ids=lambda t: t.__name__)
def test_constructor_defaults_are_the_declared_ones(target: type) -> None:
    """A notebook user who builds the model or the data in Python gets what `python -m digitcls.train` uses."""
    declared = {spec.name: schema.default_of(spec) for spec in schema.declared("train")}
    declared["img_size"] = list(parse_img_size(declared["img_size"]))  # the schema passes it on as [height, width]
    checked = []
    for name, parameter in inspect.signature(target).parameters.items():
        if name in declared and parameter.default is not inspect.Parameter.empty:
            default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            assert default == declared[name], f"{target.__name__}({name}={parameter.default!r}) but {declared[name]!r}"
            checked.append(name)
    assert len(checked) >= 8, checked
    assert target is not DigitClassifier or len(inspect.signature(target).parameters["class_names"].default) == (
        declared["class_number"]
    )


def test_keys_between_markers_are_replaced_and_missing_markers_named() -> None:
    markers = ("<!-- a -->", "<!-- /a -->")
    text = "intro\n<!-- a -->\nold\nlines\n<!-- /a -->\noutro\n"
    assert schema.between(text, markers, "new") == "intro\n<!-- a -->\nnew\n<!-- /a -->\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        schema.between("no markers", markers, "new")
