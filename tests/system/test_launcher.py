"""``hpsearch run``: N real worker processes on the SQLite default, exact budget, resuming.

One module-scoped run of a small regularization-like study (4 workers, 12 trials) is the
fixture; the resume tests work on copies of its database so that each starts from the same
finished study.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpsearch import storage
from hpsearch import study as studyfile
from hpsearch.cli import app
from hpsearch.search import SPEC_ATTR
from hpsearch.search import _launcher as launcher
from hpsearch.search._process import WorkerOrder

STUDY = "reg"

# The report's section 1.3 search (lr, dropout, L2 alpha, clipping) on a model small enough
# that a trial takes a fraction of a second: process start-up dominates the run.
STUDY_YAML = f"""\
name: {STUDY}
config:
  cell: rnn
  packed: true
  optimizer: adam
  regularizer: l2
  pooling: mean
  hidden_dim: 8
  embedding_dim: 8
  batch_size: 256
space:
  lr: {{low: 1.0e-3, high: 3.0e-2, log: true}}
  dropout: {{low: 0.0, high: 0.5}}
  alpha: {{low: 1.0e-6, high: 1.0e-3, log: true}}
  grad_clip: {{low: 1.0, high: 10.0}}
sampler: {{name: tpe, seed: 0, options: {{n_startup_trials: 4}}}}
budget: {{trials: 40, epochs: 2}}
enqueue:
  - {{lr: 3.0e-2, dropout: 0.0, alpha: 1.0e-6, grad_clip: 5.0}}
"""

TRIALS = 12

WORKERS = 2  # no more than CI's cores: run starts at most one worker per core


def _env(trec_dir: Path) -> dict[str, str]:
    """This environment without any HPSEARCH_* setting, so the SQLite default is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    return env | {"HPSEARCH_DATA_DIR": str(trec_dir)}


def _kill_group(proc: subprocess.Popen[str]) -> None:
    # The workers share the launcher's process group: this also ends any the launcher left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_process(
    directory: Path,
    trec_dir: Path,
    *,
    workers: int,
    trials: int,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """`hpsearch run` of STUDY_YAML in ``directory`` as a real process: (exit code, output)."""
    (directory / "study.yaml").write_text(STUDY_YAML)
    cmd = [sys.executable, "-m", "hpsearch", "run", "--study", "study.yaml"]
    cmd += ["--workers", str(workers), "--trials", str(trials)]
    proc = subprocess.Popen(
        cmd,
        cwd=directory,
        env=_env(trec_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    try:
        output, _ = proc.communicate(timeout=180)
    finally:
        _kill_group(proc)
    return proc.returncode, output


def _states(directory: Path) -> Counter[str]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{directory}/hpsearch.db")
    try:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        return Counter(t.state.name for t in study.get_trials(deepcopy=False))
    finally:
        storage.engine.dispose()


def _done(states: Counter[str]) -> int:
    return states[TrialState.COMPLETE.name] + states[TrialState.PRUNED.name]


@dataclass
class Finished:
    directory: Path
    returncode: int
    output: str
    states: Counter[str]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, trec_dir: Path) -> Iterator[Finished]:
    directory = tmp_path_factory.mktemp("run")
    returncode, output = _run_process(directory, trec_dir, workers=WORKERS, trials=TRIALS)
    yield Finished(directory, returncode, output, _states(directory))


@pytest.fixture
def runner(
    finished: Finished, tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> CliRunner:
    """A CliRunner working in a private copy of the finished run's directory."""
    directory = tmp_path / "run"
    shutil.copytree(finished.directory, directory)
    monkeypatch.chdir(directory)
    for name in [n for n in os.environ if n.startswith("HPSEARCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    return CliRunner()


def test_run_spends_exactly_the_budget(finished: Finished) -> None:
    assert finished.returncode == 0, finished.output
    assert _done(finished.states) == TRIALS, (finished.states, finished.output)
    assert finished.states[TrialState.RUNNING.name] == 0
    assert finished.states[TrialState.WAITING.name] == 0
    assert "database is locked" not in finished.output
    assert "Traceback" not in finished.output
    assert f"finished {TRIALS}/{TRIALS}" in finished.output
    # The summary starts on a line of its own after the live status, also in a log file.
    assert re.search(rf"^ *{STUDY}: top \d+ of \d+ complete", finished.output, re.MULTILINE)
    # Every worker ended because the budget was spent, not by an error.
    assert finished.output.count("budget spent") == min(WORKERS, launcher.available_cores())


def test_workers_are_recorded_and_seeded_apart(finished: Finished) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{finished.directory}/hpsearch.db")
    try:
        trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    finally:
        storage.engine.dispose()
    workers = {t.user_attrs.get("worker") for t in trials}
    host = re.escape(os.uname().nodename)
    assert all(re.fullmatch(rf"{host}-\d+-w[1-{WORKERS}]", str(w)) for w in workers), workers
    assert len(workers) >= 2
    assert trials[0].user_attrs["enqueued"] is True  # the study file's point comes first
    assert trials[0].params == {"lr": 3.0e-2, "dropout": 0.0, "alpha": 1.0e-6, "grad_clip": 5.0}
    # Different sampler seeds per worker: no two sampled trials drew the same point.
    sampled = [tuple(sorted(t.params.items())) for t in trials[1:]]
    assert len(set(sampled)) == len(sampled)


def _run(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", "--study", "study.yaml", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_rerun_after_completion_adds_nothing(finished: Finished, runner: CliRunner) -> None:
    # One worker is enough to show it: each finds the budget spent and leaves.
    code, output = _run(runner, "--workers", "1", "--trials", str(TRIALS))
    assert code == 0, output
    assert "budget spent" in output
    assert _states(Path.cwd()) == finished.states


def test_more_trials_completes_exactly_the_extra_ones(runner: CliRunner) -> None:
    code, output = _run(runner, "--workers", "1", "--trials", str(TRIALS + 2))
    assert code == 0, output
    states = _states(Path.cwd())
    assert _done(states) == TRIALS + 2, (states, output)
    assert states[TrialState.RUNNING.name] == 0


def test_no_more_workers_start_than_trials_are_left(runner: CliRunner) -> None:
    code, output = _run(runner, "--workers", "3", "--trials", str(TRIALS + 1))
    assert code == 0, output
    assert f"note: 1 of {TRIALS + 1} trials left to run: starting 1 of the 3 workers" in output
    assert output.count("budget spent") == 1  # one worker ran, and the last trial
    assert _done(_states(Path.cwd())) == TRIALS + 1


def test_changed_spec_is_refused_unless_forced(finished: Finished, runner: CliRunner) -> None:
    path = Path("study.yaml")
    path.write_text(path.read_text().replace("high: 3.0e-2", "high: 5.0e-2"))
    code, output = _run(runner, "--workers", "1", "--trials", str(TRIALS))
    assert code == 2, output
    assert f"study {STUDY!r} exists with a different spec" in output
    assert "space.lr.high: 0.03 -> 0.05" in output
    assert "--force" in output
    assert _states(Path.cwd()) == finished.states  # nothing ran

    code, output = _run(runner, "--workers", "1", "--trials", str(TRIALS + 1), "--force")
    assert code == 0, output
    assert _done(_states(Path.cwd())) == TRIALS + 1
    storage = optuna.storages.RDBStorage(f"sqlite:///{Path.cwd()}/hpsearch.db")
    try:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        assert study.user_attrs[SPEC_ATTR]["space"]["lr"]["high"] == 5.0e-2
        newest = study.get_trials(deepcopy=False)[-1]
        lr = newest.distributions["lr"]
        assert isinstance(lr, optuna.distributions.FloatDistribution)
        assert lr.high == 5.0e-2  # the new space is the one searched
    finally:
        storage.engine.dispose()


def test_workers_beyond_the_cores_run_one_per_core(tmp_path: Path, trec_dir: Path) -> None:
    # Three workers asked for on one core: a core shared by two workers only slices its time,
    # so one starts, says so in one line, and the study still gets its exact budget.
    one_core = {min(os.sched_getaffinity(0))}
    returncode, output = _run_process(
        tmp_path,
        trec_dir,
        workers=3,
        trials=4,
        preexec_fn=lambda: os.sched_setaffinity(0, one_core),
    )
    assert returncode == 0, output
    assert "note: one worker per core without a GPU: starting 1 of the 3 workers" in output
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/hpsearch.db")
    try:
        trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    finally:
        storage.engine.dispose()
    assert len(trials) == 4
    assert len({t.user_attrs["worker"] for t in trials}) == 1


def test_one_worker_repeats_a_new_study_exactly(tmp_path: Path, trec_dir: Path) -> None:
    # What `run --help` promises for --workers 1: the enqueued point, the random start-up
    # draws and TPE's draws follow the study's seed, and seeded training gives the same
    # values, so the pruner and TPE see the same history and decide alike.
    def trials(directory: Path) -> list[tuple[str, dict[str, float], float | None]]:
        directory.mkdir()
        returncode, output = _run_process(directory, trec_dir, workers=1, trials=7)
        assert returncode == 0, output
        storage = optuna.storages.RDBStorage(f"sqlite:///{directory}/hpsearch.db")
        try:
            found = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
        finally:
            storage.engine.dispose()
        return [(t.state.name, t.params, t.value) for t in found]

    first = trials(tmp_path / "a")
    assert len(first) == 7  # the enqueued point, 4 random start-up draws, then TPE
    assert trials(tmp_path / "b") == first


def _study_with_a_result(tmp_path: Path) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/r.db", study_name="r", direction="maximize"
    )
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.75))
    return study


def _failing_reads(study: optuna.Study, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    """The next ``times`` trial reads fail as a killed connection's does (then Optuna's session
    is unusable for that call: "Can't reconnect until invalid transaction is rolled back")."""
    read = study.get_trials
    left = itertools.count(times, -1)

    def get_trials(*args: object, **kwargs: object) -> list[optuna.trial.FrozenTrial]:
        if next(left) > 0:
            raise optuna.exceptions.StorageInternalError("server closed the connection")
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(study, "get_trials", get_trials)


def _ended(name: str) -> launcher.Launch:
    """A launch whose one worker, ``name``, has exited cleanly."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return launcher.Launch(processes=[proc], names=[name], stderr_tails={name: []})


def test_results_are_read_again_after_a_lost_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study_with_a_result(tmp_path)
    _failing_reads(study, monkeypatch, times=2)
    result = launcher._read_results(
        study, _ended("w1"), "sqlite:///x.db", 30.0, "validation accuracy", interrupted=False
    )
    assert (result.orphans_failed, result.counts.complete) == (0, 1)
    assert result.best is not None and result.best.value == 0.75


def test_results_unreadable_past_the_retry_time_name_the_study_not_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study_with_a_result(tmp_path)
    _failing_reads(study, monkeypatch, times=10**6)
    url = "postgresql+psycopg://hp:s3cret@db:5432/hp"
    with pytest.raises(storage.DatabaseUnavailable) as raised:
        launcher._read_results(
            study, _ended("w1"), url, 0.0, "validation accuracy", interrupted=False
        )
    assert "study r: cannot read the results from" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert raised.value.exit_code == 1  # lost mid-run, not a usage error (2)


class _Started:
    """What start_workers hands to each worker process, without starting one."""

    def __init__(self) -> None:
        self.envs: list[dict[str, str]] = []
        self.orders: list[WorkerOrder] = []

    def __call__(self, order: WorkerOrder, env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.envs.append(env)
        self.orders.append(order)
        return subprocess.Popen(["true"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize(("gpus", "devices"), [(0, [None, None, None]), (2, ["0", "1", "0"])])
def test_workers_share_the_gpus_round_robin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: int, devices: list[str | None]
) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    spec = studyfile.load_study(tmp_path / "study.yaml")
    started = _Started()
    monkeypatch.setattr(launcher, "start", started)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    launch = launcher.start_workers(
        spec, "sqlite:///x.db", workers=3, data_dir=None, deadline=1234.5, gpus=gpus
    )
    for proc in launch.processes:
        proc.wait()
    assert [env.get("CUDA_VISIBLE_DEVICES") for env in started.envs] == devices
    # The launcher's deadline as it is: a worker's start-up must not extend the time budget.
    assert [order.deadline for order in started.orders] == [1234.5] * 3
    names = [order.name for order in started.orders]
    # The launcher's pid in every name: a second run on this machine names its workers apart,
    # so neither fails the other's running trials as its own orphans when it ends.
    host = os.uname().nodename
    assert names == [f"{host}-{os.getpid()}-w{i}" for i in (1, 2, 3)] == launch.names


@pytest.mark.parametrize(("fixed", "threads"), [("", "1"), ("  threads: 3\n", "3")])
def test_the_study_files_thread_count_wins_over_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed: str, threads: str
) -> None:
    # A file's `threads: 3` used to be overridden by run's cores // workers, unannounced.
    (tmp_path / "study.yaml").write_text(STUDY_YAML.replace("config:\n", f"config:\n{fixed}"))
    spec = studyfile.load_study(tmp_path / "study.yaml")
    started = _Started()
    monkeypatch.setattr(launcher, "start", started)
    monkeypatch.setattr(launcher, "available_cores", lambda: 2)
    launch = launcher.start_workers(spec, "sqlite:///x.db", workers=2, data_dir=None, deadline=None)
    for proc in launch.processes:
        proc.wait()
    assert [order.threads for order in started.orders] == [int(threads)] * 2
