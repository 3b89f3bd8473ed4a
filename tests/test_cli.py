"""The command line through typer's CliRunner: help, one-line usage errors, and the round trip
run -> export -> train that reproduces the best trial."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hpsearch.cli import app
from hpsearch.study import list_study_files

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.fixture
def cli(tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in an empty working directory (the SQLite default lands there)."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("HPSEARCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the messages checked below
    return CliRunner()


def _invoke(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


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


def test_top_level_help_shows_an_example(cli: CliRunner) -> None:
    result = _invoke(cli, "--help")
    assert result.exit_code == 0
    assert "Example: hpsearch run --study" in result.output


def test_unknown_override_is_one_line_naming_it(cli: CliRunner) -> None:
    assert _usage_error(_invoke(cli, "train", "--set", "bogus=1")) == (
        "error: --set: unknown key 'bogus'"
    )
    line = _usage_error(_invoke(cli, "train", "--set", "hiden_dim=8"))
    assert "'hiden_dim'" in line and "did you mean 'hidden_dim'?" in line


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


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hpsearch", "--debug", "train", "--set", "cell=grru"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError: --set: cell: 'grru'" in proc.stderr


def test_without_debug_a_usage_error_has_no_traceback(tmp_path: Path) -> None:
    # The in-process checks above cannot see what Python prints at exit; this one can.
    cmd = [sys.executable, "-m", "hpsearch", "train", "--set", "cell=grru"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --set: cell: 'grru' is not one of rnn, gru, lstm (did you mean 'gru'?)"
    ]


def test_export_then_train_reproduces_the_best_trial(cli: CliRunner) -> None:
    Path("study.yaml").write_text(
        "name: roundtrip\n"
        "config: {pooling: mean, regularizer: none, hidden_dim: 8, embedding_dim: 8,"
        " batch_size: 256}\n"
        "space:\n"
        "  lr: {choices: [1.0e-2, 3.0e-2]}\n"
        "  dropout: {low: 0.0, high: 0.3}\n"
        "budget: {trials: 1, epochs: 3}\n"
        "enqueue: [{lr: 3.0e-2, dropout: 0.1}]\n"
    )
    result = _invoke(cli, "run", "--study", "study.yaml", "--workers", "1")
    assert result.exit_code == 0, result.output

    result = _invoke(cli, "export", "--study", "roundtrip", "-o", "best.json")
    assert result.exit_code == 0, result.output
    exported = json.loads(Path("best.json").read_text())
    assert exported["params"] == {"lr": 3.0e-2, "dropout": 0.1}  # the one (enqueued) trial
    assert exported["config"]["lr"] == 3.0e-2 and exported["config"]["epochs"] == 3
    best = exported["best_value"]
    assert best > 0.4  # a model that learned something, or the comparison proves little
    # "-" is standard output, for either format (not a file named "-").
    for fmt, first in (("json", "{"), ("csv", "number,")):
        result = _invoke(cli, "export", "--study", "roundtrip", "-f", fmt, "-o", "-")
        assert result.exit_code == 0 and result.stdout.startswith(first), result.output
    assert not Path("-").exists()

    # One thread: two oversubscribe a busy 2-core machine many times over. The trial ran
    # with the launcher's cores // workers threads, so this also checks that the thread
    # count, which an export resets, does not change the result.
    result = _invoke(
        cli, "train", "--config", "best.json", "--set", "device=cpu", "--set", "threads=1"
    )
    assert result.exit_code == 0, result.output
    # On a line of its own after the live table, also when output is not a terminal.
    match = re.search(r"^best valid acc (\d\.\d{4}) at epoch (\d+)", result.stdout, re.MULTILINE)
    assert match, result.stdout
    assert abs(float(match[1]) - best) <= 0.005
    assert int(match[2]) == exported["user_attrs"]["best_epoch"]


def test_click_exceptions_keep_their_exit_status(cli: CliRunner) -> None:
    result = _invoke(cli, "run", "--study", "x", "--workers", "many")
    assert result.exit_code == 2  # a usage error, as click/typer report one
    assert "--workers" in result.output
