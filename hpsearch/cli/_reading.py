"""The commands that read a study's results, or use its models: export, predict, best,
evaluate, report, compare and the dashboard. Registered on the one ``app`` when
``hpsearch.cli`` is imported, after the commands of ``_app`` (the order ``--help`` lists).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hpsearch.cli._common import (
    ArtifactsOpt,
    BestFormat,
    DataDirOpt,
    Format,
    InputFormat,
    PredictFormat,
    StorageOpt,
    StudyNameOpt,
    command,
    console,
    ending_quietly_on_a_closed_pipe,
    err_console,
    plain_console,
)
from hpsearch.errors import UsageError


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
        str | None,
        typer.Option("--study", "-s", help="Use this study's best stored model (name or file)."),
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
        classifier = predict.load_study_model(_stored_name(study), url, artifacts)
    k = predict.check_top(top, classifier)
    kind = predict.InputFormat(input_format) if input_format else None
    texts = predict.read_texts(input_file, fmt=kind, text_field=text_field)
    predictions = classifier.top(texts, k)
    out = fmt or (PredictFormat.table if console.is_terminal else PredictFormat.jsonl)
    with ending_quietly_on_a_closed_pipe():
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
