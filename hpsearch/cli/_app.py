"""The ``hpsearch`` command line: one thin command per library function.

User errors (``UsageError``) print one line and exit with status 2; ``--debug`` shows the
traceback. The storage URL comes from ``--storage``, else ``$HPSEARCH_STORAGE``, else
``$OPTUNA_STORAGE`` (``storage.resolve_url``). ``--study`` takes a stored study's name or a
study file's path in every command (``study.stored_name``). Every console is a
``plain_console``: no printed text is read as markup.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from hpsearch.cli._common import (
    ArtifactsOpt,
    DataDirOpt,
    ForceOpt,
    StorageOpt,
    StudiesDirOpt,
    StudyOpt,
    TimeoutOpt,
    TrialsOpt,
    app,
    command,
    console,
    err_console,
    state,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    state["debug"] = debug
    from hpsearch.search import configure_logging

    configure_logging(verbose=verbose, debug=debug)


def store_models_in(directory: Path | None) -> None:
    """--artifacts for the workers: they read it from the environment (run's child processes
    inherit it), as they read HPSEARCH_ARTIFACTS when it is set there. A malformed
    HPSEARCH_KEEP_MODELS is one line here, not a failure in every worker."""
    from hpsearch import artifacts, settings

    artifacts.keep_count()
    if directory is not None:
        os.environ[settings.ARTIFACTS] = str(directory.expanduser().absolute())


@command("data")
def data_cmd(data_dir: DataDirOpt = None) -> None:
    """Download (if needed) and verify the TREC files.

    Example: hpsearch data --data-dir ~/data/trec
    """
    from hpsearch.training import ensure_data

    path = ensure_data(data_dir)
    console.print(f"TREC data verified in {path}", markup=False, highlight=False)


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
    from hpsearch import files, training
    from hpsearch.cli._views import TrainView

    cfg = training.load_config(config_file, overrides or [])
    set_here = any(text.partition("=")[0].strip() == "device" for text in overrides or [])
    source = "--set" if set_here or config_file is None else str(config_file)
    training.resolve_device(cfg.device, source=source)  # before the table of epochs starts
    if save is not None:
        files.check_writable(save)  # now, not after the training
    view = TrainView(cfg, console)
    try:
        result, _ = training.train_from_config(
            cfg, data_dir, with_test=test, save=save, on_data=view.data_ready, on_epoch=view.epoch
        )
    except training.TrainingDiverged as exc:
        view.close()
        message = Text.assemble(("training diverged:", "bold red"), f" {exc}")
        err_console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        view.close()  # on any error too, or the live table would keep redrawing
    view.result(result, save)


@command("studies")
def studies_cmd(storage: StorageOpt = None, studies_dir: StudiesDirOpt = None) -> None:
    """List the study files and their state in the database.

    Example: hpsearch studies --storage sqlite:///hpsearch.db
    """
    from hpsearch import results
    from hpsearch import storage as storage_mod

    url = storage_mod.resolve_url(storage)
    console.print(results.render_studies(results.study_rows(url, studies_dir), url))


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
    artifacts: ArtifactsOpt = None,
) -> None:
    """Run a study with N local worker processes; running it again resumes it.

    Example: hpsearch run --study regularization --workers 4 --trials 40
    """
    store_models_in(artifacts)
    try:  # the imports too: torch takes seconds to import, and Ctrl-C may come meanwhile
        from hpsearch import search
        from hpsearch.cli._views import run_view, show_result

        spec, url = search.prepare(
            study, studies_dir=studies_dir, trials=trials, timeout=timeout,
            storage=storage, data_dir=data_dir,
        )  # fmt: skip
        view = run_view(err_console)
        result = search.run_study(
            spec, url, workers=workers, view=view, data_dir=data_dir, force=force
        )
    except KeyboardInterrupt:  # Ctrl-C before the workers start (later, run_study has it)
        err_console.print("interrupted before the workers started")
        raise typer.Exit(130) from None
    show_result(err_console, result)
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
    artifacts: ArtifactsOpt = None,
) -> None:
    """Join a study from any machine and run its trials until the budget is spent.

    Example: HPSEARCH_STORAGE=postgresql+psycopg://hp:pw@db/hp hpsearch worker -s regularization
    """
    from hpsearch import search

    store_models_in(artifacts)
    spec, url = search.prepare(
        study, studies_dir=studies_dir, trials=trials, timeout=timeout,
        storage=storage, data_dir=data_dir,
    )  # fmt: skip
    code = search.run_worker(
        spec,
        url,
        name=worker_id or f"{os.uname().nodename}-{os.getpid()}",
        threads=threads,
        data_dir=data_dir,
        deadline=time.time() + spec.timeout if spec.timeout else None,
        force=force,
        # Workers started by hand on several machines must not share a sampler seed.
        seed_offset=os.getpid() if seed_offset is None else seed_offset,
        report=lambda line: err_console.print(line, markup=False, highlight=False),
    )
    if code:
        raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C while typer builds the commands, before its own handler
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
