"""The docs' measured figures (README.md, docs/*.md) are generated from quiet bench/results/*.json, never typed."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import REPO

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCS = {path.name: path.read_text(encoding="utf-8") for path in DOC_FILES}


@pytest.fixture
def readme_tables(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import readme_tables

    return readme_tables


def result(name: str) -> dict[str, Any]:
    return json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())


def block_text(readme_tables: ModuleType, name: str) -> str:
    (text,) = [found for doc in DOCS.values() if (found := readme_tables.readme_table(doc, name)) is not None]
    return text


def test_every_generated_block_is_the_one_its_result_file_gives(readme_tables: ModuleType) -> None:
    for name, text in DOCS.items():
        assert readme_tables.stale_tables(text) == [], (
            f"{name} differs from bench/results: run python bench/readme_tables.py"
        )


def test_each_generated_table_has_one_block_in_the_docs(readme_tables: ModuleType) -> None:
    for name in readme_tables.TABLES:
        homes = [doc for doc, text in DOCS.items() if f"<!-- table:{name} -->" in text]
        assert (
            len(homes) == 1 and sum(text.count(f"<!-- /table:{name} -->") for text in DOCS.values()) == 1
        ), (
            name,
            homes,
        )


def copy_docs(readme_tables: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    for path in DOC_FILES:
        target = tmp_path / ("README.md" if path.name == "README.md" else f"docs/{path.name}")
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(readme_tables, "README", tmp_path / "README.md")
    monkeypatch.setattr(readme_tables, "DOCS_DIR", tmp_path / "docs")
    return tmp_path


def test_check_mode_names_a_block_edited_by_hand(
    readme_tables: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = copy_docs(readme_tables, monkeypatch, tmp_path)
    home = next(path for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
                if "<!-- table:accuracy -->" in path.read_text(encoding="utf-8"))  # fmt: skip
    original = home.read_text(encoding="utf-8")
    home.write_text(
        original.replace("<!-- table:accuracy -->\n", "<!-- table:accuracy -->\n99.99 % in 1 s\n")
    )
    assert readme_tables.main(["--check"]) == 1
    assert f"{home.name}: tables differ from bench/results: accuracy" in capsys.readouterr().out
    assert readme_tables.main([]) == 0  # rewriting restores the generated table
    assert home.read_text(encoding="utf-8") == original


def busy_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, readme_tables: ModuleType) -> Path:
    """A results folder: train.json from before the guard at load 1.96 on 2 cores, serve.json overridden."""
    results = tmp_path / "results"
    results.mkdir()
    for name in readme_tables.TABLES.keys() | {"latest", "predict", "ema", "accuracy"}:
        source = REPO / "bench" / "results" / f"{name}.json"
        if source.is_file():
            (results / source.name).write_text(source.read_text())
    train = result("train")
    train.pop("quiet", None)  # a file from before the quiet guard: judged by the load it recorded
    train["machine"]["load_average_1_5_15"], train["machine"]["cpu_count"] = [1.96, 1.87, 4.55], 2
    (results / "train.json").write_text(json.dumps(train))
    serve = result("serve")
    serve["quiet"] = {"busy": True, "why_busy": ["started at load 1.20 on 2 cores (--busy-ok)"]}
    (results / "serve.json").write_text(json.dumps(serve))
    monkeypatch.setattr(readme_tables, "RESULTS_DIR", results)
    return results


def test_the_generator_refuses_to_publish_a_busy_result(
    readme_tables: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    busy_results(tmp_path, monkeypatch, readme_tables)
    train = readme_tables.render("train")
    assert train.startswith("*Not measured quietly yet:* bench/results/train.json: recorded at a 1-minute load "
                            "average of 1.96 on 2 cores (above 0.3 per core)")  # fmt: skip
    assert "img/s" not in train and "GFLOP/s" not in train
    assert readme_tables.render("serve").startswith(
        "*Not measured quietly yet:* bench/results/serve.json: started at load 1.20 on 2 cores (--busy-ok)"
    )
    root = copy_docs(readme_tables, monkeypatch, tmp_path)
    assert readme_tables.main([]) == 0
    err = capsys.readouterr().err
    assert (
        "not publishing table train: bench/results/train.json: recorded at a 1-minute load average of 1.96"
        in err
    )
    assert (
        "not publishing table serve: bench/results/serve.json: started at load 1.20 on 2 cores (--busy-ok)"
        in err
    )
    written = "".join(
        path.read_text(encoding="utf-8") for path in [root / "README.md", *(root / "docs").glob("*.md")]
    )
    assert "bench/results/train.json: recorded at a 1-minute load average of 1.96" in written


def test_a_quiet_result_is_published_with_its_machine_and_date(
    readme_tables: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    results = busy_results(tmp_path, monkeypatch, readme_tables)
    serve = result("serve")
    serve["quiet"] = {"busy": False, "why_busy": []}
    (results / "serve.json").write_text(json.dumps(serve))
    table = readme_tables.render("serve")
    machine = serve["machine"]
    assert (
        f"Measured on {machine['cpu_model']} ({machine['cpu_count']} cores), {machine['date'][:10]}." in table
    )
    assert f"{serve['metrics']['no_batching']['requests_per_s']}" in table


def test_accuracy_rows_show_each_quiet_recipes_mean_and_worst_seed(readme_tables: ModuleType) -> None:
    table = block_text(readme_tables, "accuracy")
    for recipe, record in result("accuracy")["recipes"].items():
        row = next((line for line in table.splitlines() if f"`+experiment={recipe}`" in line), None)
        if row is None:  # a record of a recipe since renamed or removed
            continue
        if readme_tables.why_not_quiet(record):
            assert "not measured quietly yet" in row and "%" not in row.split("|")[5], row
        else:  # recomputed here from the per-seed lines, not read from the record's summary
            accs = [line["test_acc"] for line in record["seeds"]]
            assert f"{sum(accs) / len(accs):.2%}" in row and f"min {min(accs):.2%}" in row, row


def test_predict_and_tta_tables_quote_their_result_files(
    readme_tables: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Checked on copies marked quiet: the published tables' figures come from the files."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("predict", "tta", "latest"):
        copy = result(name) | {"quiet": {"busy": False, "why_busy": []}}
        (results / f"{name}.json").write_text(json.dumps(copy))
    monkeypatch.setattr(readme_tables, "RESULTS_DIR", results)
    predict = result("predict")["metrics"]
    ratio = predict["predict_images_per_s"] / predict["predict_one_at_a_time_images_per_s"]
    assert f"**{ratio:.1f}×**" in readme_tables.render("predict")
    tta = result("tta")
    chosen = tta["metrics"]["chosen_on_val"]
    val = {
        views: [run["acc"][views] for run in tta["details"]["val"].values()]
        for views in tta["details"]["view_sets"]
    }
    assert chosen == max(val, key=lambda views: sum(val[views]))  # chosen on val, as the table says
    assert f"**{chosen}** (chosen)" in readme_tables.render("tta")
