"""The README's benchmark tables are generated from bench/results/*.json, never typed by hand."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def readme_tables(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import readme_tables

    return readme_tables


def result(name: str) -> dict[str, Any]:
    return json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())


def test_every_readme_table_is_the_one_its_result_file_gives(readme_tables: ModuleType) -> None:
    assert readme_tables.stale_tables(README) == [], (
        "README.md differs from bench/results: run python bench/readme_tables.py"
    )


def test_each_generated_table_has_one_block_in_the_readme(readme_tables: ModuleType) -> None:
    for name in readme_tables.TABLES:
        assert README.count(f"<!-- table:{name} -->") == 1 and README.count(f"<!-- /table:{name} -->") == 1, (
            name
        )


def test_check_mode_names_a_table_edited_by_hand(
    readme_tables: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edited = tmp_path / "README.md"
    edited.write_text(README.replace("| **plus2** (chosen) |", "| **plus2** (chosen!) |"), encoding="utf-8")
    monkeypatch.setattr(readme_tables, "README", edited)
    assert readme_tables.main(["--check"]) == 1
    assert "tta" in capsys.readouterr().out
    assert readme_tables.main([]) == 0  # rewriting restores the generated table
    assert edited.read_text(encoding="utf-8") == README


def test_accuracy_rows_show_each_recipes_mean_and_worst_seed(readme_tables: ModuleType) -> None:
    table = readme_tables.readme_table(README, "accuracy")
    for recipe, record in result("accuracy")["recipes"].items():
        row = next(line for line in table.splitlines() if f"`+experiment={recipe}`" in line)
        if "seeds" in record:  # recomputed here from the per-seed lines, not read from the record's summary
            accs = [line["test_acc"] for line in record["seeds"]]
            assert f"{sum(accs) / len(accs):.2%}" in row and f"min {min(accs):.2%}" in row, row


def test_predict_and_tta_tables_quote_their_result_files(readme_tables: ModuleType) -> None:
    predict = result("predict")["metrics"]
    ratio = predict["predict_images_per_s"] / predict["predict_one_at_a_time_images_per_s"]
    assert f"**{ratio:.1f}×**" in readme_tables.readme_table(README, "predict")
    tta = result("tta")
    chosen = tta["metrics"]["chosen_on_val"]
    val = {
        views: [run["acc"][views] for run in tta["details"]["val"].values()]
        for views in tta["details"]["view_sets"]
    }
    assert chosen == max(val, key=lambda views: sum(val[views]))  # chosen on val, as the table says
    assert f"**{chosen}** (chosen)" in readme_tables.readme_table(README, "tta")
