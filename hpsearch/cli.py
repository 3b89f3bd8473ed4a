"""The ``hpsearch`` command line: one thin command per library function.

User errors (``UsageError``) print one line and exit with status 2; ``--debug`` shows the
traceback. The storage URL comes from ``--storage`` or ``$HPSEARCH_STORAGE``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

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

_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``app.command`` that turns a UsageError into one line on stderr and exit status 2."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except UsageError as exc:
                if _state["debug"]:
                    raise
                err_console.print(
                    f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(exc.exit_code) from None

        app.command(*args, **kwargs)(wrapper)
        return func

    return decorate


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="HPSEARCH_STORAGE",
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
        envvar="HPSEARCH_DATA_DIR",
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
    typer.Option("--studies-dir", envvar="HPSEARCH_STUDIES_DIR", help="Where study files live."),
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


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not (verbose or debug):
        # A failed trial's error is logged in one line and kept in its `error` attribute;
        # its traceback (one per diverged or interrupted trial) would flood `run`'s console.
        for handler in logging.getLogger("optuna").handlers:
            handler.addFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True


def _named_after(study: str, path: Path) -> Path:
    """A default output path built from the study's name, which must then be a plain name: a
    study another program made may be called ``../x`` or ``a/b``."""
    from hpsearch.studyfile import is_plain_name

    if not is_plain_name(study):
        raise UsageError(f"study {study!r}: its name is no file name; give --output")
    return path


@command("data")
def data_cmd(data_dir: DataDirOpt = None) -> None:
    """Download (if needed) and verify the TREC files.

    Example: hpsearch data --data-dir ~/data/trec
    """
    from hpsearch.data import ensure_data

    path = ensure_data(data_dir)
    console.print(f"TREC data verified in {path}")


@command("train")
def train_cmd(
    config_file: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML/JSON config, or an `hpsearch export` JSON."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field: --set lr=1e-3 (repeatable)."),
    ] = None,
    data_dir: DataDirOpt = None,
    test: Annotated[
        bool, typer.Option("--test", help="Score the best epoch on the test set.")
    ] = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Write a checkpoint (state dict + config).")
    ] = None,
) -> None:
    """Train one configuration and print per-epoch validation accuracy.

    Example: hpsearch train --config best.json --test --set epochs=20
    """
    from hpsearch import config as config_mod
    from hpsearch import display, outfile
    from hpsearch.train import TrainingDiverged, resolve_device

    cfg = config_mod.load(config_file, overrides or [])
    set_here = any(text.partition("=")[0].strip() == "device" for text in overrides or [])
    source = "--set" if set_here or config_file is None else str(config_file)
    resolve_device(cfg.device, source=source)  # before the table of epochs starts
    if save is not None:
        outfile.check_writable(save)  # now, not after the training
    try:
        display.train_with_progress(cfg, data_dir, test=test, save=save, console=console)
    except TrainingDiverged as exc:
        err_console.print(
            f"[bold red]training diverged:[/bold red] {exc}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None


@command("studies")
def studies_cmd(storage: StorageOpt = None, studies_dir: StudiesDirOpt = None) -> None:
    """List the study files and their state in the database.

    Example: hpsearch studies --storage sqlite:///hpsearch.db
    """
    from hpsearch import catalog
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    console.print(catalog.render_studies(catalog.study_rows(url, studies_dir)))


@command("run")
def run_cmd(
    study: StudyOpt,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            help="Worker processes. One per core searches fastest on a CPU; with one, the "
            "search repeats exactly from the study's seed.",
        ),
    ] = 1,
    trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    studies_dir: StudiesDirOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run a study with N local worker processes; running it again resumes it.

    Example: hpsearch run --study regularization --workers 4 --trials 40
    """
    from hpsearch import launcher, objective, spawn, studyfile
    from hpsearch import storage as storage_mod
    from hpsearch.data import ensure_data

    try:
        # The fork server imports torch on the other core while the inputs are checked here.
        method = spawn.start_method()
        spawn.warm_up(method)
        spec = studyfile.load_study(study, studies_dir).with_budget(trials=trials, timeout=timeout)
        url = storage_mod.resolve_url(storage)
        ensure_data(data_dir)  # download once here, not in N workers at the same time
        objective.check_inputs(spec)  # before the study exists: a bad file writes nothing
        result = launcher.run_study(
            spec,
            url,
            workers=workers,
            data_dir=data_dir,
            force=force,
            console=err_console,
            method=method,
        )
    except KeyboardInterrupt:  # Ctrl-C before the workers start (later, run_study has it)
        err_console.print("interrupted before the workers started")
        raise typer.Exit(130) from None
    if result.interrupted:
        raise typer.Exit(130)
    if not result.ok:
        raise typer.Exit(1)


@command("worker")
def worker_cmd(
    study: StudyOpt,
    storage: StorageOpt = None,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Name recorded on trials.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Torch threads for training.")
    ] = None,
    trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    data_dir: DataDirOpt = None,
    studies_dir: StudiesDirOpt = None,
    force: ForceOpt = False,
    seed_offset: Annotated[
        int | None,
        typer.Option(
            "--seed-offset",
            help="Added to the sampler seed; give each worker its own (default: the pid).",
        ),
    ] = None,
) -> None:
    """Join a study from any machine and run its trials until the budget is spent.

    Example: HPSEARCH_STORAGE=postgresql+psycopg://hp:pw@db/hp hpsearch worker -s regularization
    """
    from hpsearch import objective, studyfile, workers
    from hpsearch import storage as storage_mod
    from hpsearch.data import ensure_data
    from hpsearch.slots import CpuSlots

    spec = studyfile.load_study(study, studies_dir).with_budget(trials=trials, timeout=timeout)
    url = storage_mod.resolve_url(storage)
    cpu_slots = CpuSlots.from_env()  # set by `hpsearch run` when workers outnumber cores
    ensure_data(data_dir)  # a missing or corrupt data file: one error, no study, no trials
    objective.check_inputs(spec)
    name = worker_id or f"{os.uname().nodename}-{os.getpid()}"
    stop = workers.stop_on_signals()  # SIGINT and SIGTERM: the running trial ends FAIL
    deadline = time.time() + spec.timeout if spec.timeout else None
    try:
        summary = workers.work(
            spec,
            url,
            worker=name,
            threads=threads,
            data_dir=data_dir,
            deadline=deadline,
            force=force,
            # Workers started by hand on several machines must not share a sampler seed.
            seed_offset=os.getpid() if seed_offset is None else seed_offset,
            stop=stop,
            cpu_slots=cpu_slots,
        )
    except KeyboardInterrupt:
        err_console.print(f"{name}: interrupted")
        raise typer.Exit(130) from None
    err_console.print(f"{name}: {summary.trials_run} trials run; {summary.reason}")
    if not summary.ok:
        raise typer.Exit(1)


@command("export")
def export_cmd(
    study: StudyNameOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write; - for stdout (default: stdout for json, STUDY.csv for csv).",
        ),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="json: best; csv: all.")
    ] = Format.json,
    storage: StorageOpt = None,
) -> None:
    """Export the best configuration (JSON) or all trials (CSV).

    Example: hpsearch export --study regularization -o best.json && hpsearch train -c best.json
    """
    from hpsearch import export, outfile
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    if fmt is Format.csv:
        path = output or _named_after(study, Path(f"{study}.csv"))
        text = export.trials_csv(study, url)
    else:
        path = output or Path("-")
        text = export.to_json(export.best_export(study, url))
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        outfile.write_text(path, text)
        err_console.print(f"wrote {path}")


@command("best")
def best_cmd(
    study: StudyNameOpt,
    storage: StorageOpt = None,
) -> None:
    """Show the best trial of a study.

    Example: hpsearch best --study regularization
    """
    from hpsearch import export
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    console.print(export.render_best(export.best_export(study, url)))


@command("evaluate")
def evaluate_cmd(
    study: StudyNameOpt,
    seeds: Annotated[int, typer.Option("--seeds", help="Retraining runs.")] = 3,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Retrain the best configuration with several seeds; score validation and test sets.

    Example: hpsearch evaluate --study regularization --seeds 3
    """
    from hpsearch import evaluate
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    result = evaluate.evaluate_study(
        study,
        url,
        seeds=seeds,
        data_dir=data_dir,
        on_result=lambda run: err_console.print(
            f"seed {run.seed}: valid {run.valid_acc:.4f}, test {run.test_acc:.4f}"
        ),
    )
    console.print(evaluate.render(result))


@command("report")
def report_cmd(
    study: StudyNameOpt,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory (default: reports/STUDY).")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Write a study's plots: PNG files and one offline HTML page.

    Optimization history, parameter importances, pairwise heatmaps (the report's Figure 1),
    parallel coordinates and learning curves (pruned trials included).

    Example: hpsearch report --study regularization -o reports/regularization
    """
    from hpsearch import report
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    out_dir = output or _named_after(study, Path("reports") / study)
    paths = report.write_report(study, url, out_dir)
    err_console.print(f"wrote {len(paths)} files to {out_dir} (open {out_dir / 'index.html'})")


@command("compare")
def compare_cmd(
    studies: Annotated[list[str], typer.Argument(help="Study names in the database.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Retraining runs per study.")] = 3,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Retrain the best configurations on test (--no-evaluate: stored ones only).",
        ),
    ] = True,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One table across studies: best and test accuracy, trials and epochs spent.

    Test accuracy is the mean +- std over seeds of the best configuration (as evaluate).

    Example: hpsearch compare regularization architecture best --seeds 3
    """
    from hpsearch import report
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    rows = report.compare(studies, url, seeds=seeds, evaluate=evaluate, data_dir=data_dir)
    table = report.render_compare(rows)
    # A pipe or a file gets the table at its natural width: rich would squeeze it into 80
    # columns, the width it assumes without a terminal, and cut every cell.
    if console.is_terminal:
        console.print(table)
    else:
        natural = console.measure(table, options=console.options.update_width(1000)).maximum
        Console(width=max(console.width, natural)).print(table)


@command("dashboard")
def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8080,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes",
            help="Let the dashboard change the database (notes, deleting studies, marking "
            "trials); read-only without it.",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve beyond loopback without credentials: anyone who reaches the port can "
            "use the dashboard.",
        ),
    ] = False,
) -> None:
    """Serve optuna-dashboard on the study database, read-only unless --allow-writes.

    Beyond loopback (--host) it needs credentials, from the environment only:
    HPSEARCH_DASHBOARD_USER with HPSEARCH_DASHBOARD_PASSWORD (basic auth) and/or
    HPSEARCH_DASHBOARD_TOKEN (bearer); HPSEARCH_DASHBOARD_PASSWORD_FILE and
    HPSEARCH_DASHBOARD_TOKEN_FILE read the secret from a file. Set, they apply on loopback too.

    Example: hpsearch dashboard --port 8080   (then open http://127.0.0.1:8080)
    """
    from hpsearch import dashboard
    from hpsearch import storage as storage_mod

    dashboard.serve(
        storage_mod.resolve_url(storage),
        host=host,
        port=port,
        allow_writes=allow_writes,
        insecure=insecure,
    )


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
