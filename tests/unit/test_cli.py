"""The command line through typer's CliRunner, in process: help and one-line usage errors.
The `python -m hpsearch` runs and the run -> export -> train round trip are in
tests/system/test_cli.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hpsearch.cli import app
from hpsearch.study import list_study_files
from tests.helpers.cli import invoke as _invoke

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _usage_error(result: Result) -> str:
    """The single line a usage error prints, after checking the exit status."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_commands_are_all_there() -> None:
    assert {"data", "train", "studies", "run", "worker", "export", "best", "evaluate"} <= set(
        COMMANDS
    )
    assert "dashboard" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli: CliRunner, command: str) -> None:
    result = _invoke(cli, command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"hpsearch {command}" in result.output


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_without_a_value_type(cli: CliRunner, command: str | None) -> None:
    # Typer's help gave every flag a type, as if it took a value: `--debug <bool>`.
    result = _invoke(cli, *([command] if command else []), "--help")
    assert "<bool>" not in result.output
    assert "--help " in result.output


def test_top_level_help_shows_an_example(cli: CliRunner) -> None:
    result = _invoke(cli, "--help")
    assert result.exit_code == 0
    assert "Example: hpsearch run --study" in result.output


def test_unknown_override_is_one_line_naming_it(cli: CliRunner) -> None:
    assert _usage_error(_invoke(cli, "train", "--set", "bogus=1")) == (
        "error: --set: bogus: unknown field; docs/configuration.md lists the fields"
    )
    line = _usage_error(_invoke(cli, "train", "--set", "hiden_dim=8"))
    assert "--set: hiden_dim: unknown field (did you mean 'hidden_dim'?)" in line


def test_an_unwritable_checkpoint_path_is_refused_before_training(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = _invoke(cli, "train", "--set", "epochs=1", "--save", str(tmp_path))
    assert _usage_error(result) == (
        f"error: {tmp_path}: is a directory; give the name of a file in it"
    )
    assert "epoch" not in result.output  # not one epoch trained


def test_a_device_this_machine_lacks_is_refused_before_the_table(cli: CliRunner) -> None:
    result = _invoke(cli, "train", "--set", "device=mps", "--set", "epochs=1")
    assert _usage_error(result) == (
        "error: --set: device: 'mps' is not available here; use auto or cpu"
    )
    assert "epoch" not in result.output


def test_a_device_set_in_the_config_file_names_the_file(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"device": "mps", "epochs": 1}')
    result = _invoke(cli, "train", "--config", str(path))
    assert _usage_error(result) == (
        f"error: {path}: device: 'mps' is not available here; use auto or cpu"
    )


def test_a_value_that_is_not_yaml_is_one_line(cli: CliRunner) -> None:
    line = _usage_error(_invoke(cli, "train", "--set", "lr={"))
    assert line.startswith("error: --set 'lr={': the value is not valid YAML (")


def test_bad_choice_is_one_line_with_the_allowed_values(cli: CliRunner) -> None:
    line = _usage_error(_invoke(cli, "train", "--set", "cell=grru"))
    assert "cell" in line and "'grru'" in line
    assert "rnn, gru, lstm" in line and "did you mean 'gru'?" in line


@pytest.mark.parametrize("command", ["run", "worker"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("space:\n  lr: {low: 0.1, high: 0.01}\n", "bad.yaml: space.lr: low (0.1) must be < high"),
        (
            "config: {hiden_dim: 8}\nspace:\n  lr: {low: 1.0e-3, high: 1.0e-2}\n",
            "bad.yaml: config.hiden_dim: unknown field (did you mean 'hidden_dim'?)",
        ),
    ],
)
def test_bad_study_file_names_file_and_field(
    cli: CliRunner, command: str, body: str, message: str
) -> None:
    Path("bad.yaml").write_text(f"name: bad\n{body}")
    assert message in _usage_error(_invoke(cli, command, "--study", "bad.yaml"))
    assert not Path("hpsearch.db").exists()  # refused before touching the database


def test_unknown_study_lists_the_available_ones(cli: CliRunner) -> None:
    line = _usage_error(_invoke(cli, "run", "--study", "regularisation"))
    assert "did you mean 'regularization'?" in line


def test_unsupported_storage_is_a_usage_error(cli: CliRunner) -> None:
    line = _usage_error(_invoke(cli, "studies", "--storage", "postgress://u:secret@h/db"))
    assert "unsupported database 'postgress'" in line and "secret" not in line


def test_studies_lists_the_shipped_studies(cli: CliRunner) -> None:
    result = _invoke(cli, "studies")
    assert result.exit_code == 0, result.output
    shipped = [p.stem for p in list_study_files()]
    assert "regularization" in shipped
    for name in shipped:
        assert re.search(rf"^\W*{re.escape(name)}\s", result.stdout, re.MULTILINE), name
    assert not Path("hpsearch.db").exists()  # listing does not create a database


def test_click_exceptions_keep_their_exit_status(cli: CliRunner) -> None:
    result = _invoke(cli, "run", "--study", "x", "--workers", "many")
    assert result.exit_code == 2  # a usage error, as click/typer report one
    assert "--workers" in result.output
