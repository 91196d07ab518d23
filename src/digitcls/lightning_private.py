"""Every private (underscored) API of Lightning and torch that digitcls still uses, in one place.

Each access goes through a name defined here, with why no public API does the job;
``tests/unit/test_lightning_private.py`` checks each one against the installed versions and names the API
that changed. ``pyproject.toml`` admits only the Lightning minor versions that test passed on.
"""

from __future__ import annotations

from collections.abc import Iterator


def nested_schedulers(scheduler: object) -> Iterator[object]:
    """``scheduler`` and, depth first, the schedulers inside it.

    torch's ``SequentialLR`` and ``ChainedScheduler`` keep their children only in ``_schedulers`` (no public
    accessor); :func:`digitcls.model.optim.adopt_new_param_groups` must extend each child's ``base_lrs``.
    """
    yield scheduler
    for child in getattr(scheduler, "_schedulers", ()):
        yield from nested_schedulers(child)
