"""Exports: the best configuration as JSON (which ``hpsearch train`` reads back), every trial
as CSV.

Storage URLs are written masked, and every string taken from the database is scrubbed of the
URL's password before it is written out.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import importlib.metadata
import io
import json
import math
import platform
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hpsearch import config as config_mod
from hpsearch import files as outfile
from hpsearch import storage as storage_mod
from hpsearch.config import METRIC_NAMES
from hpsearch.results._format import format_value
from hpsearch.results._reading import (
    best_complete_trial,
    load_study_for_reading,
    trial_config,
)
from hpsearch.search import SPEC_ATTR, count_trials
from hpsearch.training import TREC_SHA256

EXPORT_FORMAT = "hpsearch-export/1"
EVALUATION_ATTR = "hpsearch_evaluation"  # written by `hpsearch evaluate`


# --- the best configuration -----------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    """Versions of this environment (the exporting one; trials do not record theirs)."""
    versions = {"python": platform.python_version()}
    for name in ("hpsearch", "torch", "optuna"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def data_fingerprint(spec: Any = None) -> dict[str, Any]:
    """The data files' sha256: of your files as the stored spec recorded them when the study
    last started, else TREC's.

    These are the checksums hpsearch pins, not a hash of whatever is on this machine: every
    worker verifies its files against them before training, so they are exactly the data every
    trial saw, and the export needs no data directory to be written.
    """
    if isinstance(spec, dict) and spec.get("data_files"):
        return {"files": spec["data_files"], "note": "size and sha256 when the study started"}
    return {
        "dataset": "TREC (CogComp train_5500 / TREC_10)",
        "sha256": dict(TREC_SHA256),
        "note": "pinned by hpsearch; every trial verified its files against these",
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _trial_seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 3)


def _scrub_tree(value: Any, url: str) -> Any:
    """Remove the URL's password from every string inside ``value``."""
    if isinstance(value, str):
        return storage_mod.scrub(value, url)
    if isinstance(value, dict):
        return {k: _scrub_tree(v, url) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_tree(v, url) for v in value]
    return value


def best_export(study_name: str, url: str) -> dict[str, Any]:
    """Everything needed to reproduce and cite the best trial; ``config`` trains as it is."""
    study = load_study_for_reading(study_name, url)
    best = best_complete_trial(study)
    cfg = trial_config(study_name, best)
    counts = dataclasses.asdict(count_trials(study))
    counts["total"] = sum(counts.values())
    data = {
        "format": EXPORT_FORMAT,
        "study": study.study_name,
        "metric": f"{METRIC_NAMES[cfg.metric]} (best epoch), maximized",
        "best_value": best.value,
        "best_trial": best.number,
        # `hpsearch train --config export.json` reads this key (config.load).
        "config": cfg.to_dict(),
        "params": dict(best.params),
        "user_attrs": {k: v for k, v in best.user_attrs.items() if k != "config"},
        "learning_curve": {str(k): v for k, v in sorted(best.intermediate_values.items())},
        "datetime_start": _iso(best.datetime_start),
        "datetime_complete": _iso(best.datetime_complete),
        "duration_s": _trial_seconds(best),
        "counts": counts,
        "spec": study.user_attrs.get(SPEC_ATTR),
        "evaluation": current_evaluation(study, best),
        "data": data_fingerprint(study.user_attrs.get(SPEC_ATTR)),
        "versions": package_versions(),
        "storage": storage_mod.mask_url(url),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    scrubbed: dict[str, Any] = _scrub_tree(data, url)
    return scrubbed


def best_record(data: dict[str, Any]) -> dict[str, Any]:
    """The best trial of a ``best_export``, as ``hpsearch best --format json`` prints it (the
    fields of ``optuna best-trial --format json``, and the best epoch)."""
    return {
        "study": data["study"],
        "number": data["best_trial"],
        "state": TrialState.COMPLETE.name,  # the best trial is a complete one by definition
        "value": data["best_value"],
        "params": data["params"],
        "best_epoch": data["user_attrs"].get("best_epoch"),
        "datetime_start": data["datetime_start"],
        "datetime_complete": data["datetime_complete"],
        "duration_s": data["duration_s"],
    }


def current_evaluation(study: optuna.Study, best: FrozenTrial) -> dict[str, Any] | None:
    """The stored ``hpsearch evaluate`` result if it retrained the current best trial; None
    once a later trial has become the best (its test accuracy is not the best's)."""
    stored = study.user_attrs.get(EVALUATION_ATTR)
    if not isinstance(stored, dict) or stored.get("trial") != best.number:
        return None
    return stored


def to_json(data: Any) -> str:
    """Indented, strict JSON: NaN and infinities (no accuracy, but a study's values may have
    been written by other code) become null, not JSON's invalid ``NaN``/``Infinity``."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON, atomically."""
    outfile.write_text(Path(path), to_json(data))


# --- every trial as CSV -------------------------------------------------------------------------


def _cell(value: Any, url: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        value = json.dumps(value, default=str)
    return storage_mod.scrub(str(value), url)


def trials_rows(study: optuna.Study, url: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per trial, params and user attrs (not ``config``) flattened."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({name for t in trials for name in t.user_attrs if name != "config"})
    header = ["number", "state", "value", "datetime_start", "datetime_complete", "duration_s"]
    header += [f"params_{p}" for p in params] + [f"user_attrs_{a}" for a in attrs]
    rows = []
    for t in trials:
        row = [t.number, t.state.name, t.value, t.datetime_start, t.datetime_complete]
        row += [_trial_seconds(t)]
        row += [t.params.get(p) for p in params] + [t.user_attrs.get(a) for a in attrs]
        rows.append([_cell(v, url) for v in row])
    return header, rows


def trials_csv(study_name: str, url: str) -> str:
    """Every trial of the study as CSV text, one row per trial."""
    study = load_study_for_reading(study_name, url)
    header, rows = trials_rows(study, url)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# --- rendering ------------------------------------------------------------------------------------


def config_differences(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, value, default) for every field that differs from ``TrainConfig``'s default."""
    defaults = config_mod.TrainConfig().to_dict()
    return [(k, v, defaults[k]) for k, v in config.items() if k in defaults and v != defaults[k]]


def render_best(data: dict[str, Any]) -> RenderableType:
    """The best trial of an export: value, trial, params and config changes from the defaults."""
    counts = data.get("counts", {})
    summary = Table.grid(padding=(0, 2))
    summary.add_row("study", Text(str(data["study"])))
    metric = str(data.get("config", {}).get("metric", "accuracy"))
    summary.add_row(f"best {METRIC_NAMES.get(metric, metric)}", f"{data['best_value']:.4f}")
    summary.add_row("trial", str(data["best_trial"]))
    attrs = data.get("user_attrs", {})
    summary.add_row("best epoch", format_value(attrs.get("best_epoch")))
    summary.add_row(
        "trials",
        f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
        f"{counts.get('failed', 0)} failed, {counts.get('running', 0)} running",
    )
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("test"):  # None: no test set
        summary.add_row(
            "evaluated",
            f"test acc {evaluation['test']['mean']:.4f} ± {evaluation['test']['std']:.4f} "
            f"over {len(evaluation.get('runs', []))} seeds",
        )
    params = Table(title="params")
    params.add_column("name")
    params.add_column("value", justify="right")
    for name, value in data.get("params", {}).items():
        params.add_row(Text(name), Text(format_value(value)))
    changes = Table(title="config vs defaults")
    changes.add_column("field")
    changes.add_column("value", justify="right")
    changes.add_column("default", justify="right")
    for name, value, default in config_differences(data.get("config", {})):
        changes.add_row(name, format_value(value), format_value(default))
    return Group(summary, params, changes)
