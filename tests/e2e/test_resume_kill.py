"""A training process killed (SIGKILL) or stopped with Ctrl-C (SIGINT) mid-epoch resumes with ``resume=true``.

Real subprocesses on the tiny dataset: 200 training images in batches of 4 = 50 steps per epoch, so there is
an epoch's worth of steps between the first ``last.ckpt`` appearing and the end of the second epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from digitcls.model.module import load_classifier
from tests.helpers import cli_env, write_tiny_folders

BATCH = 4
STEPS_PER_EPOCH = 200 // BATCH  # tiny_folders: 200 training images
EPOCHS = 2
FAST = [
    "+experiment=mbv3",  # SGD + one-cycle: a per-step scheduler whose step count shows it was restored
    "model_name=mobilenetv3_small",
    f"epochs={EPOCHS}",
    "img_size=32",
    f"batch_size={BATCH}",
    "num_workers=0",
    "data_cache=false",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
]


def train_args(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "digitcls.train", *FAST,
        f"train_path={data / 'train'}", f"val_path={data / 'val'}", f"test_path={data / 'test'}",
        f"hydra.run.dir={run}", *extra,
    ]


class Started:
    """A training subprocess in its own process group (as a terminal's Ctrl-C reaches every process of a
    job, DataLoader workers included), its output in files so a full pipe never blocks it."""

    def __init__(self, args: list[str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout.txt", logs / "stderr.txt"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, env=cli_env(), start_new_session=True)

    def wait_for(self, path: Path, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not path.is_file():
            if self.process.poll() is not None:
                pytest.fail(f"training ended (status {self.process.returncode}) before {path} appeared:\n"
                            + self.output()[-3000:])
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                pytest.fail(f"{path} did not appear within {timeout} s")
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self, timeout: float = 900) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()


def run_to_end(args: list[str], logs: Path) -> tuple[int, str]:
    started = Started(args, logs)
    return started.finish(), started.output()


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def best_files(run: Path) -> list[Path]:
    return sorted(p for p in (run / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")


def checkpoint_state(ckpt: dict) -> dict:
    return next(state for key, state in ckpt["callbacks"].items() if key.startswith("BestCheckpoint"))


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The final weights of the same run, never stopped (same seed, same images, same CPU)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    data, run = write_tiny_folders(root / "tiny_folders"), root / "run"
    status, output = run_to_end(train_args(data, run), root / "logs")
    assert status == 0, output[-3000:]
    return load(run / "checkpoints" / "last.ckpt")["state_dict"]


def assert_same_weights(resumed: dict, uninterrupted: dict[str, torch.Tensor]) -> None:
    """Every parameter and BatchNorm statistic equal: the resumed run saw the same batches in the same order,
    with the same augmentation and dropout draws."""
    state = resumed["state_dict"]
    assert state.keys() == uninterrupted.keys()
    different = [key for key in state if not torch.equal(state[key], uninterrupted[key])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"


def assert_resumed_to_the_end(run: Path, resumed_from_epoch: int, output: str) -> dict:
    """The resumed run restored everything and ran only the epochs left; returns the final last.ckpt."""
    assert f"Restoring states from the checkpoint path at {run / 'checkpoints' / 'last.ckpt'}" in output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == EPOCHS
    # metrics.csv holds the resumed run's rows only: they start at the epoch it resumed in
    metrics = pd.read_csv(run / "metrics.csv")
    epochs = metrics["epoch"].dropna().astype(int)
    assert epochs.min() == resumed_from_epoch, metrics
    trained = set(metrics.dropna(subset=["train_loss_epoch"])["epoch"].astype(int))
    assert trained == set(range(resumed_from_epoch, EPOCHS))

    final = load(run / "checkpoints" / "last.ckpt")
    assert final["epoch"] == EPOCHS - 1  # written at the end of the last epoch
    assert final["global_step"] == EPOCHS * STEPS_PER_EPOCH  # no step run twice, none skipped
    assert final["optimizer_states"] and final["optimizer_states"][0]["state"], "SGD momentum buffers missing"
    # one-cycle steps once per batch: a scheduler restarted instead of restored would count fewer steps
    scheduler = final["lr_schedulers"][0]
    assert scheduler["_step_count"] == final["global_step"] + 1
    assert scheduler["total_steps"] == EPOCHS * STEPS_PER_EPOCH
    return final


def assert_best_kept_unless_beaten(run: Path, best_before: Path, score_before: float) -> None:
    summary = json.loads((run / "summary.json").read_text())
    if best_before.is_file():  # not beaten: still the run's best
        assert summary["best_checkpoint"] == str(best_before.resolve())
        assert summary["best_val_acc"] == pytest.approx(score_before)
    else:  # beaten: replaced by a strictly better one (save_one_only keeps a single best file)
        assert summary["best_val_acc"] > score_before
    assert len(best_files(run)) == 1


def test_sigkill_mid_epoch_then_resume_true_continues(
    tiny_folders: Path, tmp_path: Path, uninterrupted_weights: dict[str, torch.Tensor]
) -> None:
    """Killed during epoch 1: resumed from the end of epoch 0, it ends with the uninterrupted run's weights."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    first = Started(train_args(tiny_folders, run), tmp_path / "logs1")
    first.wait_for(last)  # written at the end of epoch 0
    time.sleep(0.5)  # into epoch 1
    first.signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL

    saved = load(last)  # intact: written atomically, whatever the moment of the kill
    assert saved["epoch"] == 0 and saved["global_step"] == STEPS_PER_EPOCH
    (best_before,) = best_files(run)
    score_before = float(checkpoint_state(saved)["best_model_score"])

    status, output = run_to_end(train_args(tiny_folders, run, "resume=true"), tmp_path / "logs2")
    assert status == 0, output[-3000:]
    final = assert_resumed_to_the_end(run, resumed_from_epoch=1, output=output)
    assert_best_kept_unless_beaten(run, best_before, score_before)
    assert_same_weights(final, uninterrupted_weights)


def test_ctrl_c_saves_last_ckpt_exits_130_and_resumes(
    tiny_folders: Path, tmp_path: Path, uninterrupted_weights: dict[str, torch.Tensor]
) -> None:
    """Ctrl-C mid-epoch: resumed at the next batch of the same order (torchdata's StatefulDataLoader, saved
    by Lightning) with the same random states, it ends with the uninterrupted run's weights, bit for bit."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    first = Started(train_args(tiny_folders, run), tmp_path / "logs1")
    first.wait_for(last)
    time.sleep(0.5)
    first.signal(signal.SIGINT)
    assert first.finish() == 130
    output = first.output()
    assert f"interrupted: saved {last}; resume with resume=true" in output
    assert "Traceback" not in output and "Detected KeyboardInterrupt" not in output

    saved = load(last)
    assert saved["epoch"] in (0, 1)
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert 0 < progress["processed"] < STEPS_PER_EPOCH  # saved at a batch boundary inside the epoch
    assert saved["global_step"] == saved["epoch"] * STEPS_PER_EPOCH + progress["processed"]
    assert load_classifier(last).class_names == [str(d) for d in range(10)]
    assert not list((run / "checkpoints").glob(".*.tmp"))
    (best_before,) = best_files(run)
    score_before = float(checkpoint_state(saved)["best_model_score"])

    (loader,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # torchdata's StatefulDataLoader
    assert loader["_num_yielded"] == progress["processed"]  # its position: resume goes on at the next batch
    assert loader["_sampler_iter_state"]["sampler_state"] == {"yielded": progress["processed"] * BATCH,
                                                              "epoch": saved["epoch"]}

    status, output = run_to_end(train_args(tiny_folders, run, "resume=true"), tmp_path / "logs2")
    assert status == 0, output[-3000:]
    assert "not resumable" not in output  # Lightning's warning for a loader without state_dict
    final = assert_resumed_to_the_end(run, resumed_from_epoch=saved["epoch"], output=output)
    assert_best_kept_unless_beaten(run, best_before, score_before)
    assert_same_weights(final, uninterrupted_weights)
