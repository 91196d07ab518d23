"""Every private (underscored) API of digitcls's libraries still in use, each behind one name here.

No Lightning private API is left: checkpoints go through ``ModelCheckpoint``'s public hooks, a
``CheckpointIO`` plugin and ``OnExceptionCheckpoint``. What remains belongs to torch, torchvision and Hydra, and each
entry says why no public API does the job. ``tests/unit/test_private_apis.py`` checks every entry against
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
    """torchvision's MobileNetV3 block table and last channel count (``mobilenet_v3_large``/``_small``).

    Only torchvision's ``_mobilenet_v3_conf`` returns it; the public builders return a finished network, and
    digitcls sets the first stride-2 blocks' strides (``output_stride``) before building; torchvision's ``dilated=True``
    would dilate the last stage instead.
    """
    return _mobilenet_v3_conf(architecture)


def failed_job_error(job_return: JobReturn) -> Any:
    """The exception a failed Hydra job raised. ``JobReturn.return_value``, the public getter, re-raises it
    and writes a line to stderr; the sweep summary only needs to record it."""
    return job_return._return_value
