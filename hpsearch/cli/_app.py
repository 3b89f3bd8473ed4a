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
    BestFormat,
    DataDirOpt,
    ForceOpt,
    Format,
    InputFormat,
    PredictFormat,
    StorageOpt,
    StudiesDirOpt,
    StudyNameOpt,
    StudyOpt,
    TimeoutOpt,
    TrialsOpt,
    app,
    command,
    console,
    err_console,
    plain_console,
    state,
)
from hpsearch.errors import UsageError


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    state["debug"] = debug
    from hpsearch.search import configure_logging

    configure_logging(verbose=verbose, debug=debug)


def _stored_name(study: str) -> str:
    """``study.stored_name``, imported when a command runs (``--help`` stays quick)."""
    from hpsearch import study as study_mod

    return study_mod.stored_name(study)


def _named_after(study: str, path: Path) -> Path:
    """A default output path built from the study's name, which must then be a plain name: a
    study another program made may be called ``../x`` or ``a/b``."""
    from hpsearch.study import is_plain_name

    if not is_plain_name(study):
        raise UsageError(f"study {study!r}: its name is no file name; give --output")
    return path


def _store_models_in(directory: Path | None) -> None:
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
    _store_models_in(artifacts)
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

    _store_models_in(artifacts)
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
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Write the best trial's stored model (a checkpoint) here."),
    ] = None,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Export the best configuration (JSON), all trials (CSV) or the best stored model.

    Example: hpsearch export --study regularization -o best.json && hpsearch train -c best.json
    """
    from hpsearch import files, results
    from hpsearch import storage as storage_mod

    study = _stored_name(study)
    url = storage_mod.resolve_url(storage)
    if model is not None:
        from hpsearch import predict

        if str(model) == "-":
            raise UsageError("--model -: a model is binary; give a file name")
        stored, note = predict.export_model(study, url, model, artifacts)
        if note:
            err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        err_console.print(
            f"wrote {model} (trial {stored.trial_number})", markup=False, highlight=False
        )
        return
    if fmt is Format.csv:
        path = output or _named_after(study, Path(f"{study}.csv"))
        text = results.trials_csv(study, url)
    else:
        path = output or Path("-")
        text = results.to_json(results.best_export(study, url))
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        files.write_text(path, text)
        err_console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@command("predict")
def predict_cmd(
    input_file: Annotated[
        Path | None,
        typer.Argument(help="Texts: one per line, or .csv/.tsv/.jsonl; - or none: stdin."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="A checkpoint (train --save, export).")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", "-s", help="Use this study's best stored model.")
    ] = None,
    text_field: Annotated[
        str | None, typer.Option("--text-field", help="CSV column or JSON field (default text).")
    ] = None,
    input_format: Annotated[
        InputFormat | None,
        typer.Option("--input-format", help="Default: from the extension; stdin: lines."),
    ] = None,
    fmt: Annotated[
        PredictFormat | None,
        typer.Option("--format", "-f", help="Default: table on a terminal, jsonl otherwise."),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Classes shown per text.")] = 1,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Classify texts with a trained model: a checkpoint or a study's best stored model.

    Example: hpsearch predict --study regularization questions.txt --format jsonl --top 2
    """
    from hpsearch import predict
    from hpsearch import storage as storage_mod

    if (model is None) == (study is None):
        raise UsageError("give one of --model FILE or --study NAME")
    if model is not None:
        classifier = predict.load_checkpoint_file(model)
    else:
        assert study is not None
        url = storage_mod.resolve_url(storage)
        classifier = predict.load_study_model(study, url, artifacts)
    k = predict.check_top(top, classifier)
    kind = predict.InputFormat(input_format) if input_format else None
    texts = predict.read_texts(input_file, fmt=kind, text_field=text_field)
    predictions = classifier.top(texts, k)
    out = fmt or (PredictFormat.table if console.is_terminal else PredictFormat.jsonl)
    if out is PredictFormat.table:
        console.print(predict.render_table(texts, predictions))
    elif out is PredictFormat.csv:
        predict.write_csv(sys.stdout, texts, predictions)
    else:
        predict.write_jsonl(sys.stdout, texts, predictions)


@command("best")
def best_cmd(
    study: StudyNameOpt,
    storage: StorageOpt = None,
    fmt: Annotated[
        BestFormat,
        typer.Option(
            "--format",
            "-f",
            help="table: for people; json: number, state, value, params (machine-readable); "
            "value: the best value alone. Only that goes to stdout.",
        ),
    ] = BestFormat.table,
) -> None:
    """Show the best trial of a study.

    Example: hpsearch best --study regularization --format json
    """
    from hpsearch import results
    from hpsearch import storage as storage_mod

    study = _stored_name(study)
    url = storage_mod.resolve_url(storage)
    data = results.best_export(study, url)
    if fmt is BestFormat.json:
        sys.stdout.write(results.to_json(results.best_record(data)))
    elif fmt is BestFormat.value:
        sys.stdout.write(f"{data['best_value']!r}\n")  # repr: every digit, read back exactly
    else:
        console.print(results.render_best(data))


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
    from hpsearch import results
    from hpsearch import storage as storage_mod

    study = _stored_name(study)
    url = storage_mod.resolve_url(storage)
    result = results.evaluate_study(
        study,
        url,
        seeds=seeds,
        data_dir=data_dir,
        on_result=lambda run: err_console.print(
            f"seed {run.seed}: valid {run.valid_acc:.4f}, "
            + ("no test set" if run.test_acc is None else f"test {run.test_acc:.4f}"),
            highlight=False,
        ),
    )
    console.print(results.render_evaluation(result))


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
    from hpsearch import results
    from hpsearch import storage as storage_mod

    study = _stored_name(study)
    url = storage_mod.resolve_url(storage)
    out_dir = output or _named_after(study, Path("reports") / study)
    # The default reports/STUDY is hpsearch's to make; a directory given must have a parent.
    paths = results.write_report(study, url, out_dir, parents=output is None)
    err_console.print(
        f"wrote {len(paths)} files to {out_dir} (open {out_dir / 'index.html'})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@command("compare")
def compare_cmd(
    studies: Annotated[
        list[str], typer.Argument(help="Study names in the database, or study files' paths.")
    ],
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
    from hpsearch import results
    from hpsearch import storage as storage_mod

    studies = [_stored_name(name) for name in studies]
    url = storage_mod.resolve_url(storage)
    rows = results.compare(studies, url, seeds=seeds, evaluate=evaluate, data_dir=data_dir)
    table = results.render_compare(rows)
    # A pipe or a file gets the table at its natural width: rich would squeeze it into 80
    # columns, the width it assumes without a terminal, and cut every cell.
    if console.is_terminal:
        console.print(table)
    else:
        natural = console.measure(table, options=console.options.update_width(1000)).maximum
        plain_console(width=max(console.width, natural)).print(table)


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
    artifacts: ArtifactsOpt = None,
) -> None:
    """Serve optuna-dashboard on the study database, read-only unless --allow-writes.

    Each trial's stored model is listed with it and can be downloaded.

    Beyond loopback (--host) it needs credentials, from the environment only:
    HPSEARCH_DASHBOARD_USER with HPSEARCH_DASHBOARD_PASSWORD (basic auth) and/or
    HPSEARCH_DASHBOARD_TOKEN (bearer); HPSEARCH_DASHBOARD_PASSWORD_FILE and
    HPSEARCH_DASHBOARD_TOKEN_FILE read the secret from a file. Set, they apply on loopback too.

    Example: hpsearch dashboard --port 8080   (then open http://127.0.0.1:8080)
    """
    from hpsearch import storage as storage_mod
    from hpsearch.cli import _dashboard as dashboard

    dashboard.serve(
        storage_mod.resolve_url(storage),
        host=host,
        port=port,
        allow_writes=allow_writes,
        insecure=insecure,
        artifacts_dir=artifacts,
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C while typer builds the commands, before its own handler
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
