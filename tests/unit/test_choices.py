"""digitcls.choices (what the schema checks against, without importing torch) equals what the code accepts."""

from __future__ import annotations

import pytest

from digitcls import choices
from digitcls.data import datamodule
from digitcls.errors import ConfigError
from digitcls.model import backbones, module, optim


def test_each_name_list_equals_its_owners() -> None:
    assert set(backbones._MOBILENETS) == set(choices.MOBILENET_NAMES)  # backbones builds what choices names
    assert tuple(module.METRICS) == choices.METRICS
    assert choices.OPTIMIZER_NAMES == optim.OPTIMIZER_NAMES
    assert choices.BAD_IMAGE_POLICIES == datamodule.BAD_IMAGE_POLICIES


def test_parsers_are_the_owners() -> None:
    assert choices.parse_scheduler("step-3-0.5") == optim.parse_scheduler("step-3-0.5")
    assert choices.parse_augment({"degrees": 10}) == datamodule.parse_augment({"degrees": 10})
    with pytest.raises(ConfigError, match="scheduler"):
        choices.parse_scheduler("weekly")
