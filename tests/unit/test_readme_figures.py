"""The README's accuracy table is generated from bench/results/accuracy.json, never typed by hand."""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO


def test_readme_accuracy_table_is_the_one_accuracy_json_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import bench_accuracy

    recipes = json.loads((REPO / "bench" / "results" / "accuracy.json").read_text())["recipes"]
    table = bench_accuracy.accuracy_table(recipes)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("| recipe | model, input | optimizer, schedule |")
    assert readme[start:].split("\n\n", 1)[0] == table, (
        "README.md's accuracy table differs from bench/results/accuracy.json: "
        "paste `python bench/bench_accuracy.py --table`"
    )
    # every recipe measured over seeds shows its mean and its worst seed
    for recipe, record in recipes.items():
        if "seeds" in record:
            row = next(line for line in table.splitlines() if f"`+experiment={recipe}`" in line)
            assert f"{record['test_acc_mean']:.2%}" in row and f"min {record['test_acc_min']:.2%}" in row
