"""Reports on finished studies: the numbers for one study, and a table comparing several.

``write_report`` writes a study's figures (``_figures``: PNGs and ``index.html``) and
``summary.json`` with the numbers. ``compare`` puts several studies side by side, retraining
each best trial on a few seeds for its test accuracy unless a stored evaluation already did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.table import Table
from rich.text import Text

from hpsearch import files as outfile
from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError
from hpsearch.results import _export as export
from hpsearch.results import _reading as reading
from hpsearch.results._format import format_clock, format_mean_std
from hpsearch.results._study_data import StudyData, counts_by_state, load, total
from hpsearch.search import best_trial


def summary(data: StudyData, url: str) -> dict[str, Any]:
    best, trials = data.best, data.trials
    return {
        "study": data.name,
        "storage": storage_mod.mask_url(url),
        "metric": f"{data.metric} (best epoch), maximized",
        "metric_name": data.metric,
        "counts": {**counts_by_state(trials), "total": len(trials)},
        "best": {
            "trial": best.number,
            "value": best.value,
            "params": dict(best.params),
            "best_epoch": best.user_attrs.get("best_epoch"),
            "epochs_run": best.user_attrs.get("epochs_run"),
        },
        "searched_params": data.params,
        "importances": data.importances,
        "importances_basis": data.importance_basis,
        "epochs_trained": int(total(trials, "epochs_run")),
        "training_seconds": round(total(trials, "seconds"), 3),
        "evaluation": export.current_evaluation(data.study, best),
        "notes": data.notes,
    }


def write_report(study_name: str, url: str, out_dir: Path, *, parents: bool = False) -> list[Path]:
    """Write the PNGs, ``index.html`` and ``summary.json`` of one study; return their paths.

    ``out_dir`` is created in a directory that exists (with its missing parents too where
    ``parents``: a default location), and removed again if the report fails with it empty.
    """
    # Imported here: compare needs no plotting libraries.
    from hpsearch.results import _figures as figures

    figures.require_libraries()
    data = load(study_name, url)
    with outfile.new_directory(Path(out_dir), parents=parents, what="report directory"):
        return _write(data, url, Path(out_dir))


def _write(data: StudyData, url: str, out_dir: Path) -> list[Path]:
    from hpsearch.results import _figures as figures

    artifacts = [out_dir / f"{stem}.png" for stem in figures.FIGURES]
    artifacts += [out_dir / "index.html", out_dir / "summary.json"]
    for path in artifacts:  # all of them before the first is written: nothing half-done
        outfile.check_writable(path)
    info = summary(data, url)
    paths = [*figures.write(data, info, out_dir), out_dir / "summary.json"]
    export.write_json(info, out_dir / "summary.json")
    # A figure an earlier report wrote here and this one has not (importances of a study
    # with more trials, say) would sit beside this study's page as if it were its own.
    for path in artifacts:
        if path not in paths and path.is_file():
            path.unlink()
    return paths


# --- comparing studies ------------------------------------------------------------------------


def _stored_evaluation(study: optuna.Study, best: FrozenTrial, seeds: int) -> dict[str, Any] | None:
    """The stored evaluation if it retrained this best trial with as many seeds, else None."""
    stored = export.current_evaluation(study, best)
    return stored if stored is not None and len(stored.get("seeds") or []) == seeds else None


def compare(
    study_names: Sequence[str],
    url: str,
    *,
    seeds: int = 3,
    evaluate: bool = True,
    data_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per study: best validation accuracy, test accuracy over ``seeds`` retrainings
    (reusing a stored evaluation of the same best trial and seed count), trials by state,
    epochs and seconds trained. A study without a complete trial gets a row without scores."""
    if seeds < 1:
        raise UsageError(f"--seeds: must be >= 1, got {seeds}")
    # Every study is opened before any retraining, so a typo fails in seconds, not hours.
    studies = [reading.load_study_for_reading(n, url) for n in dict.fromkeys(study_names)]
    bests = [best_trial(study) for study in studies]
    if evaluate:  # and every best trial's config read before the first retraining, too
        for study, best in zip(studies, bests, strict=True):
            if best is not None:
                reading.trial_config(study.study_name, best)
    rows = []
    for study, best in zip(studies, bests, strict=True):
        trials = study.get_trials(deepcopy=False)
        row: dict[str, Any] = {
            "study": study.study_name,
            "best_value": best.value if best else None,
            "best_trial": best.number if best else None,
            **counts_by_state(trials),
            "trials": len(trials),
            "epochs": int(total(trials, "epochs_run")),
            "seconds": round(total(trials, "seconds"), 3),
            **dict.fromkeys(("valid_mean", "valid_std", "test_mean", "test_std", "seeds")),
            "evaluation": None,  # "stored" (reused) or "new" (retrained now)
        }
        stored = None
        if best is not None and evaluate:
            stored = _stored_evaluation(study, best, seeds)
            row["evaluation"] = "stored" if stored else "new"
            if stored is None:
                from hpsearch.results import _evaluate as evaluate_mod

                result = evaluate_mod.evaluate_study(
                    study.study_name, url, seeds=seeds, data_dir=data_dir
                )
                stored = result.to_dict()
        elif best is not None:  # --no-evaluate retrains nothing, but shows what is stored
            stored = export.current_evaluation(study, best)
            row["evaluation"] = "stored" if stored else None
        if stored is not None:
            valid, test = stored["valid"], stored["test"] or {}  # None: no test set
            row.update(
                valid_mean=valid["mean"],
                valid_std=valid["std"],
                test_mean=test.get("mean"),
                test_std=test.get("std"),
                seeds=len(stored["seeds"]),
            )
        rows.append(row)
    return rows


def _bold_if(condition: bool, text: str) -> Text:
    return Text(text, style="bold" if condition else "")


def render_compare(rows: Sequence[dict[str, Any]]) -> Table:
    """The rows of ``compare`` as a table; the best validation and test values in bold."""
    table = Table(
        title="studies compared (each study's metric; test: best trial retrained, mean ± std)"
    )
    columns = "best valid,trial,retrained valid,test,seeds,complete,pruned,failed,epochs,time"
    # Folded, never cut with an ellipsis: on a narrow terminal a value wraps but stays whole.
    table.add_column("study", overflow="fold")
    for column in columns.split(","):
        table.add_column(column, justify="right", overflow="fold")
    top = {
        key: max((r[key] for r in rows if r[key] is not None), default=None)
        for key in ("best_value", "test_mean")
    }
    for r in rows:
        valid = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        test = format_mean_std(r["test_mean"], r["test_std"])
        if r["seeds"] and r["test_mean"] is None:
            test = "no test set"
        table.add_row(
            Text(r["study"]),
            _bold_if(r["best_value"] is not None and r["best_value"] == top["best_value"], valid),
            "-" if r["best_trial"] is None else str(r["best_trial"]),
            format_mean_std(r["valid_mean"], r["valid_std"]),
            _bold_if(r["test_mean"] is not None and r["test_mean"] == top["test_mean"], test),
            "-" if r["seeds"] is None else str(r["seeds"]),
            *(str(r[k]) for k in ("complete", "pruned", "failed", "epochs")),
            format_clock(r["seconds"]),
        )
    return table
