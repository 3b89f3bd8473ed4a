"""``hpsearch worker`` processes sharing one study: the exact global budget on PostgreSQL, and
the pruner stopping hopeless trials early. Every worker is a real process started by hand, as
on a cluster; the fixture kills whatever a failing test leaves behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

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
    match = re.search(r": (\d+) trials? run; budget spent", err)
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


# --- study names that differ only by case ------------------------------------------------------


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_name_differing_only_by_case_is_refused_on_every_database(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # MariaDB compares names without case: `cased` loaded the study `Cased`, and resuming it
    # (with --force, under another spec) merged two studies that SQLite and PostgreSQL keep
    # apart. Such a name is refused everywhere.
    from hpsearch.errors import StudyError
    from hpsearch.results import load_study_for_reading
    from hpsearch.search import open_study
    from hpsearch.study import StudySpec, parse_study

    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'cased.db'}"
    else:
        url = str(request.getfixturevalue(f"{database}_url"))
    tag = uuid.uuid4().hex[:8]

    def spec(name: str) -> StudySpec:
        data = {"name": name, "space": {"lr": {"low": 1.0e-3, "high": 1.0e-2}}}
        return parse_study(data, source="test")

    open_study(spec(f"Cased-{tag}"), url, heartbeat=False)
    try:
        for force in (False, True):
            with pytest.raises(StudyError) as info:
                open_study(spec(f"cased-{tag}"), url, heartbeat=False, force=force)
            assert str(info.value).startswith(f"study 'cased-{tag}': ")
            assert f"has a study 'Cased-{tag}'; study names that differ only by case" in str(
                info.value
            )
        with pytest.raises(StudyError, match=f"no study 'cased-{tag}' in .*did you mean"):
            load_study_for_reading(f"cased-{tag}", url)
    finally:
        optuna.delete_study(study_name=f"Cased-{tag}", storage=url)


_RESUME = """
import sys
from hpsearch.search import open_study
from hpsearch.study import parse_study
space = {"lr": {"low": 1.0e-3, "high": 1.0e-2}}
spec = parse_study({"name": sys.argv[2], "space": space}, source="t")
open_study(spec, sys.argv[1], heartbeat=False)
"""


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_launchers_resuming_at_once_queue_an_interrupted_point_once(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Each resume queues the interrupted trials' points again; four processes resuming the
    # same study together must queue each point once, not four times.
    from hpsearch import storage

    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'resumed.db'}"
    else:
        url = str(request.getfixturevalue(f"{database}_url"))
    name = f"resumed-{uuid.uuid4().hex[:8]}"
    subprocess.run([sys.executable, "-c", _RESUME, url, name], check=True)
    study = optuna.load_study(study_name=name, storage=storage.open_storage(url, heartbeat=False))
    try:
        study.add_trial(
            optuna.create_trial(
                state=TrialState.FAIL,
                system_attrs={"fixed_params": {"lr": 2.0e-3}},
                user_attrs={"interrupted": True},
            )
        )
        resumes = [subprocess.Popen([sys.executable, "-c", _RESUME, url, name]) for _ in range(4)]
        assert [p.wait(timeout=120) for p in resumes] == [0, 0, 0, 0]
        waiting = study.get_trials(states=(TrialState.WAITING,))
        assert [t.system_attrs["fixed_params"] for t in waiting] == [{"lr": 2.0e-3}]
    finally:
        optuna.delete_study(study_name=name, storage=url)
