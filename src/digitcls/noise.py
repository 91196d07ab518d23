"""Third-party lines a normal training run would print that tell its user nothing, each silenced by one filter
on its exact message (every other warning and log line still shows):

- Lightning's "💡 Tip:" advertisements for its cloud products (litlogger, litmodels), at every Trainer start;
- the deprecation warning torch raises inside Lightning 2.6's own ``_pytree`` helper (Lightning's to fix);
- the CSV logger's "logs directory exists" warning: it writes into the Hydra run folder, which already holds
  ``.hydra/``, and deletes nothing there.
"""

from __future__ import annotations

import logging
import warnings

# where lightning_utilities' rank_zero_info logs, whichever of Lightning's packages set it up last
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip:")


def silence_third_party_noise() -> None:
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_not_a_tip)  # addFilter skips a filter that is already there
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    warnings.filterwarnings(
        "ignore",
        message=r"Experiment logs directory .* exists and is not empty",
        module=r"lightning\.fabric\.loggers\.csv_logs",
    )
