"""A non-editable install runs the same commands: the configs and the serve page ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_configs_and_composes_outside_the_repo(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("digitcls-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    for config in ("train.yaml", "predict.yaml", "evaluate.yaml", "experiment/mbv3.yaml", "trainer/ddp.yaml"):
        assert f"digitcls/conf/{config}" in names
    assert "digitcls/serve/static/index.html" in names  # `make serve`'s drawing page (package-data)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", "import digitcls, sys; print(digitcls.__file__)"], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip().startswith(str(site))
    result = subprocess.run(
        [sys.executable, "-m", "digitcls.train", "+experiment=mbv3", "epochs=3", "--cfg", "job"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "epochs: 3" in result.stdout and "optimizer: SGD" in result.stdout
