"""Opening a study to read it: reading never writes, and the best trial is the search's.

Listing never creates a database: a SQLite file that does not exist yet is reported as "no
study created", not made empty by opening it; another program's database is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.engine
from optuna.trial import FrozenTrial

from hpsearch import config as config_mod
from hpsearch import storage as storage_mod
from hpsearch.errors import StudyError, did_you_mean
from hpsearch.search import best_trial, count_trials, stored_name

# Fields that describe the machine a run happened on, not the experiment: an export resets
# them so that it trains anywhere. `threads` stays: CPU results depend on the thread count
# (summation order), and an exact retrain is the point of the export (--set threads=N to
# change it).
RUNTIME_DEFAULTS: dict[str, Any] = {"device": "auto"}


def database_exists(url: str) -> bool:
    """False for a SQLite file (or in-memory database) that opening would create anew, or an
    empty one; another program's SQLite database is a StorageError. Opening either
    would write Optuna's schema into it: reading results must never write."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True  # a server database: its absence is reported by the connection
    database = parsed.database or ""
    if database in ("", ":memory:"):
        return False
    path = Path(database).expanduser()
    if path.exists() and not path.is_file():
        return True  # a directory: reported when opened
    tables = storage_mod.check_not_foreign(path, url)
    # No tables (an empty file too): Optuna would create them. None: absent, or not SQLite at
    # all (which opening it reports).
    return path.is_file() if tables is None else bool(tables)


def load_study_for_reading(study_name: str, url: str) -> optuna.Study:
    """Load an existing study, without heartbeats; a missing one, or one that is not a
    single validation accuracy to maximize, is a StudyError."""
    masked = storage_mod.mask_url(url)
    if not database_exists(url):
        raise StudyError(
            f"no study {study_name!r} in {masked}: the database does not exist yet "
            f"(run `hpsearch run --study {study_name}` first)"
        )
    storage = storage_mod.open_storage(url, heartbeat=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        if stored_name(study) != study_name:  # MySQL found a name that differs by case
            raise KeyError(study_name)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        available = ", ".join(names) if names else "none"
        raise StudyError(
            f"no study {study_name!r} in {masked}; available: {available}"
            f"{did_you_mean(study_name, names)}"
        ) from None
    if problem := foreign_objective(study):
        raise StudyError(
            f"study {study_name!r} {problem}: hpsearch reads studies that maximize one "
            "validation accuracy (made by hpsearch run)"
        )
    return study


def foreign_objective(study: optuna.Study) -> str | None:
    """Why ``study``'s objective is not hpsearch's (one value, maximized), or None."""
    directions = study.directions
    if len(directions) != 1:
        return f"has {len(directions)} objectives"
    if directions[0] != optuna.study.StudyDirection.MAXIMIZE:
        return "minimizes its value"
    return None


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best trial (``search.best_trial``); a StudyError when it has none yet."""
    best = best_trial(study)
    if best is None:
        counts = count_trials(study)
        raise StudyError(
            f"study {study.study_name!r} has no complete trial yet ({counts.pruned} pruned, "
            f"{counts.failed} failed, {counts.running} running)"
        )
    return best


def trial_config(study_name: str, trial: FrozenTrial) -> config_mod.TrainConfig:
    """The complete configuration a trial trained with, its device reset to ``auto`` (the
    thread count stays: see RUNTIME_DEFAULTS)."""
    stored = trial.user_attrs.get("config")
    if not isinstance(stored, dict):
        raise StudyError(
            f"study {study_name!r}: trial {trial.number} has no recorded config "
            "(was the study made by hpsearch?)"
        )
    source = f"study {study_name}: trial {trial.number}: config"
    cfg = config_mod.from_mapping(stored, source=source)
    return cfg.replace(**RUNTIME_DEFAULTS)
