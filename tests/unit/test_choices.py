"""digitcls.choices (what the schema checks against, without importing torch) equals what the code accepts."""

from __future__ import annotations

from digitcls import choices
from digitcls.model import backbones, module, optim


def test_each_name_list_equals_its_owners() -> None:
    assert set(backbones._MOBILENETS) == set(choices.MOBILENET_NAMES)  # backbones builds what choices names
    assert tuple(module.METRICS) == choices.METRICS
    assert tuple(optim.OPTIMIZERS) == choices.OPTIMIZER_NAMES
