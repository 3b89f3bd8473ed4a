"""Helpers shared by tests/unit/test_hostile_input.py and tests/system/test_hostile_input.py."""

from __future__ import annotations

import uuid
from pathlib import Path

from typer.testing import CliRunner, Result

from hpsearch import cli

PASSWORD = "Hunter2-" + uuid.uuid4().hex[:8]

BASE = """\
name: bad
config: {hidden_dim: 8, embedding_dim: 8, batch_size: 256, threads: 1}
space:
  lr: {low: 1.0e-3, high: 1.0e-2, log: true}
sampler: {name: random, seed: 0}
pruner: none
budget: {trials: 2, epochs: 1}
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    """The single ``error: ...`` line of a usage error (exit status 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def no_database(directory: Path) -> None:
    assert sorted(p.name for p in directory.glob("study.db*")) == []


SQLITE = "sqlite:///study.db"
