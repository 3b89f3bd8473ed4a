"""One rule for where output goes (issue 16 item 9): a directory the user names must be in one
that exists, as a SQLite database's must; refused with one line, exit 2, nothing created.
A failed download used to leave an empty tree; ``export -o`` and ``train --save`` used to make
the missing directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.helpers.cli import invoke
from tests.helpers.export import build_study, write_spec
from tests.helpers.network import closed_port


def _refused(result: Result, path: str, missing: Path, verb: str = "cannot write") -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {path}: {verb}: directory {missing.absolute()} does not exist (create it first)\n"
    )


@pytest.fixture
def url(cli: CliRunner, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    build_study(write_spec(tmp_path / "studies"), url)
    return url


def test_export_to_a_missing_directory_is_refused(cli: CliRunner, url: str) -> None:
    for fmt in ("json", "csv"):
        result = invoke(cli, "export", "-s", "tiny", "--storage", url, "-f", fmt, "-o", "no/x")
        _refused(result, "no/x", Path("no"))
    assert not Path("no").exists()


def test_train_save_to_a_missing_directory_is_refused_before_training(cli: CliRunner) -> None:
    result = invoke(cli, "train", "--set", "epochs=1", "--save", "no/deeper/m.pt")
    _refused(result, "no/deeper/m.pt", Path("no/deeper"))
    assert not Path("no").exists()


def test_a_report_directory_must_be_in_one_that_exists(cli: CliRunner, url: str) -> None:
    result = invoke(cli, "report", "-s", "tiny", "--storage", url, "-o", "no/report")
    _refused(result, "no/report", Path("no"), "cannot create the report directory")
    assert not Path("no").exists()
    # The default, reports/STUDY, is hpsearch's own to make.
    result = invoke(cli, "report", "-s", "tiny", "--storage", url)
    assert result.exit_code == 0, result.output
    assert Path("reports", "tiny", "index.html").is_file()


def test_a_data_directory_must_be_in_one_that_exists(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{closed_port()}/")
    result = invoke(cli, "data", "--data-dir", "no/trec")
    _refused(result, "no/trec", Path("no"), "cannot create the data directory")
    assert not Path("no").exists()
    # One it may create is removed again when the download fails.
    result = invoke(cli, "data", "--data-dir", "trec")
    assert result.exit_code == 2 and "cannot download" in result.stderr
    assert not Path("trec").exists()


def test_the_default_data_directory_is_created_with_its_parents_and_removed_on_failure(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path("cache").absolute()))
    monkeypatch.delenv("HPSEARCH_DATA_DIR")
    result = invoke(cli, "data")
    assert result.exit_code == 2 and "cannot download" in result.stderr
    assert list(Path().iterdir()) == []  # cache/hpsearch/trec made, then removed whole
