"""The ``hpsearch`` command line: one thin typer command per library call."""

from hpsearch.cli._app import app, main

__all__ = ["app", "main"]
