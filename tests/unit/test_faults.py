"""Fault tolerance in process: trials left RUNNING, stop requests, studies missing from a read
and failing trials, on SQLite files with short heartbeats (interval 1 s, grace 3 s). The killed
and interrupted `python -m hpsearch` processes and database outages are in
tests/system/test_faults.py.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpsearch import cli, search, settings, storage
from hpsearch import study as studyfile
from hpsearch.errors import StudyError
from hpsearch.search import _launcher as launcher
from hpsearch.search import _objective as objective
from hpsearch.search import _worker as workers
from tests.helpers.faults import GRACE, HEARTBEAT, load, sqlite_url, states, write_study


def test_interrupted_and_killed_trials_do_not_stop_a_resumed_study(
    tmp_path: Path, trec_dir: Path, short_heartbeats: None
) -> None:
    # Failures without an `error` (interrupted, killed, cut off) are not the search space's
    # fault: however many a study collected, resuming it must still run its trials.
    spec = studyfile.load_study(write_study(tmp_path, "resumed", trials=2, epochs=1))
    url = sqlite_url(tmp_path)
    study = search.open_study(spec, url, heartbeat=False)
    for _ in range(5):
        study.add_trial(optuna.create_trial(state=TrialState.FAIL))
    summary = workers.work(spec, url, worker="w", data_dir=trec_dir)
    assert (summary.reason, summary.ok, summary.trials_run) == ("budget spent", True, 2)


def test_running_trial_that_never_beat_is_failed_and_retried(
    tmp_path: Path, trec_dir: Path, short_heartbeats: None
) -> None:
    # A worker that lost the database (or was killed) between creating its trial and the
    # trial's first heartbeat: Optuna's stale check never fails such a trial, and it would
    # hold the last slot of the budget for ever.
    spec = studyfile.load_study(write_study(tmp_path, "unbeaten", trials=1, epochs=1))
    url = sqlite_url(tmp_path)
    study = search.open_study(spec, url, heartbeat=False)
    orphan = study.ask()
    orphan.suggest_float("lr", 1.0e-3, 1.0e-2, log=True)
    started = time.monotonic()
    deadline = time.time() + 60  # without the fix the worker would wait on it for ever
    summary = workers.work(spec, url, worker="w", data_dir=trec_dir, deadline=deadline)
    assert summary.reason == "budget spent"
    assert time.monotonic() - started >= GRACE - 1  # not failed while it might be starting
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == orphan.params and retry.system_attrs["failed_trial"] == 0


@pytest.mark.parametrize("deleted", [False, True], ids=["empty read", "deleted study"])
def test_study_missing_from_a_read(
    tmp_path: Path,
    trec_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    short_heartbeats: None,
    deleted: bool,
) -> None:
    # Seen while PostgreSQL connections were being killed: a read that finds no study.
    spec = studyfile.load_study(write_study(tmp_path, "vanishing", trials=1, epochs=1))
    url = sqlite_url(tmp_path)
    real, calls = search.count_trials, 0

    def count_trials(study: optuna.Study) -> search.Counts:
        nonlocal calls
        calls += 1
        if calls == 1:
            if deleted:
                optuna.delete_study(study_name="vanishing", storage=url)
            raise KeyError("Record does not exist.")
        return real(study)

    monkeypatch.setattr(workers, "count_trials", count_trials)
    monkeypatch.setattr(workers, "POLL_SECONDS", 0.1)
    if deleted:
        with pytest.raises(StudyError, match="w: study 'vanishing' no longer exists in sqlite"):
            workers.work(spec, url, worker="w", data_dir=trec_dir)
    else:
        assert workers.work(spec, url, worker="w", data_dir=trec_dir).reason == "budget spent"


def test_stop_request_ends_the_trial_even_if_its_interrupt_was_lost(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, short_heartbeats: None
) -> None:
    # Python drops a KeyboardInterrupt raised inside a finalizer (torch runs many): the
    # worker's signal handler also sets an event, which stops the trial at its next epoch.
    stop = threading.Event()
    real = objective.train_from_config

    def signalled(*args: Any, **kwargs: Any) -> Any:
        stop.set()  # the handler ran; its KeyboardInterrupt went nowhere
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train_from_config", signalled)
    spec = studyfile.load_study(write_study(tmp_path, "lost", trials=2, epochs=5))
    url = sqlite_url(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        workers.work(spec, url, worker="w", data_dir=trec_dir, stop=stop)
    study = load(url, "lost")
    assert study is not None
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and list(trial.intermediate_values) == []


def test_worker_does_not_run_a_trial_created_after_its_lock_was_lost(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, short_heartbeats: None
) -> None:
    # Another worker may have counted and claimed the same slot meanwhile: running this
    # trial could exceed the budget, so it is failed and the slot counted again.
    real, checks = storage.budget_lock, 0

    @contextlib.contextmanager
    def flaky_lock(url: str, name: str, **kwargs: Any) -> Iterator[Callable[[], bool]]:
        def held() -> bool:  # the first check finds the lock gone
            nonlocal checks
            checks += 1
            return checks > 1

        with real(url, name, **kwargs):
            yield held

    monkeypatch.setattr(storage, "budget_lock", flaky_lock)
    # The trial not run was the study file's enqueued point: it is queued again, not lost.
    point = {"lr": 2.0e-3}
    spec = studyfile.load_study(
        write_study(tmp_path, "unlocked", trials=1, epochs=1, enqueue=[point])
    )
    url = sqlite_url(tmp_path)
    summary = workers.work(spec, url, worker="w", data_dir=trec_dir)
    assert summary.reason == "budget spent" and summary.trials_run == 2
    study = load(url, "unlocked")
    assert study is not None
    failed, complete = study.get_trials()
    assert failed.state == TrialState.FAIL and "worker" not in failed.user_attrs
    assert complete.state == TrialState.COMPLETE and complete.params == point


def test_db_retry_seconds_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPSEARCH_DB_RETRY_SECONDS", "7")
    assert workers.db_retry_seconds() == 7
    monkeypatch.delenv("HPSEARCH_DB_RETRY_SECONDS")
    assert workers.db_retry_seconds() == workers.DB_RETRY_SECONDS
    monkeypatch.setenv("HPSEARCH_DB_RETRY_SECONDS", "soon")
    with pytest.raises(storage.StorageError, match="HPSEARCH_DB_RETRY_SECONDS"):
        workers.db_retry_seconds()


@pytest.fixture
def short_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.HEARTBEAT_INTERVAL, str(HEARTBEAT))
    monkeypatch.setenv(settings.GRACE_PERIOD, str(GRACE))


def test_exception_in_a_trial_is_recorded_and_the_worker_goes_on(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, short_heartbeats: None
) -> None:
    real = objective.train_from_config
    calls = 0

    def out_of_memory_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train_from_config", out_of_memory_once)
    spec = studyfile.load_study(write_study(tmp_path, "oom", trials=2, epochs=1))
    url = sqlite_url(tmp_path)
    summary = workers.work(spec, url, worker="w", data_dir=trec_dir)
    assert summary.trials_run == 3 and summary.reason == "budget spent"
    study = load(url, "oom")
    assert study is not None
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs["error"] == (
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    )
    assert "config" in trials[0].user_attrs  # enough to retrain it elsewhere


def test_worker_whose_every_trial_fails_stops_with_an_error(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, short_heartbeats: None
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken")

    monkeypatch.setattr(objective, "train_from_config", broken)
    path = write_study(tmp_path, "broken", trials=2, epochs=1)
    url = sqlite_url(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    try:  # the worker command installs its own signal handlers (and unraisable hook)
        result = CliRunner().invoke(
            cli.app, ["worker", "-s", str(path), "--storage", url, "--data-dir", str(trec_dir)]
        )
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert result.exit_code == 1, result.output
    assert "stopped after 3 failed trials" in result.output
    study = load(url, "broken")
    assert study is not None and states(study) == {"FAIL": 3}


# --- interrupted trials queued again ---------------------------------------------------------


def test_an_interrupted_enqueued_point_runs_again_once_when_the_study_resumes(
    tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch, short_heartbeats: None
) -> None:
    # The study file's enqueued points (known-good configurations) stayed FAIL after Ctrl-C
    # and were never queued again: the resumed study drew new points instead.
    point = {"lr": 2.0e-3}
    spec = studyfile.load_study(
        write_study(tmp_path, "stopped", trials=2, epochs=5, enqueue=[point])
    )
    url = sqlite_url(tmp_path)
    stop = threading.Event()
    real = objective.train_from_config

    def signalled(*args: Any, **kwargs: Any) -> Any:
        stop.set()  # a stop signal came while the enqueued point trained
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train_from_config", signalled)
    with pytest.raises(KeyboardInterrupt):
        workers.work(spec, url, worker="w", data_dir=trec_dir, stop=stop)
    monkeypatch.setattr(objective, "train_from_config", real)
    study = load(url, "stopped")
    assert study is not None
    (stopped,) = study.get_trials()
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"] is True
    # Resumed twice before the copy ran (Ctrl-C again at once): still one copy.
    search.open_study(spec, url, heartbeat=False)
    search.open_study(spec, url, heartbeat=False)
    summary = workers.work(spec, url, worker="w", data_dir=trec_dir)
    assert summary.reason == "budget spent"
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == point and trials[1].user_attrs["enqueued"] is True
    assert trials[2].params != point  # the sampler's draw, not a second copy


def test_two_resumes_at_once_queue_an_interrupted_point_once(tmp_path: Path) -> None:
    # Two launchers resuming the same study together: the budget lock orders them, and the
    # second sees the copy the first queued.
    spec = studyfile.load_study(write_study(tmp_path, "twice", trials=2, epochs=1))
    url = sqlite_url(tmp_path)
    study = search.open_study(spec, url, heartbeat=False)
    study.add_trial(
        optuna.create_trial(
            state=TrialState.FAIL,
            params={"lr": 3.0e-3},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)},
            user_attrs={"interrupted": True, "worker": "w"},
        )
    )
    threads = [
        threading.Thread(target=search.open_study, args=(spec, url), kwargs={"heartbeat": False})
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"lr": 3.0e-3}]
    assert waiting[0].user_attrs == {}  # the dead run's worker is not carried over


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_retried_by_its_heartbeat_is_not_queued_again(tmp_path: Path) -> None:
    # `run` marks the trials of its dead workers interrupted; another worker's heartbeat
    # check may have retried the same trial a moment before.
    spec = studyfile.load_study(write_study(tmp_path, "retried", trials=2, epochs=1))
    url = sqlite_url(tmp_path)
    study = search.open_study(spec, url, heartbeat=False)
    study.add_trial(
        optuna.create_trial(
            state=TrialState.FAIL,
            user_attrs={"interrupted": True},
            system_attrs={"fixed_params": {"lr": 3.0e-3}},
        )
    )
    storage.RetryStaleTrial()(study, study.trials[0])
    search.open_study(spec, url, heartbeat=False)
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_trials_of_workers_run_stopped_are_queued_again(tmp_path: Path) -> None:
    # `run` fails the RUNNING trials of the workers it had to kill on a stop: their points
    # are interrupted like any other, not crashes of the search space.
    spec = studyfile.load_study(write_study(tmp_path, "orphaned", trials=2, epochs=1))
    url = sqlite_url(tmp_path)
    study = search.open_study(spec, url, heartbeat=False)
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    orphan.set_user_attr("worker", "w1")
    assert launcher.fail_orphans(study, ["w1"]) == 1
    assert workers._crashed(study) == 0
    search.open_study(spec, url, heartbeat=False)
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == orphan.params
