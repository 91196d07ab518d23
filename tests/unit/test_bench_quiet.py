"""bench/'s quiet guard: no measurement starts on a busy machine, and a run that was not quiet is marked busy.

The machine's readings (load average, /proc/stat, this process tree's CPU time, the clock) are stubbed, so
each case is a hand count: e.g. 60 CPU-s used by the machine during a 100 s run on 2 cores, 10 of them ours,
leaves 50 CPU-s to others = 0.25 per core, under the 0.3 bar.
"""

from __future__ import annotations

import argparse
from types import ModuleType, SimpleNamespace

import pytest

from tests.helpers import REPO


class Machine:
    """Stand-ins for the guard's readings; a test sets what the run's end reads."""

    def __init__(self, load: float, cores: int = 2) -> None:
        self.load, self.cores = load, cores
        self.clock, self.machine_cpu_s, self.own_cpu_s = 1000.0, 5000.0, 30.0

    def finish(self, wall_s: float, machine_cpu_s: float, own_cpu_s: float) -> None:
        self.clock += wall_s
        self.machine_cpu_s += machine_cpu_s
        self.own_cpu_s += own_cpu_s


@pytest.fixture
def benchlib(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.delenv("DIGITCLS_BENCH_BUSY_OK", raising=False)
    import benchlib

    return benchlib


def stub(benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(benchlib, "load_average", lambda: [machine.load, 0.5, 0.5])
    monkeypatch.setattr(benchlib, "core_count", lambda: machine.cores)
    monkeypatch.setattr(benchlib, "machine_busy_cpu_s", lambda: machine.machine_cpu_s)
    monkeypatch.setattr(benchlib, "own_tree_cpu_s", lambda: machine.own_cpu_s)
    monkeypatch.setattr(benchlib, "time", SimpleNamespace(monotonic=lambda: machine.clock))


def args(**flags: bool) -> argparse.Namespace:
    return argparse.Namespace(busy_ok=flags.get("busy_ok", False), quick=flags.get("quick", False))


def test_a_busy_machine_refuses_to_start_and_says_how_to_override(
    benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub(benchlib, monkeypatch, Machine(load=0.61))  # 0.61 / 2 cores = 0.305 per core
    with pytest.raises(SystemExit) as refused:
        benchlib.start_quiet(args())
    message = str(refused.value)
    assert "load average 0.61 on 2 cores is above 0.3 per core (0.60)" in message
    assert "--busy-ok" in message and "DIGITCLS_BENCH_BUSY_OK=1" in message


def test_a_quiet_run_passes(benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(load=0.59)
    stub(benchlib, monkeypatch, machine)
    guard = benchlib.start_quiet(args())
    machine.finish(wall_s=100, machine_cpu_s=60, own_cpu_s=10)  # others: 50 CPU-s / 100 s / 2 cores = 0.25
    record = guard.record()
    assert record["busy"] is False and record["why_busy"] == []
    assert record["other_processes_cpu_s"] == 50 and record["other_processes_per_core"] == 0.25
    assert record["load_average_before"] == [0.59, 0.5, 0.5] and record["cores"] == 2


def test_other_processes_taking_cpu_during_the_run_mark_it_busy(
    benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(load=0.1)
    stub(benchlib, monkeypatch, machine)
    guard = benchlib.start_quiet(args())
    machine.finish(wall_s=100, machine_cpu_s=200, own_cpu_s=130)  # others: 70 CPU-s = 0.35 per core
    record = guard.record()
    assert record["busy"] is True
    assert record["why_busy"] == ["other processes used 70 CPU-s during the 100 s run (0.35 per core)"]


@pytest.mark.parametrize(
    ("flags", "env", "why"),
    [
        ({"busy_ok": True}, None, "--busy-ok"),
        ({}, "1", "DIGITCLS_BENCH_BUSY_OK=1"),
        ({"quick": True}, None, "--quick smoke run"),
    ],
)
def test_an_overridden_busy_start_is_marked_busy(
    benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool], env: str | None, why: str
) -> None:
    machine = Machine(load=1.96)
    stub(benchlib, monkeypatch, machine)
    if env:
        monkeypatch.setenv("DIGITCLS_BENCH_BUSY_OK", env)
    guard = benchlib.start_quiet(args(**flags))
    machine.finish(wall_s=100, machine_cpu_s=100, own_cpu_s=100)  # nobody else ran: only the start was busy
    record = guard.record()
    assert record["busy"] is True
    assert record["why_busy"] == [f"started at load 1.96 on 2 cores ({why})"]


def test_the_readings_come_from_proc_stat_and_this_process(
    benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    stat = tmp_path / "stat"  # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 9999 50 4 6 40 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    monkeypatch.setattr(benchlib, "PROC_STAT", stat)
    monkeypatch.setattr(benchlib.os, "sysconf", lambda name: 100)  # jiffies per second
    assert benchlib.machine_busy_cpu_s() == pytest.approx((100 + 20 + 30 + 4 + 6 + 40) / 100)
    assert benchlib.own_tree_cpu_s() > 0


def test_finish_writes_the_verdict_into_the_results_json(
    benchlib: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    import json

    machine = Machine(load=1.0)
    stub(benchlib, monkeypatch, machine)
    monkeypatch.setattr(benchlib, "machine_facts", lambda: {"cpu_count": 2})
    run = argparse.Namespace(busy_ok=True, quick=False, output=tmp_path / "out.json")
    guard = benchlib.start_quiet(run)
    benchlib.finish("demo", run, {"metrics": {"x": 1}}, guard)
    written = json.loads(run.output.read_text())
    assert written["busy"] is True and written["quiet"]["why_busy"] == [
        "started at load 1.00 on 2 cores (--busy-ok)"
    ]
