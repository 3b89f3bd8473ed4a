"""What every command shares: the typer app, its consoles, the ``command`` decorator that turns a
usage error into one line and exit status 2, and the options several commands take.

No text the user or a database gave is ever read as rich markup: study names, paths, params
and messages may hold ``[...]`` (``'hpsearch[postgres]'``, a file ``[red].yaml``, a name with
``[/]``). Every console here is made by ``plain_console``, which prints every string, in a
table cell or title too, as it is; styles come only from ``rich.text.Text``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from hpsearch import settings
from hpsearch.errors import UsageError


def plain_console(**options: Any) -> Console:
    """A console that never parses markup (see the module docstring). Into a pipe or a file
    its lines are never wrapped: a log line split at an assumed width reads as two."""
    console = Console(markup=False, **options)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


console = plain_console()
err_console = plain_console(stderr=True)

app = typer.Typer(
    name="hpsearch",
    help="Hyperparameter search for RNN sentence classifiers on TREC, with Optuna.\n\n"
    "Example: hpsearch run --study regularization --workers 4",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

state = {"debug": False}


def _flags_without_a_type() -> None:
    """Show a flag as ``--debug``, not ``--debug <bool>``: typer's help gives every option the
    type of its value, and a flag (``--help`` too) takes none."""
    option = typer.core.TyperOption
    show_type = option.display_type_rich

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else show_type(self, ctx)

    option.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()

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


@contextlib.contextmanager
def ending_quietly_on_a_closed_pipe() -> Iterator[None]:
    """Stdout closed by its reader (``| head -1``): end quietly with status 0, as Unix tools
    do, instead of a traceback and status 1. Stdout then points at /dev/null, so that the
    interpreter's final flush of what is left in its buffer cannot fail again (see "Note on
    SIGPIPE" in Python's signal module documentation)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


# No typer envvar: storage.resolve_url reads the environment (settings.storage_url), so a
# command and the library agree on the order, and a bad URL names the variable it came from.
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Database URL: sqlite:///hpsearch.db (default), postgresql+psycopg://user:pw@host/db, "
        f"mysql+pymysql://user:pw@host/db. Without it: ${settings.STORAGE}, else "
        f"${settings.OPTUNA_STORAGE}, else the default.",
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
StudyNameOpt = Annotated[
    str,
    typer.Option(
        "--study",
        "-s",
        help="A study's name in the database, or the path of its study file (its name: is used).",
    ),
]

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


class BestFormat(StrEnum):  # as `optuna best-trial --format`
    table = "table"
    json = "json"
    value = "value"


class InputFormat(StrEnum):  # as predict.InputFormat, without importing torch at start-up
    lines = "lines"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"


class PredictFormat(StrEnum):  # as predict.OutputFormat
    table = "table"
    jsonl = "jsonl"
    csv = "csv"
