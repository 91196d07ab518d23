"""`python -m digitcls.summarize <sweep dir>`: rebuild a sweep's summary.csv / summary.md and plot
every job's val acc per epoch into val_acc_curves.png.

The multirun callback writes the same files when a sweep ends; run this while a sweep is still going,
after jobs were re-run, or on a sweep whose callback never ran (e.g. killed, or launched remotely).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from digitcls.cli import friendly_errors
from digitcls.errors import DataError
from digitcls.reports.sweep import SUMMARY_MD, job_dirs, write_sweep_summary


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m digitcls.summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. multirun/2024-05-01/12-00-00")
    parser.add_argument("--no-plot", action="store_true", help="skip val_acc_curves.png")
    args = parser.parse_args(argv)
    sweep_dir: Path = args.sweep_dir
    if not job_dirs(sweep_dir):
        raise DataError(
            f"{sweep_dir}: no sweep jobs found (no */.hydra/overrides.yaml below it). Pass the folder of a "
            "multirun, e.g. `python -m digitcls.summarize multirun/2024-05-01/12-00-00`."
        )
    _, written = write_sweep_summary(sweep_dir, plot=not args.no_plot)
    print((sweep_dir / SUMMARY_MD).read_text())
    print("wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
