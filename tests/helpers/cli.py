"""Helpers shared by tests/unit/test_cli.py and tests/system/test_cli.py."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from hpsearch.cli import app


def invoke(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
