"""Optuna's conventions in every reading command (issue 15 items 5-7 and 10): $OPTUNA_STORAGE
after $HPSEARCH_STORAGE, the database named in every "no study" message, ``--study`` as a
stored name or a study file, the budget in force in ``studies``, ``best --format``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from hpsearch import search, settings
from hpsearch import study as studyfile
from hpsearch.errors import StudyError
from hpsearch.results import _catalog as catalog
from tests.helpers.cli import invoke
from tests.helpers.export import build_study, write_spec


@pytest.fixture
def tiny(cli: CliRunner, tmp_path: Path) -> str:
    """A study ``tiny`` (trial 1 best, 0.83) from ``studies/tiny.yaml``; its database URL."""
    url = f"sqlite:///{tmp_path / 'other.db'}"
    build_study(write_spec(tmp_path / "studies"), url)
    return url


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_optuna_storage_is_read_by_every_reading_command(
    cli: CliRunner, tiny: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was ignored: `studies` read ./hpsearch.db and `best` said no database exists.
    monkeypatch.setenv(settings.OPTUNA_STORAGE, tiny)
    result = invoke(cli, "studies", "--studies-dir", "studies")
    assert result.exit_code == 0, result.output
    assert f"studies in {tiny}" in result.stdout
    assert "incomplete" in result.stdout and "3/6" in result.stdout
    assert invoke(cli, "best", "-s", "tiny", "-f", "value").stdout == "0.83\n"
    assert invoke(cli, "export", "-s", "tiny").exit_code == 0
    assert not Path("hpsearch.db").exists()
    # $HPSEARCH_STORAGE comes first, and a message says which database it looked at.
    monkeypatch.setenv(settings.STORAGE, "sqlite:///empty.db")
    line = _one_error_line(invoke(cli, "best", "-s", "tiny"))
    assert "no study 'tiny' in sqlite:///empty.db: the database does not exist yet" in line


def test_studies_names_the_database_with_its_password_masked() -> None:
    def first_line(url: str) -> str:
        console = Console(record=True, width=200)
        console.print(catalog.render_studies([], url))
        return console.export_text().splitlines()[0]

    masked = first_line("postgresql+psycopg://u:s3cret@dbhost/hp")
    assert masked == "studies in postgresql+psycopg://u:***@dbhost/hp"
    absent = first_line("sqlite:///nothing-here.db")
    assert absent == "studies in sqlite:///nothing-here.db (no database there yet)"


def test_studies_measures_a_study_against_the_budget_in_force(tmp_path: Path) -> None:
    # `run --trials 10` on a file that says 6: the listing showed the file's budget.
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path / "studies")
    search.open_study(spec.with_budget(trials=10, timeout=None), url, heartbeat=False)
    (row,) = catalog.study_rows(url, tmp_path / "studies")
    assert (row["budget"], row["file_budget"], row["state"]) == (10, 6, "incomplete")
    assert catalog._done(row) == "0/10 (file: 6)"
    # A resume with another budget makes that the budget in force.
    search.open_study(spec.with_budget(trials=3, timeout=None), url, heartbeat=False)
    stored = studyfile.load_study(tmp_path / "studies" / "tiny.yaml")
    assert stored.trials == 6
    (row,) = catalog.study_rows(url, tmp_path / "studies")
    assert row["budget"] == 3


@pytest.mark.parametrize("given", ["tiny", "studies/tiny.yaml", "./studies/tiny.yaml"])
def test_study_takes_a_stored_name_or_a_study_file_in_every_command(
    cli: CliRunner, tiny: str, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `export --study ./tiny.yaml` said "no study './tiny.yaml'", though the file names it.
    if given != "tiny":  # a file that declares the name, under a file name of its own
        Path(given).rename(Path(given).with_name("declares-tiny.yaml"))
        given = given.replace("tiny.yaml", "declares-tiny.yaml")
    storage = ["--storage", tiny]
    assert json.loads(invoke(cli, "export", "-s", given, *storage).stdout)["study"] == "tiny"
    assert invoke(cli, "best", "-s", given, *storage, "-f", "value").stdout == "0.83\n"
    compared = invoke(cli, "compare", given, "--no-evaluate", *storage)
    assert compared.exit_code == 0 and "tiny" in compared.stdout
    seen: list[str] = []

    def evaluate_study(name: str, url: str, **kwargs: object) -> None:
        seen.append(name)
        raise StudyError("stop here")

    monkeypatch.setattr("hpsearch.results.evaluate_study", evaluate_study)
    invoke(cli, "evaluate", "-s", given, *storage)
    assert seen == ["tiny"]

    def load_study_model(name: str, url: str, directory: object = None) -> None:
        seen.append(name)
        raise StudyError("stop here")

    monkeypatch.setattr("hpsearch.predict.load_study_model", load_study_model)
    invoke(cli, "predict", "-s", given, *storage, "-")  # `predict --study ./mine.yaml`
    assert seen == ["tiny", "tiny"]


def test_a_study_file_that_is_broken_is_one_line_naming_it(cli: CliRunner, tiny: str) -> None:
    Path("broken.yaml").write_text("name: [\n")
    line = _one_error_line(invoke(cli, "best", "-s", "broken.yaml", "--storage", tiny))
    assert line.startswith("error: broken.yaml: invalid YAML")


def test_best_formats(cli: CliRunner, tiny: str) -> None:
    as_json = invoke(cli, "best", "-s", "tiny", "--storage", tiny, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    record = json.loads(as_json.stdout)  # stdout holds the JSON and nothing else
    assert {k: record[k] for k in ("study", "number", "state", "value", "params")} == {
        "study": "tiny",
        "number": 1,
        "state": "COMPLETE",
        "value": 0.83,
        "params": {"lr": 3e-3, "cell": "gru"},
    }
    value = invoke(cli, "best", "-s", "tiny", "--storage", tiny, "-f", "value")
    assert (value.stdout, value.stderr) == ("0.83\n", "")
    table = invoke(cli, "best", "-s", "tiny", "--storage", tiny)
    assert "best validation accuracy" in table.stdout and "0.8300" in table.stdout
    bad = invoke(cli, "best", "-s", "tiny", "--storage", tiny, "-f", "yaml")
    assert bad.exit_code == 2 and "yaml" in bad.output
