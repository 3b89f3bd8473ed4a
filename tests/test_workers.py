"""``hpsearch worker`` processes sharing one study: the exact global budget on PostgreSQL, and
the pruner stopping hopeless trials early. Every worker is a real process started by hand, as
on a cluster; the fixture kills whatever a failing test leaves behind."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import storage as storage_mod
from hpsearch.errors import StudyError
from hpsearch.search import Counts, count_trials, open_study
from hpsearch.study import parse_study

# A tiny model on which a sensible learning rate reaches ~60% validation accuracy in two
# epochs, in a fraction of a second: the workers' start-up dominates these tests.
TINY_CONFIG = """\
config:
  pooling: mean
  regularizer: none
  hidden_dim: 8
  embedding_dim: 8
  batch_size: 256
"""

Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def spawn(trec_dir: Path, tmp_path: Path) -> Iterator[Spawn]:
    """Start ``hpsearch worker`` processes in tmp_path; kill any still alive at the end."""
    procs: list[subprocess.Popen[str]] = []
    base = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    base["HPSEARCH_DATA_DIR"] = str(trec_dir)

    def start(*args: str, storage: str | None = None) -> subprocess.Popen[str]:
        env = base | ({"HPSEARCH_STORAGE": storage} if storage else {})
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "worker", "--threads", "1", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _finish(proc: subprocess.Popen[str], timeout: float = 150) -> str:
    """Wait for a worker; return its stderr after checking it ended cleanly."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "database is locked" not in err
    assert "Traceback" not in err
    return err


def _trials_run(err: str) -> int:
    match = re.search(r": (\d+) trials run; budget spent", err)
    assert match, err
    return int(match[1])


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg_study(postgres_url: str) -> Iterator[str]:
    """A fresh study name; the study is deleted afterwards."""
    name = f"test-workers-{uuid.uuid4().hex[:12]}"
    yield name
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
    finally:
        storage.engine.dispose()


def _pg_states(url: str, name: str) -> dict[TrialState, int]:
    storage = optuna.storages.RDBStorage(url)
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()
    return {state: sum(t.state == state for t in trials) for state in TrialState}


@pytest.mark.postgres
@pytest.mark.parametrize(("workers", "trials"), [(2, 8), (4, 12)])
def test_workers_on_postgres_spend_exactly_the_budget(
    workers: int, trials: int, postgres_url: str, pg_study: str, tmp_path: Path, spawn: Spawn
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: {pg_study}\n{TINY_CONFIG}"
        "space:\n"
        "  lr: {low: 1.0e-3, high: 3.0e-2, log: true}\n"
        "  dropout: {low: 0.0, high: 0.5}\n"
        "budget: {trials: 100, epochs: 2}\n"
    )
    args = ["--study", str(study), "--trials", str(trials)]
    procs = [
        spawn(*args, "--worker-id", f"pg{i}", "--seed-offset", str(i), storage=postgres_url)
        for i in range(workers)
    ]
    runs = [_trials_run(_finish(proc)) for proc in procs]
    states = _pg_states(postgres_url, pg_study)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == trials, states
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0
    assert states[TrialState.FAIL] == 0
    assert sum(runs) == trials  # no trial was created beyond the budget
    # Two or more workers took trials, or the test showed nothing about sharing the budget.
    assert sum(run > 0 for run in runs) >= 2, runs


# --- pruning ----------------------------------------------------------------------------------


def test_pruner_stops_hopeless_trials_before_the_last_epoch(tmp_path: Path, spawn: Spawn) -> None:
    epochs = 4
    study = tmp_path / "study.yaml"
    # lr 1e-6 learns nothing (validation accuracy stays at the majority class); 3e-2 reaches
    # ~60% by epoch 2. The good point is enqueued first, so the median has a reference.
    study.write_text(
        f"name: prune\n{TINY_CONFIG}"
        "space:\n"
        "  lr: {choices: [1.0e-6, 3.0e-2]}\n"
        "pruner: {name: median, options: {n_startup_trials: 1, n_warmup_steps: 2}}\n"
        f"budget: {{trials: 6, epochs: {epochs}}}\n"
        "enqueue: [{lr: 3.0e-2}, {lr: 1.0e-6}, {lr: 3.0e-2}, {lr: 1.0e-6}]\n"
    )
    _finish(spawn("--study", str(study), "--seed-offset", "0"))
    url = f"sqlite:///{tmp_path}/hpsearch.db"
    trials = optuna.load_study(study_name="prune", storage=url).trials
    assert len(trials) == 6
    bad = [t for t in trials if t.params["lr"] == 1.0e-6]
    good = [t for t in trials if t.params["lr"] == 3.0e-2]
    assert len(bad) >= 2 and len(good) >= 2
    for t in bad:
        assert t.state == TrialState.PRUNED, t
        assert max(t.intermediate_values) < epochs
        # Pruned at the first step after the warm-up.
        assert t.user_attrs["epochs_run"] == max(t.intermediate_values) == 2
        assert t.user_attrs["seconds"] > 0
    for t in good:
        assert t.state == TrialState.COMPLETE, t
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        assert t.user_attrs["epochs_run"] == epochs
        assert t.value is not None and t.value > 0.45


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
