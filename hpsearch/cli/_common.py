"""What every command shares: the typer app, its consoles, the ``command`` decorator that turns a
usage error into one line and exit status 2, and the options several commands take."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from hpsearch import settings
from hpsearch.errors import UsageError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="hpsearch",
    help="Hyperparameter search for RNN sentence classifiers on TREC, with Optuna.\n\n"
    "Example: hpsearch run --study regularization --workers 4",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``app.command`` that turns a UsageError into one line on stderr and exit status 2."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except UsageError as exc:
                if state["debug"]:
                    raise
                # Text, not markup: a path or name holding "[...]" is shown as it is.
                err_console.print(
                    Text.assemble(("error:", "bold red"), f" {exc}"),
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(exc.exit_code) from None

        app.command(*args, **kwargs)(wrapper)
        return func

    return decorate


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar=settings.STORAGE,
        show_envvar=True,
        help="Database URL: sqlite:///hpsearch.db (default), postgresql+psycopg://user:pw@host/db, "
        "mysql+pymysql://user:pw@host/db.",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=settings.DATA_DIR,
        show_envvar=True,
        help="Directory holding the TREC files (downloaded there if absent).",
        show_default=False,
    ),
]
StudyOpt = Annotated[
    str, typer.Option("--study", "-s", help="A study name from studies/ or a path to a YAML file.")
]
StudiesDirOpt = Annotated[
    Path | None,
    typer.Option("--studies-dir", envvar=settings.STUDIES_DIR, help="Where study files live."),
]

ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        envvar=settings.ARTIFACTS,
        show_envvar=True,
        help="The trained-model store, a directory every worker can reach (default: NAME.artifacts "
        "beside a SQLite NAME.db; none for a server database).",
        show_default=False,
    ),
]
StudyNameOpt = Annotated[str, typer.Option("--study", "-s", help="Study name in the database.")]
TrialsOpt = Annotated[
    int | None,
    typer.Option("--trials", "-n", help="Finished trials for the study (all workers)."),
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Stop starting trials after S s.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Resume even if the study file changed.")]


class Format(StrEnum):
    json = "json"
    csv = "csv"


class InputFormat(StrEnum):  # as predict.InputFormat, without importing torch at start-up
    lines = "lines"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"


class PredictFormat(StrEnum):  # as predict.OutputFormat
    table = "table"
    jsonl = "jsonl"
    csv = "csv"
