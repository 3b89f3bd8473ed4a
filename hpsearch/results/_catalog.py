"""The studies of a database, joined with the study files: what ``hpsearch studies`` lists.

Each study file appears with its state in the database (not created, running, incomplete,
done), then every study in the database that has no file (its stored description and
budget). A study in the database is measured against the budget stored with it, the one its
last run used (``run --trials 10`` on a file that says 16 stores 10), not the file's; the
file's is shown beside it when they differ. Listing only reads, and never creates a database
(``database_exists``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError
from hpsearch.results._reading import database_exists, foreign_objective
from hpsearch.search import SPEC_ATTR, best_trial, count_trials
from hpsearch.study import list_study_files, load_study


def _db_rows(url: str) -> dict[str, dict[str, Any]]:
    if not database_exists(url):
        return {}
    storage = storage_mod.open_storage(url, heartbeat=False)
    rows: dict[str, dict[str, Any]] = {}
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        counts = count_trials(study)
        spec = study.user_attrs.get(SPEC_ATTR)
        spec = spec if isinstance(spec, dict) else {}
        budget = spec.get("budget")
        # Another program's study in the same database (two objectives, say) is listed, not
        # a crash of the whole listing; its values are no accuracy to show as "best".
        foreign = foreign_objective(study)
        best = None if foreign else best_trial(study)
        if foreign:
            spec = {"description": f"(not an hpsearch study: it {foreign})"}
        rows[name] = {
            "complete": counts.complete,
            "pruned": counts.pruned,
            "failed": counts.failed,
            "running": counts.running,
            "best_value": best.value if best else None,
            "best_trial": best.number if best else None,
            "stored_budget": budget.get("trials") if isinstance(budget, dict) else None,
            "stored_description": spec.get("description"),
        }
    return rows


def _state(db: dict[str, Any] | None, budget: int | None) -> str:
    if db is None:
        return "not created"
    if db["running"]:
        return "running"
    if budget is not None and db["complete"] + db["pruned"] >= budget:
        return "done"
    return "incomplete"


def study_rows(url: str, studies_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every study file joined with its state in the database, then studies with no file."""
    db_rows = _db_rows(url)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in list_study_files(studies_dir):
        try:
            spec = load_study(str(path), studies_dir)
        except UsageError as exc:
            rows.append(_row(path.stem, str(path), f"invalid: {exc}", None, None, "invalid file"))
            continue
        db = db_rows.get(spec.name)
        seen.add(spec.name)
        budget = spec.trials if db is None or db["stored_budget"] is None else db["stored_budget"]
        row = _row(spec.name, str(path), spec.description, budget, db, _state(db, budget))
        row["file_budget"] = spec.trials
        rows.append(row)
    for name, db in sorted(db_rows.items()):
        if name not in seen:
            budget = db["stored_budget"]
            description = db["stored_description"] or "(no study file)"
            rows.append(_row(name, None, description, budget, db, _state(db, budget)))
    return rows


def _row(
    name: str,
    file: str | None,
    description: str,
    budget: int | None,
    db: dict[str, Any] | None,
    state: str,
) -> dict[str, Any]:
    db = db or {}
    return {
        "name": name,
        "file": file,
        "description": description,
        "budget": budget,
        "file_budget": None,
        "state": state,
        "complete": db.get("complete", 0),
        "pruned": db.get("pruned", 0),
        "failed": db.get("failed", 0),
        "running": db.get("running", 0),
        "best_value": db.get("best_value"),
        "best_trial": db.get("best_trial"),
    }


def _done(row: dict[str, Any]) -> str:
    """``stored/budget``, and the file's budget where it differs from the one in force."""
    text = f"{row['complete'] + row['pruned']}/{'-' if row['budget'] is None else row['budget']}"
    if row["file_budget"] not in (None, row["budget"]):
        text += f" (file: {row['file_budget']})"
    return text


def render_studies(rows: Iterable[dict[str, Any]], url: str) -> Group:
    """The rows of ``study_rows`` under a line naming the database they were read from (a
    line of its own: a table's title would wrap a long URL to the table's width)."""
    where = f"studies in {storage_mod.mask_url(url)}"
    if not database_exists(url):
        where += " (no database there yet)"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("study", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("ok/pr/fail", justify="right", no_wrap=True)
    table.add_column("best", justify="right", no_wrap=True)
    # The only collapsible column: rich narrows it to fit the terminal, and each cell is one
    # line cut with an ellipsis rather than wrapped over many.
    table.add_column("description")
    for row in rows:
        state = row["state"]
        if row["running"]:
            state = f"{state} ({row['running']})"
        table.add_row(
            Text(row["name"]),
            state,
            _done(row),
            f"{row['complete']}/{row['pruned']}/{row['failed']}",
            f"{row['best_value']:.4f}" if row["best_value"] is not None else "-",
            Text(row["description"], no_wrap=True, overflow="ellipsis"),
        )
    return Group(Text(where, style="bold"), table)
