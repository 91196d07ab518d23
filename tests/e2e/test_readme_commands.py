"""Every command in the README's ```bash blocks runs, in the README's order, in a fresh project folder.

The commands are read from README.md, not copied here: editing the README changes what runs. Each one runs
as written, in a folder holding only tiny generated MNIST-format IDX files under ``data/raw``, with small
settings appended (``ARGS=...`` for make, overrides for python -m) and the README's placeholders
(``path/to.ckpt``, ``my_photos``, ...) replaced by real files. ``make install`` and ``make test`` are the
two commands ``.ci/run`` itself runs; ``make notebook`` runs in ``test_notebook.py``. The sweep commands
train dozens of jobs, so they run in the slow suite.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_TRAIN, cli_env

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# the pages whose ```bash blocks run, in this order: the README, then docs/ (other pages use ```text blocks)
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

RUN_BY_CI = ("make install", "make test")
CLONE = ("git clone <the digitcls repository URL> digitcls", "cd digitcls")  # the test's project is the clone
# run by their own test, on tiny data: (command, test file, test function)
RUN_ELSEWHERE = {
    "make notebook": ("test_notebook.py", "test_notebook_runs_top_to_bottom_on_tiny_data"),
    "make serve": ("test_serve.py", "test_serve_command_starts_local_only_and_says_so"),  # runs until Ctrl-C
    "curl -F file=@3.png http://127.0.0.1:8000/predict": (
        "test_serve.py",
        "test_the_documented_curl_command_works",
    ),
}
TRAIN_SMALL = TINY_TRAIN
SWEEP_SMALL = [*TRAIN_SMALL, "try_to_train_items=32"]
PREDICT_SMALL = ["num_workers=0", "batch_size=64"]
SMALL_SETTINGS = {  # by the command's first words
    "make data": ["--val-size", "50"],
    "python -m digitcls.train -m": SWEEP_SMALL,
    "make sweep": SWEEP_SMALL,
    "python -m digitcls.train": TRAIN_SMALL,
    "make train": TRAIN_SMALL,
    "python -m digitcls.evaluate": PREDICT_SMALL,
    "make evaluate": PREDICT_SMALL,
    "python -m digitcls.predict": PREDICT_SMALL,
    "make predict": PREDICT_SMALL,
    "python -m digitcls.export": [],
}


def readme_commands() -> list[str]:
    """The command lines of the ```bash blocks of README.md and docs/*.md, comments and blank lines dropped, in order."""
    commands, in_bash = [], False
    for line in (line for page in PAGES for line in page.read_text().splitlines()):
        if line.startswith("```"):
            in_bash = line.strip() == "```bash" and not in_bash
            continue
        if in_bash:
            command = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment (never inside quotes here)
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def small_settings(command: str) -> list[str]:
    for prefix, settings in SMALL_SETTINGS.items():
        if command == prefix or command.startswith(prefix + " "):
            return settings
    raise AssertionError(f"README command {command!r}: add how to run it small to SMALL_SETTINGS")


def trained_checkpoint(project: Path) -> str:
    """The best checkpoint of the project's training run (what the README's placeholders stand for)."""
    summaries = list((project / "outputs").rglob("summary.json"))
    return json.loads(summaries[0].read_text())["best_checkpoint"] if summaries else "no-run-yet.ckpt"


def as_argv(command: str, project: Path) -> list[str]:
    """The README command as run in ``project``: this Python, real files for placeholders, small settings."""
    for placeholder in ("outputs/<run>/checkpoints/<best>.ckpt", "path/to.ckpt"):
        command = command.replace(placeholder, trained_checkpoint(project))
    argv = shlex.split(command)
    settings = small_settings(command)
    if argv[0] == "python":
        return [sys.executable, *argv[1:], *settings]
    assert argv[0] == "make", command
    args = [a for a in argv[1:] if a.startswith("ARGS=")]
    rest = [a for a in argv[1:] if not a.startswith("ARGS=")]
    joined = " ".join([*(a.removeprefix("ARGS=") for a in args), *settings])
    return [
        "make",
        "--no-print-directory",
        "-f",
        str(REPO / "Makefile"),
        *rest,
        f"PYTHON={sys.executable}",
        f"ARGS={joined}",
    ]


def run(command: str, project: Path) -> str:
    done = subprocess.run(
        as_argv(command, project), cwd=project, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"README command failed: {command}\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    return output


@pytest.fixture
def project(tiny_idx_dir: Path, tmp_path: Path) -> Path:
    """A folder with nothing but raw IDX files where `make data` looks, and a folder of digit photos."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    tiny_idx_dir.rename(project / "data" / "raw")
    # the README's training command prepares data/ itself, with MNIST's 5,000-image val split, which the tiny
    # IDX files cannot hold: prepared here as `make data` with its small setting would
    subprocess.run([sys.executable, "-m", "digitcls.data.prepare", "--raw-dir", "data/raw", "--out-dir", "data",
                    *SMALL_SETTINGS["make data"]], cwd=project, env=cli_env(), check=True, capture_output=True)  # fmt: skip
    photos = project / "my_photos"
    photos.mkdir()
    for digit in (3, 7):
        photo = np.full((160, 120, 3), 225, np.uint8)
        cv2.putText(photo, str(digit), (20, 130), cv2.FONT_HERSHEY_SIMPLEX, 4, (30, 30, 30), 12)
        cv2.imwrite(str(photos / f"{digit}.jpg"), photo)
    return project


def is_sweep(command: str) -> bool:
    return command.startswith(("make sweep", "python -m digitcls.train -m"))


def test_every_readme_command_is_covered() -> None:
    commands = readme_commands()
    assert "python -m digitcls.train +experiment=mbv3" in commands  # the parser found the main job
    ci = (REPO / ".ci" / "run").read_text()
    for command in commands:
        if command in RUN_BY_CI:
            assert re.search(rf"^\s*{re.escape(command)}\b", ci, re.MULTILINE), (
                f".ci/run must run {command!r}"
            )
        elif command in CLONE:
            continue
        elif command in RUN_ELSEWHERE:
            test_file, test_name = RUN_ELSEWHERE[command]
            assert f"def {test_name}(" in (Path(__file__).parent / test_file).read_text()
        else:
            small_settings(command)  # raises for a command nobody taught this test to run


def check_outputs(command: str, project: Path, output: str) -> None:
    """What each README command promises to leave behind, checked right after it ran."""
    if command == "make data":
        assert sorted(p.name for p in (project / "data").iterdir() if not p.name.startswith(".")) == [
            "raw",
            "test",
            "train",
            "val",
        ]
    elif command.startswith("python -m digitcls.train"):
        assert "== digitcls training summary ==" in output and Path(trained_checkpoint(project)).is_file()
    elif command.startswith("python -m digitcls.evaluate"):
        assert "accuracy" in output
    elif command.startswith("make predict"):
        predictions = pd.read_csv(project / "pre.csv")
        if "my_photos" in command:
            assert sorted(predictions["image_id"]) == ["3.jpg", "7.jpg"]
        else:
            assert len(predictions) == 50 and "images/s" in output  # every test image of the tiny dataset
    elif command.startswith("python -m digitcls.export"):
        assert Path(trained_checkpoint(project)).with_suffix(".onnx").is_file()


@pytest.mark.timeout(900)  # about ten commands, each a fresh interpreter
def test_readme_commands_run_in_order(project: Path) -> None:
    ran = []
    for command in readme_commands():
        if command in RUN_BY_CI or command in CLONE or command in RUN_ELSEWHERE or is_sweep(command):
            continue
        check_outputs(command, project, run(command, project))
        ran.append(command)
    assert len(list((project / "outputs" / "eval").glob("*/metrics.json"))) == 2  # the two evaluate commands
    assert len(ran) >= 7, ran


@pytest.mark.slow
def test_readme_sweep_commands_run(project: Path) -> None:
    run("make data", project)
    sweeps = [c for c in readme_commands() if is_sweep(c)]
    for command in sweeps:
        assert "summary" in run(command, project)
    summaries = sorted((project / "multirun").glob("*/*/summary.csv"))
    assert len(summaries) == len(sweeps) == 3
    # the full grid typed out, the same grid by name, and the grid with two optimizers
    assert [len(pd.read_csv(s)) for s in summaries] == [20, 20, 8]
