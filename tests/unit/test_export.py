"""Reading results out of a study database, on studies built directly (no training)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from rich.console import Console

from hpsearch import config, search, storage
from hpsearch import study as studyfile
from hpsearch.errors import StorageError, StudyError
from hpsearch.results import _catalog as catalog
from hpsearch.results import _export as export
from hpsearch.results import _reading as reading
from hpsearch.training import _data as data
from tests.helpers.export import build_study, write_spec


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture
def spec(tmp_path: Path) -> studyfile.StudySpec:
    return write_spec(tmp_path / "studies")


def test_best_export_trains_as_is(
    spec: studyfile.StudySpec, sqlite_url: str, tmp_path: Path
) -> None:
    study = build_study(spec, sqlite_url)
    exported = export.best_export("tiny", sqlite_url)
    assert exported["best_value"] == pytest.approx(0.83)
    assert exported["best_trial"] == 1
    assert exported["params"] == {"lr": 3e-3, "cell": "gru"}
    assert exported["counts"] == {
        "complete": 2,
        "pruned": 1,
        "failed": 1,
        "running": 0,
        "waiting": 0,
        "total": 4,
    }
    assert exported["spec"] == spec.to_dict()
    assert exported["data"]["sha256"] == data.SHA256
    assert set(exported["versions"]) == {"python", "hpsearch", "torch", "optuna"}
    assert "config" not in exported["user_attrs"]
    assert exported["user_attrs"]["seed"] == 1
    assert exported["learning_curve"] == {"1": pytest.approx(0.83)}

    path = tmp_path / "out" / "best.json"
    path.parent.mkdir()
    export.write_json(exported, path)
    loaded = config.load(path)
    recorded = config.from_mapping(study.trials[1].user_attrs["config"])
    assert recorded.device == "cpu" and recorded.threads == 2
    assert loaded == recorded.replace(device="auto")  # threads kept: CPU numerics depend on it
    assert loaded.cell == "gru" and loaded.lr == pytest.approx(3e-3) and loaded.hidden_dim == 8
    assert json.loads(path.read_text())["study"] == "tiny"
    assert [p.name for p in path.parent.iterdir()] == ["best.json"]  # no temporary left


def test_an_evaluation_of_an_earlier_best_is_not_shown_as_the_best_ones(
    spec: studyfile.StudySpec, sqlite_url: str
) -> None:
    study = build_study(spec, sqlite_url)
    evaluation = {"trial": 0, "seeds": [0], "test": {"mean": 0.5, "std": 0.0}, "runs": [{}]}
    study.set_user_attr(export.EVALUATION_ATTR, evaluation)  # trial 1 became the best since
    exported = export.best_export("tiny", sqlite_url)
    assert exported["best_trial"] == 1 and exported["evaluation"] is None
    assert "evaluated" not in _render(export.render_best(exported))
    study.set_user_attr(export.EVALUATION_ATTR, evaluation | {"trial": 1})
    exported = export.best_export("tiny", sqlite_url)
    assert exported["evaluation"]["trial"] == 1
    assert "test acc 0.5000 ± 0.0000 over 1 seeds" in _render(export.render_best(exported))


def test_no_complete_trial_is_a_study_error(spec: studyfile.StudySpec, sqlite_url: str) -> None:
    search.open_study(spec, sqlite_url, heartbeat=False)
    with pytest.raises(StudyError, match=r"'tiny' has no complete trial yet \(0 pruned"):
        export.best_export("tiny", sqlite_url)


def test_missing_study_names_the_available_ones(spec: studyfile.StudySpec, sqlite_url: str) -> None:
    build_study(spec, sqlite_url)
    with pytest.raises(StudyError) as info:
        export.best_export("tiyn", sqlite_url)
    message = str(info.value)
    assert message.startswith("no study 'tiyn' in sqlite:///")
    assert "available: tiny (did you mean 'tiny'?)" in message


def test_reading_never_creates_a_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(StudyError, match="the database does not exist yet"):
        reading.load_study_for_reading("tiny", url)
    write_spec(tmp_path / "studies")
    rows = catalog.study_rows(url, tmp_path / "studies")
    assert [(r["name"], r["state"]) for r in rows] == [("tiny", "not created")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies"]


def test_trials_csv_has_one_row_per_trial(
    spec: studyfile.StudySpec, sqlite_url: str, tmp_path: Path
) -> None:
    build_study(spec, sqlite_url)
    rows = list(csv.DictReader(io.StringIO(export.trials_csv("tiny", sqlite_url), newline="")))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert float(rows[1]["value"]) == pytest.approx(0.83)
    assert rows[3]["value"] == ""
    assert rows[1]["params_cell"] == "gru" and float(rows[1]["params_lr"]) == pytest.approx(3e-3)
    assert rows[3]["user_attrs_error"] == "boom"
    assert rows[0]["user_attrs_best_epoch"] == "1"
    assert not any("config" in column for column in rows[0])
    assert float(rows[0]["duration_s"]) >= 0


def test_study_rows_join_files_and_database(tmp_path: Path, sqlite_url: str) -> None:
    studies = tmp_path / "studies"
    spec = write_spec(studies, "tiny")
    write_spec(studies, "later")
    (studies / "broken.yaml").write_text("name: broken\nspace: 3\n", encoding="utf-8")
    build_study(spec, sqlite_url)
    optuna.create_study(study_name="orphan", storage=storage.open_storage(sqlite_url))
    rows = {r["name"]: r for r in catalog.study_rows(sqlite_url, studies)}
    assert list(rows) == ["broken", "later", "tiny", "orphan"]
    assert rows["broken"]["state"] == "invalid file"
    assert "space" in rows["broken"]["description"]
    assert rows["later"]["state"] == "not created" and rows["later"]["budget"] == 6
    tiny = rows["tiny"]
    assert (tiny["state"], tiny["complete"], tiny["pruned"], tiny["failed"]) == (
        "incomplete",
        2,
        1,
        1,
    )
    assert tiny["best_value"] == pytest.approx(0.83) and tiny["best_trial"] == 1
    assert tiny["description"] == "a tiny study for export tests"
    assert rows["orphan"]["file"] is None and rows["orphan"]["state"] == "incomplete"
    text = _render(catalog.render_studies(rows.values(), sqlite_url))
    assert "tiny" in text and "0.8300" in text and "3/6" in text
    assert f"studies in {sqlite_url}" in text


def _render(renderable: Any) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_render_best_shows_value_params_and_changes(
    spec: studyfile.StudySpec, sqlite_url: str
) -> None:
    build_study(spec, sqlite_url)
    text = _render(export.render_best(export.best_export("tiny", sqlite_url)))
    assert "0.8300" in text
    assert "gru" in text
    # hidden_dim 8 differs from the default 200; the reset device does not.
    assert any("hidden_dim" in line and "200" in line for line in text.splitlines())
    assert "device" not in text


# --- databases and studies hpsearch did not make (a hostile-input pass, seventh session) ------


def test_reading_never_writes_into_an_empty_or_foreign_sqlite_file(tmp_path: Path) -> None:
    import sqlite3

    empty = tmp_path / "empty.db"
    empty.touch()
    url = f"sqlite:///{empty}"
    with pytest.raises(StudyError, match="the database does not exist yet"):
        reading.load_study_for_reading("tiny", url)
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    before = other.read_bytes()
    with pytest.raises(StorageError, match=r"another program \(tables not Optuna's: customers\)"):
        reading.load_study_for_reading("tiny", f"sqlite:///{other}")
    with pytest.raises(StorageError, match="a SQLite database of another program"):
        catalog.study_rows(f"sqlite:///{other}", tmp_path / "none")
    # Nor a command that writes: `run` created Optuna's tables beside these, or failed with a
    # traceback on a table of the same name.
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE studies (x INTEGER)")
    before = other.read_bytes()
    with pytest.raises(StorageError, match=r"tables not Optuna's: customers, studies\)"):
        storage.open_storage(f"sqlite:///{other}", heartbeat=False)
    assert other.read_bytes() == before and not (tmp_path / "other.db.lock").exists()


def _foreign(url: str) -> None:
    store = storage.open_storage(url, heartbeat=False)
    two = optuna.create_study(study_name="mo", storage=store, directions=["maximize", "minimize"])
    two.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    low = optuna.create_study(study_name="mini", storage=store, direction="minimize")
    for value in (0.9, 0.1):
        low.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": {}}))


def test_studies_of_other_objectives_are_refused_and_listed(
    tmp_path: Path, sqlite_url: str
) -> None:
    _foreign(sqlite_url)
    with pytest.raises(StudyError, match="study 'mo' has 2 objectives: hpsearch reads studies"):
        reading.load_study_for_reading("mo", sqlite_url)
    with pytest.raises(StudyError, match="study 'mini' minimizes its value"):
        export.best_export("mini", sqlite_url)
    (tmp_path / "none").mkdir()
    rows = {r["name"]: r for r in catalog.study_rows(sqlite_url, tmp_path / "none")}
    assert rows["mo"]["description"] == "(not an hpsearch study: it has 2 objectives)"
    assert rows["mini"]["best_value"] is None  # its 0.9 is its worst, not a best accuracy


def test_a_value_that_is_no_accuracy_is_never_the_best(tmp_path: Path, sqlite_url: str) -> None:
    study = optuna.create_study(
        study_name="odd",
        storage=storage.open_storage(sqlite_url, heartbeat=False),
        direction="maximize",
    )
    for value in (0.5, float("inf"), 0.7):
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={1: value}))
    assert reading.best_complete_trial(study).number == 2
    text = export.to_json({"curve": {"1": float("inf")}, "nan": float("nan")})
    assert json.loads(text) == {"curve": {"1": None}, "nan": None}  # strict JSON: null
