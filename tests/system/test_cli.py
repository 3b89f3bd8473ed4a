"""The command line end to end: `python -m hpsearch` processes (tracebacks only with --debug),
and the round trip run -> export -> train that reproduces the best trial."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tests.helpers.cli import invoke as _invoke


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hpsearch", "--debug", "train", "--set", "cell=grru"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "FieldError: --set: cell: 'grru'" in proc.stderr  # a ConfigError naming its field


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
