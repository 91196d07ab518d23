"""Every private (underscored) API of digitcls's libraries still in use, each behind one name here.

No Lightning private API is left: checkpoints go through ``ModelCheckpoint``'s public hooks, a
``CheckpointIO`` plugin and ``OnExceptionCheckpoint``. What remains belongs to torch, torchvision, Hydra and
LitServe, and each entry says why no public API does the job. ``tests/unit/test_private_apis.py`` checks every entry against
the installed libraries (naming the one that changed) and fails on any other private access in ``src``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidualConfig, _mobilenet_v3_conf

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn

# torch: the base class of every BatchNorm flavour (1d/2d/3d, lazy, SyncBatchNorm), for isinstance checks;
# torch has no public one (Lightning's BaseFinetuning uses the same)
BatchNorm = nn.modules.batchnorm._BatchNorm  # an alias: usable in annotations too

# torch: the attribute an ``nn.Module.state_dict()`` carries with each submodule's version (BatchNorm's
# ``num_batches_tracked`` upgrade reads it in ``load_state_dict``); a state dict rebuilt from plain values
# must carry it over, and torch names it only ``_metadata``
STATE_DICT_METADATA = "_metadata"


def nested_schedulers(scheduler: object) -> Iterator[object]:
    """``scheduler`` and, depth first, the schedulers inside it.

    torch's ``SequentialLR`` and ``ChainedScheduler`` keep their children only in ``_schedulers`` (no public
    accessor); :func:`digitcls.model.optim.adopt_new_param_groups` must extend each child's ``base_lrs``.
    """
    yield scheduler
    for child in getattr(scheduler, "_schedulers", ()):
        yield from nested_schedulers(child)


def mobilenet_v3_blocks(architecture: str) -> tuple[list[InvertedResidualConfig], int]:
    """torchvision's MobileNetV3 block table and last channel count (``mobilenet_v3_large``/``_small``). Only
    ``_mobilenet_v3_conf`` returns it: the public builders return a finished network, and digitcls sets the first
    stride-2 blocks' strides (``output_stride``) before building."""
    return _mobilenet_v3_conf(architecture)


def failed_job_error(job_return: JobReturn) -> Any:
    """The exception a failed Hydra job raised. ``JobReturn.return_value``, the public getter, re-raises it
    and writes a line to stderr; the sweep summary only needs to record it."""
    return job_return._return_value


def wake_litserve_on_signals(server: Any, every_s: float = 0.25) -> None:
    """Make ``LitServer.run``'s main thread notice a stop signal within ``every_s``.

    ``run`` blocks in ``_shutdown_event.wait()``, a multiprocessing-manager proxy: a socket read. The kernel may
    hand a process-directed signal (``kill <pid>``) to any thread, e.g. LitServe's worker monitor; Python then only
    flags it, and the main thread runs the handler when its read returns, which it never does. Waiting in slices
    lets the handler run. ``_init_manager`` creates the event; LitServe has no public way to replace it.
    """
    init_manager = server._init_manager

    def init_then_poll(*args: Any, **kwargs: Any) -> Any:
        manager = init_manager(*args, **kwargs)
        server._shutdown_event = SlicedWait(server._shutdown_event, every_s)
        return manager

    server._init_manager = init_then_poll


class SlicedWait:
    """An event whose ``wait()`` without a timeout waits in slices, returning to Python (and its signal handlers)
    between them; everything else is the wrapped event's."""

    def __init__(self, event: Any, every_s: float) -> None:
        self.event, self.every_s = event, every_s

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            return self.event.wait(timeout)
        while not self.event.wait(self.every_s):
            pass
        return True

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()
