"""The ``hpsearch`` command line: one thin typer command per library call."""

# isort: off
# Commands are listed in --help in the order they are registered: _app's (data, train,
# studies, run, worker) first, then the reading commands (export ... dashboard).
from hpsearch.cli._app import app, main
from hpsearch.cli import _reading  # noqa: F401
# isort: on

__all__ = ["app", "main"]
