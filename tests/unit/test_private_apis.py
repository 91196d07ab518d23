"""digitcls's private-API entries (digitcls.private_apis) against the installed torch, Hydra and Lightning.

A failure names the API that changed: update the entry (and the pinned versions in pyproject.toml).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import os
import pkgutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning
import torch
import torchvision
from hydra.core.utils import JobReturn, JobStatus
from torch import nn
from torch.optim.lr_scheduler import ChainedScheduler, ConstantLR, SequentialLR, StepLR

import digitcls
from digitcls.private_apis import (
    STATE_DICT_METADATA,
    BatchNorm,
    failed_job_error,
    mobilenet_v3_blocks,
    nested_schedulers,
    wake_litserve_on_signals,
)

SRC = Path(digitcls.__file__).parent
VERSIONS = f"torch {torch.__version__}, lightning {lightning.__version__}"


def test_sequential_and_chained_schedulers_expose_their_children() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    hold, main = ConstantLR(optimizer, factor=1.0, total_iters=2), StepLR(optimizer, step_size=1)
    sequential = SequentialLR(optimizer, [hold, main], milestones=[2])
    chained = ChainedScheduler([StepLR(optimizer, step_size=1)])
    assert list(nested_schedulers(sequential)) == [sequential, hold, main], (
        f"torch.optim.lr_scheduler.SequentialLR._schedulers changed ({VERSIONS}): "
        "digitcls.private_apis.nested_schedulers no longer finds the schedulers inside a SequentialLR"
    )
    assert len(list(nested_schedulers(chained))) == 2, f"ChainedScheduler._schedulers changed ({VERSIONS})"


def test_state_dict_metadata_carries_module_versions() -> None:
    state = nn.Sequential(nn.BatchNorm2d(2)).state_dict()
    metadata = getattr(state, STATE_DICT_METADATA, None)
    assert metadata is not None and metadata["0"]["version"] == 2, (
        f"torch's state_dict no longer carries {STATE_DICT_METADATA!r} with BatchNorm's version ({VERSIONS})"
    )


def test_mobilenet_v3_blocks_and_batch_norm_base() -> None:
    for architecture, blocks in (("mobilenet_v3_large", 15), ("mobilenet_v3_small", 11)):
        table, last_channel = mobilenet_v3_blocks(architecture)
        assert len(table) == blocks and last_channel in (1280, 1024), (
            f"torchvision.models.mobilenetv3._mobilenet_v3_conf changed (torchvision {torchvision.__version__})"
        )
        assert all(hasattr(block, "stride") for block in table), "InvertedResidualConfig.stride is gone"
    flavours = (nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.LazyBatchNorm2d(), nn.SyncBatchNorm(2))
    assert all(isinstance(m, BatchNorm) for m in flavours), f"torch.nn.modules.batchnorm._BatchNorm changed ({VERSIONS})"
    assert not isinstance(nn.LayerNorm(2), BatchNorm)


def test_failed_job_error_reads_what_hydra_stored() -> None:
    error = ValueError("job failed")
    job_return = JobReturn(status=JobStatus.FAILED)
    job_return.return_value = error  # Hydra's public setter, as its run_job does
    assert failed_job_error(job_return) is error, "hydra.core.utils.JobReturn._return_value changed"


# --------------------------------------------------------------------------- nothing private elsewhere


def _private_attribute_reads(path: Path) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls``/``super()`` (another object's private attribute),
    and ``from library import _name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("digitcls"):
            found += [f"{path.relative_to(SRC)}:{node.lineno}: from {node.module} import {alias.name}"
                      for alias in node.names if _private(alias.name)]  # fmt: skip
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            own = (isinstance(owner, ast.Name) and owner.id in ("self", "cls")) or (
                isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super"
            )
            if not own:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_attribute_of_another_object_outside_private_apis() -> None:
    offenders = [hit for path in sorted(SRC.rglob("*.py")) if path.name != "private_apis.py"
                 for hit in _private_attribute_reads(path)]  # fmt: skip
    assert not offenders, "private attributes read outside digitcls.private_apis:\n" + "\n".join(offenders)


def _digitcls_classes() -> list[type]:
    classes = []
    for module_info in pkgutil.walk_packages([str(SRC)], prefix="digitcls."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return classes


def _library_source(base: type) -> str:
    try:
        return inspect.getsource(base)
    except (OSError, TypeError):  # a C extension class
        return ""


def test_no_digitcls_class_overrides_or_uses_a_private_library_member() -> None:
    """A subclass of a Lightning/torch/Hydra class must not define, or read through ``self``, a private member
    of its library base (e.g. ModelCheckpoint._save_checkpoint, ModelCheckpoint._last_global_step_saved)."""
    offenders = []
    for cls in _digitcls_classes():
        library_bases = [base for base in cls.__mro__[1:] if not base.__module__.startswith(("digitcls", "builtins"))]
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and _private(node.attr)}
        (body,) = tree.body
        used |= {node.name for node in body.body if isinstance(node, ast.FunctionDef) and _private(node.name)}
        for name in sorted(used):
            owner = next((base for base in library_bases
                          if name in vars(base) or f"self.{name}" in _library_source(base)), None)  # fmt: skip
            if owner is not None:
                offenders.append(f"{cls.__module__}.{cls.__qualname__}: {name} is private to "
                                 f"{owner.__module__}.{owner.__qualname__}")  # fmt: skip
    assert not offenders, "private library members used by digitcls classes:\n" + "\n".join(offenders)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# --------------------------------------------------------------------------- LitServe's shutdown wait

SIGNAL_TO_ANOTHER_THREAD = """
import multiprocessing, signal, sys, threading, time
from digitcls.private_apis import SlicedWait

def stop(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, stop)
manager = multiprocessing.Manager()
event = manager.Event()  # what LitServer.run waits on
if sys.argv[1] == "sliced":
    event = SlicedWait(event, 0.1)
other = threading.Thread(target=time.sleep, args=(60,), daemon=True)  # e.g. LitServe's worker monitor
other.start()
# the kernel may hand `kill <pid>` to any thread: here, deterministically, to the other one
threading.Timer(0.5, signal.pthread_kill, (other.ident, signal.SIGTERM)).start()
try:
    event.wait()
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def _stops_within(mode: str, seconds: float) -> bool:
    # its own process group: the manager process it forks is stopped with it, whatever the outcome
    process = subprocess.Popen([sys.executable, "-c", SIGNAL_TO_ANOTHER_THREAD, mode], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        stdout = ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return "stopped" in stdout


def test_a_signal_caught_by_another_thread_still_stops_the_wait() -> None:
    # the control: LitServe's own wait never wakes for it (the serve-stop tests' rare 10 s hang)
    assert not _stops_within("plain", 4), "a manager Event's wait() now wakes for a signal on another thread"
    assert _stops_within("sliced", 20)


def test_litserve_creates_its_shutdown_event_in_init_manager() -> None:
    import litserve as ls

    class Echo(ls.LitAPI):
        def setup(self, device: str) -> None: ...

        def predict(self, x: object) -> object:
            return x

    server = ls.LitServer(Echo(), accelerator="cpu")
    wake_litserve_on_signals(server)
    manager = server._init_manager(1)
    try:
        event = server._shutdown_event
        assert type(event).__name__ == "SlicedWait", f"LitServer._init_manager changed (litserve {ls.__version__})"
        assert not event.wait(0.01) and not event.is_set()
        event.set()
        assert event.wait() and event.is_set()
    finally:
        manager.shutdown()

