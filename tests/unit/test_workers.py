"""Resuming a study in process: sampler draws not replayed, trial counts, and forced resumes
named or refused. The `hpsearch worker` processes are in tests/system/test_workers.py."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import storage as storage_mod
from hpsearch.errors import StudyError
from hpsearch.search import Counts, count_trials, open_study
from hpsearch.search._worker import handle_stop_signals
from hpsearch.study import parse_study

# --- resuming ---------------------------------------------------------------------------------


def test_resumed_study_does_not_replay_the_samplers_draws(tmp_path: Path) -> None:
    # The launcher gives worker i seed offset i in every session. Were the offsets the whole
    # story, a resumed random search would propose the first session's points again, and
    # those trials, seeded alike, would repeat their results exactly.
    spec = parse_study(
        {
            "name": "resume",
            "space": {"lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 3},
        },
        source="test",
    )

    def draw(study: optuna.Study, n: int) -> list[float]:
        study.optimize(lambda trial: spec.suggest(trial)["lr"], n_trials=n)
        return [t.params["lr"] for t in study.trials[-n:]]

    url = f"sqlite:///{tmp_path}/r.db"
    first = draw(open_study(spec, url, heartbeat=False), 3)
    resumed = draw(open_study(spec.with_budget(trials=6), url, heartbeat=False), 3)
    assert not set(first) & set(resumed)
    # A new study with one worker (offset 0) still follows the study file's seed exactly.
    fresh = open_study(spec, f"sqlite:///{tmp_path}/fresh.db", heartbeat=False)
    assert draw(fresh, 3) == first
    other = open_study(spec, f"sqlite:///{tmp_path}/other.db", heartbeat=False, seed_offset=1)
    assert not set(draw(other, 3)) & set(first)
    # Enqueued trials are not draws: a worker joining a new study that holds only those (as
    # the launcher leaves it) keeps the file's seed too.
    queued = dataclasses.replace(spec, enqueue=[{"lr": 1.0e-3}])
    open_study(queued, f"sqlite:///{tmp_path}/queued.db", heartbeat=False)
    joined = open_study(queued, f"sqlite:///{tmp_path}/queued.db", heartbeat=False)
    assert draw(joined, 4) == [1.0e-3, *first]


def test_count_trials_by_query_equals_counting_the_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/counts.db"
    on_disk = optuna.create_study(storage=url, study_name="counts")
    in_memory = optuna.create_study(study_name="counts")
    for study in (on_disk, in_memory):
        for state in (TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED):
            study.tell(study.ask(), 0.5 if state == TrialState.COMPLETE else None, state=state)
        study.tell(study.ask(), state=TrialState.FAIL)
        study.ask()  # left RUNNING
        study.enqueue_trial({})  # WAITING
    assert storage_mod.count_states(in_memory) is None  # counted from get_trials
    assert storage_mod.count_states(on_disk) is not None  # one GROUP BY query
    expected = Counts(complete=2, pruned=1, failed=1, running=1, waiting=1)
    assert count_trials(on_disk) == count_trials(in_memory) == expected


def _pooled(choices: list[str], lr_high: float = 1.0e-2) -> Any:
    return parse_study(
        {
            "name": "pooled",
            "space": {
                "pooling": {"choices": choices},
                "lr": {"low": 1.0e-4, "high": lr_high, "log": True},
            },
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 2},
        },
        source="test",
    )


def test_a_forced_resume_optuna_cannot_run_is_refused(tmp_path: Path) -> None:
    # Adding a choice used to pass --force and then fail every new trial at its first
    # suggest, thousands of them, since those failures were not counted as crashes.
    url = f"sqlite:///{tmp_path}/p.db"
    first = open_study(_pooled(["max", "mean"]), url, heartbeat=False)
    first.optimize(lambda t: len(_pooled(["max", "mean"]).suggest(t)), n_trials=2)
    with pytest.raises(StudyError) as exc:
        open_study(_pooled(["max", "mean", "last"]), url, heartbeat=False, force=True)
    assert str(exc.value) == (
        'study \'pooled\': space.pooling: its trials used one of ["max", "mean"], the file '
        'now says one of ["max", "mean", "last"]; Optuna cannot change a parameter\'s '
        "choices, kind or log scale within a study. Use another study name, or keep "
        "space.pooling as it was"
    )
    # A changed range is not such a change: the forced resume goes ahead.
    resumed = open_study(_pooled(["max", "mean"], lr_high=3.0e-2), url, heartbeat=False, force=True)
    resumed.optimize(lambda t: len(_pooled(["max", "mean"], 3.0e-2).suggest(t)), n_trials=1)
    assert len(resumed.trials) == 3


def _ranged(log: bool, enqueue: list[dict[str, Any]] | None = None) -> Any:
    return parse_study(
        {
            "name": "ranged",
            "space": {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": log}},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 2},
            "enqueue": enqueue or [],
        },
        source="test",
    )


def test_a_forced_resume_names_a_changed_log_scale(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    open_study(_ranged(True), url, heartbeat=False).optimize(
        lambda t: _ranged(True).suggest(t)["lr"], n_trials=1
    )
    with pytest.raises(StudyError) as exc:
        open_study(_ranged(False), url, heartbeat=False, force=True)
    assert "its trials used float in [0.0001, 0.01], log, the file now says float in " in str(
        exc.value
    )
    assert str(exc.value).endswith(
        "cannot change a parameter's choices, kind or log scale "
        "within a study. Use another study name, or keep space.lr as it was"
    )


def test_a_forced_resume_queues_the_points_the_file_adds(tmp_path: Path) -> None:
    # They used to be stored in the spec but never run: points were queued only at creation.
    url = f"sqlite:///{tmp_path}/e.db"
    first = open_study(_ranged(True, [{"lr": 1.0e-3}]), url, heartbeat=False)
    first.optimize(lambda t: _ranged(True).suggest(t)["lr"], n_trials=2)
    points = [{"lr": 1.0e-3}, {"lr": 5.0e-3}]
    resumed = open_study(_ranged(True, points), url, heartbeat=False, force=True)
    resumed.optimize(lambda t: _ranged(True).suggest(t)["lr"], n_trials=1)
    assert resumed.trials[0].params["lr"] == 1.0e-3
    assert resumed.trials[2].params["lr"] == 5.0e-3  # the added one, not a random draw
    assert resumed.trials[2].user_attrs["enqueued"] is True
    # Resuming again with the same file queues nothing more.
    again = open_study(_ranged(True, points), url, heartbeat=False, force=True)
    assert not again.get_trials(states=[TrialState.WAITING])


def test_a_signal_ignored_at_start_stays_ignored() -> None:
    # nohup ignores SIGHUP so that a closed terminal does not stop the search; a handler
    # installed over it would stop every trial when the terminal closes.
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def handler(signum: int, frame: object) -> None:
        pass

    try:
        replaced = handle_stop_signals(handler)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGINT) is handler
        assert set(replaced) == {signal.SIGINT, signal.SIGTERM}
    finally:
        for signum, previous in before.items():
            signal.signal(signum, previous)


def test_another_programs_study_in_a_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    # The refusal used to come after opening the file: switched to WAL mode for good, with
    # the schema and budget lock files made beside it.
    import sqlite3

    foreign = tmp_path / "foreign.db"
    mine = optuna.storages.RDBStorage(f"sqlite:///{foreign}")
    optuna.create_study(study_name="pooled", storage=mine, direction="maximize")
    mine.engine.dispose()
    before = foreign.read_bytes()
    with pytest.raises(StudyError, match=r"exists in sqlite:///.* but was not made by hpsearch"):
        open_study(_pooled(["max"]), f"sqlite:///{foreign}")
    assert foreign.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["foreign.db"]
    with sqlite3.connect(f"{foreign.as_uri()}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_name_differing_only_by_case_from_a_study_is_refused(tmp_path: Path) -> None:
    # Two studies on SQLite and PostgreSQL, one on MySQL/MariaDB: refused everywhere, so that
    # a study is the same study on every database.
    url = f"sqlite:///{tmp_path}/c.db"
    open_study(dataclasses.replace(_ranged(True), name="Cased"), url, heartbeat=False)
    with pytest.raises(StudyError) as exc:
        open_study(dataclasses.replace(_ranged(True), name="cased"), url, heartbeat=False)
    assert str(exc.value) == (
        f"study 'cased': {url} has a study 'Cased'; study names that differ only by case are "
        "refused on every database (MySQL cannot tell them apart). Use 'Cased' to resume it, "
        "or another name"
    )
    assert optuna.get_all_study_names(url) == ["Cased"]  # nothing written


@pytest.mark.parametrize(
    ("run", "words"), [(0, "0 trials run"), (1, "1 trial run"), (2, "2 trials run")]
)
def test_a_workers_closing_line_counts_its_trials_in_words(
    monkeypatch: pytest.MonkeyPatch, run: int, words: str
) -> None:
    import threading

    from hpsearch.search import _worker as worker

    summary = worker.WorkerSummary("w1", trials_run=run, reason="budget spent")
    monkeypatch.setattr(worker, "stop_on_signals", threading.Event)
    monkeypatch.setattr(worker, "work", lambda *a, **k: summary)
    lines: list[str] = []
    spec: Any = None
    code = worker.run_worker(
        spec, "sqlite://", name="w1", threads=1, data_dir=None, deadline=None, seed_offset=0,
        report=lines.append,
    )  # fmt: skip
    assert (code, lines) == (0, [f"w1: {words}; budget spent"])
