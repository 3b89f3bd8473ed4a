"""Fault tolerance: killed workers, interrupted runs, database outages and failing trials.

The tests run real ``python -m hpsearch`` processes against a real database and then read the
study back: the budget is met exactly, and no trial is left RUNNING. Heartbeats are shortened
(interval 1 s, grace 3 s) so that a dead worker's trial is noticed within seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpsearch import settings, storage
from hpsearch.search import _worker as workers
from tests.helpers import netns
from tests.helpers.faults import GRACE, HEARTBEAT, load, sqlite_url, states, write_study

T = TypeVar("T")


@dataclass
class Cli:
    """Starts ``python -m hpsearch`` processes, each in its own process group, and kills
    whatever is left of them (workers of a launcher included) when the test ends."""

    env: dict[str, str]
    cwd: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str | Path, log: str, **env: str) -> subprocess.Popen[bytes]:
        with (
            (self.cwd / f"{log}.out").open("wb") as out,
            (self.cwd / f"{log}.err").open("wb") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpsearch", *map(str, args)],
                stdout=out,
                stderr=err,
                env=self.env | env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def err(self, log: str) -> str:
        return (self.cwd / f"{log}.err").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cli_env(trec_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    return env | {
        "HPSEARCH_DATA_DIR": str(trec_dir),
        "HPSEARCH_TREC_URL": "http://127.0.0.1:9/",  # never download in tests
        settings.HEARTBEAT_INTERVAL: str(HEARTBEAT),
        settings.GRACE_PERIOD: str(GRACE),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def procs(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(cli_env, tmp_path)
    try:
        yield runner
    finally:
        runner.kill_all()


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = 120.0,
    watch: tuple[subprocess.Popen[bytes], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy; fail early if a watched
    process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for proc in watch:
            if proc.poll() is not None:
                pytest.fail(f"waiting for {what}: {proc.args!r} exited early ({proc.returncode})")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def wait_study(url: str, name: str, *watch: subprocess.Popen[bytes]) -> optuna.Study:
    """The study, once a worker or launcher has created it."""
    study = wait_for(lambda: load(url, name), f"study {name}", watch=watch)
    assert study is not None
    return study


def running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Running trials that are training: they have their worker and their parameters (the
    objective records the worker first, then suggests)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in trials if "worker" in t.user_attrs and "config" in t.user_attrs]


def assert_budget_met(study: optuna.Study, budget: int) -> None:
    trials = study.get_trials()
    counts = Counter(t.state.name for t in trials)
    assert counts["COMPLETE"] == budget, counts
    assert counts["RUNNING"] == 0, counts
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert trial.value is not None and trial.params and "config" in trial.user_attrs
        retried = trial.system_attrs.get("failed_trial")
        if retried is not None:  # a retry copy: its original must not count as well
            assert trials[retried].state == TrialState.FAIL


def worker_pids(study_file: Path) -> list[int]:
    """Live ``hpsearch worker`` processes for ``study_file`` (from /proc; Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = _argv(int(entry.name))
            if "worker" in argv and str(study_file) in argv:
                found.append(int(entry.name))
    return found


# --- a worker killed with SIGKILL ------------------------------------------------------------


def test_killed_workers_trial_is_failed_and_retried_by_the_waiting_worker(
    procs: Cli, tmp_path: Path
) -> None:
    # One trial, two workers: one runs it, the other has no slot left and polls, so it is
    # the polling worker that must notice the dead one and run its trial again.
    path = write_study(tmp_path, "killed", trials=1, epochs=30)
    url = sqlite_url(tmp_path)
    started = {
        name: procs.start("worker", "-s", path, "--storage", url, "--worker-id", name, log=name)
        for name in ("A", "B")
    }
    study = wait_study(url, "killed", *started.values())
    victim = wait_for(lambda: running(study), "a running trial", watch=tuple(started.values()))[0]
    dead = victim.user_attrs["worker"]
    survivor = "B" if dead == "A" else "A"
    started[dead].send_signal(signal.SIGKILL)
    killed_at = datetime.datetime.now()
    started[dead].wait()

    assert started[survivor].wait(timeout=120) == 0, procs.err(survivor)
    trials = study.get_trials()
    assert Counter(t.state.name for t in trials) == {"FAIL": 1, "COMPLETE": 1}
    failed = trials[victim.number]
    assert failed.state == TrialState.FAIL
    assert failed.datetime_complete is not None
    lag = (failed.datetime_complete - killed_at).total_seconds()
    # Not before the grace period (minus one beat and SQLite's 1 s clock), and promptly after
    # it: the surviving worker re-checks every POLL_SECONDS while it waits.
    assert GRACE - HEARTBEAT - 1 <= lag <= GRACE + HEARTBEAT + workers.POLL_SECONDS + 6, lag
    (retry,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert retry.system_attrs["failed_trial"] == victim.number
    assert retry.params == victim.params
    assert retry.user_attrs["worker"] == survivor
    assert "Traceback" not in procs.err(survivor)


@pytest.mark.slow  # ~30 s; the worker test above checks the same recovery
def test_run_finishes_the_budget_when_one_of_its_workers_is_killed(
    procs: Cli, tmp_path: Path
) -> None:
    path = write_study(tmp_path, "half", trials=3, epochs=20)
    url = sqlite_url(tmp_path)
    run = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="run")
    study = wait_study(url, "half", run)
    victim = wait_for(lambda: running(study), "a running trial", watch=(run,))[0]
    name = victim.user_attrs["worker"]
    pids = [p for p in worker_pids(path) if _option(_argv(p), "--worker-id") == name]
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)

    assert run.wait(timeout=180) == 1, procs.err("run")  # a worker died: not a clean run
    assert f"{name} exited with -9" in procs.err("run")
    assert_budget_met(study, 3)
    assert study.get_trials()[victim.number].state == TrialState.FAIL


def _argv(pid: int) -> list[str]:
    """A process's command line as words."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.replace(b"\0", b" ").decode(errors="replace").split()


def _option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


# --- the launcher interrupted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "group"),
    [
        (signal.SIGINT, False),
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),
        (signal.SIGINT, True),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "Ctrl-C"],
)
def test_interrupted_run_stops_every_worker(
    procs: Cli, tmp_path: Path, signum: signal.Signals, group: bool
) -> None:
    path = write_study(tmp_path, "stopped", trials=2, epochs=100)
    url = sqlite_url(tmp_path)
    run = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="first")
    study = wait_study(url, "stopped", run)
    # Both in a trial and far from its end: on a loaded machine the second worker may start
    # late, and a trial about to complete could finish before the signal reaches it.
    wait_for(
        lambda: [len(t.intermediate_values) < 50 for t in running(study)] == [True, True],
        "both workers early in a trial",
        watch=(run,),
    )

    if group:  # Ctrl-C in a terminal: the launcher and its workers at once
        os.killpg(run.pid, signum)
    else:  # `kill`, `docker stop`: the launcher only
        run.send_signal(signum)
    sent = time.monotonic()
    assert run.wait(timeout=60) == 130, procs.err("first")
    assert time.monotonic() - sent < 10, "workers took too long to stop"
    assert worker_pids(path) == []
    counts = states(study)
    assert counts["RUNNING"] == 0 and counts["FAIL"] >= 2, counts
    assert "Traceback" not in procs.err("first")
    # The live view's last word is the stopped state, not the counts from before the stop.
    failed, still_running = re.findall(r"failed (\d+) +running (\d+)", procs.err("first"))[-1]
    assert (int(failed), int(still_running)) == (counts["FAIL"], 0), procs.err("first")
    if signum == signal.SIGINT and not group:  # how it stopped does not matter from here
        again = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="again")
        assert again.wait(timeout=180) == 0, procs.err("again")
        assert_budget_met(study, 2)


def test_a_resumed_run_runs_the_interrupted_enqueued_points_once(
    procs: Cli, tmp_path: Path
) -> None:
    # Ctrl-C during the study file's enqueued points left them FAIL for good: the resumed run
    # drew new points instead. Each runs again, once, however often the run is resumed.
    points = [{"lr": 2.0e-3}, {"lr": 4.0e-3}]
    path = write_study(tmp_path, "requeued", trials=2, epochs=100, enqueue=points)
    url = sqlite_url(tmp_path)
    run = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="first")
    study = wait_study(url, "requeued", run)
    wait_for(lambda: len(running(study)) == 2, "both enqueued points training", watch=(run,))
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
    assert run.wait(timeout=60) == 130, procs.err("first")
    stopped = study.get_trials(states=(TrialState.FAIL,))
    assert sorted(t.params["lr"] for t in stopped) == [2.0e-3, 4.0e-3]
    assert all(t.user_attrs.get("interrupted") for t in stopped)
    # Stopped again before the copies ran: still one copy each.
    again = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="again")
    wait_for(lambda: worker_pids(path), "the workers to start", timeout=60, watch=(again,))
    os.killpg(again.pid, signal.SIGINT)
    assert again.wait(timeout=60) == 130, procs.err("again")
    last = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="last")
    assert last.wait(timeout=180) == 0, procs.err("last")
    assert_budget_met(study, 2)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["lr"] for t in complete) == [2.0e-3, 4.0e-3]
    assert states(study)["WAITING"] == 0


def test_ctrl_c_while_the_workers_start_is_a_clean_stop(procs: Cli, tmp_path: Path) -> None:
    # A worker importing torch when Ctrl-C came printed a KeyboardInterrupt traceback. The
    # workers have a session of their own: the launcher passes the stop on as SIGTERM, which
    # ends a worker that has not started working at once, silently.
    path = write_study(tmp_path, "early", trials=2, epochs=100)
    run = procs.start(
        "run", "-s", path, "--workers", "2", "--storage", sqlite_url(tmp_path), log="early"
    )
    wait_for(lambda: len(worker_pids(path)) == 2, "the workers to start", timeout=60, watch=(run,))
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole group
    assert run.wait(timeout=60) == 130, procs.err("early")
    assert "Traceback" not in procs.err("early") and "Aborted" not in procs.err("early")
    wait_for(lambda: worker_pids(path) == [], "the workers to stop", timeout=30)


def _two_workers_in_trials(
    procs: Cli, tmp_path: Path, name: str
) -> tuple[Path, subprocess.Popen[bytes], optuna.Study]:
    """`run` with 2 workers on a long study, once both are in a trial: (file, launcher, study)."""
    path = write_study(tmp_path, name, trials=2, epochs=100)
    url = sqlite_url(tmp_path)
    run = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log=name)
    study = wait_study(url, name, run)
    wait_for(lambda: len(running(study)) == 2, "both workers in a trial", watch=(run,))
    return path, run, study


def _state(pid: int) -> str:
    """A process's state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_ctrl_z_pauses_the_workers_and_fg_resumes_them(procs: Cli, tmp_path: Path) -> None:
    # The workers have sessions of their own, so a terminal's SIGTSTP reaches the launcher
    # only: it must stop its workers with it (they trained on while the job was "stopped").
    path, run, _ = _two_workers_in_trials(procs, tmp_path, "paused")
    workers = worker_pids(path)
    run.send_signal(signal.SIGTSTP)  # Ctrl-Z
    wait_for(lambda: {_state(p) for p in [run.pid, *workers]} == {"T"}, "the job to stop")
    run.send_signal(signal.SIGCONT)  # fg
    wait_for(lambda: "T" not in {_state(p) for p in [run.pid, *workers]}, "the job to go on")
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130, procs.err("paused")
    wait_for(lambda: worker_pids(path) == [], "the workers to stop", timeout=30)


def test_a_worker_started_by_hand_without_an_order_is_one_line(tmp_path: Path) -> None:
    # ps shows a run's workers with their arguments; one started like that gets no order.
    result = subprocess.run(
        [sys.executable, "-m", "hpsearch.search._entry", "worker", "--study", "x.yaml"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: this program is a worker of `hpsearch run`")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_workers_stop_when_their_launcher_is_killed(procs: Cli, tmp_path: Path) -> None:
    # kill -9 (or the OOM killer) of `run` used to leave its workers training the whole
    # budget unseen, racing the workers of the next `run` that resumed the study.
    path, run, study = _two_workers_in_trials(procs, tmp_path, "orphaned")
    run.kill()
    run.wait(timeout=30)
    wait_for(lambda: worker_pids(path) == [], "the workers to stop", timeout=60)
    counts = states(study)
    assert counts["RUNNING"] == 0 and counts["FAIL"] == 2, counts  # stopped as by Ctrl-C


# --- database outages ------------------------------------------------------------------------


def _with_app_name(url: str, app: str) -> str:
    """The URL with its own PostgreSQL application_name, so that a test can find (and kill)
    exactly the connections of the processes it started."""
    return (
        make_url(url)
        .update_query_dict({"application_name": app})
        .render_as_string(hide_password=False)
    )


def _terminate(engine: sa.Engine, app: str) -> int:
    with engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :app "
                "AND pid <> pg_backend_pid()"
            ),
            {"app": app},
        ).scalar()
    return int(killed or 0)


@contextlib.contextmanager
def pg_study(postgres_url: str) -> Iterator[str]:
    """A unique study name, deleted (with its trials) afterwards."""
    name = f"faults-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.postgres
def test_workers_reconnect_when_their_connections_are_killed(
    procs: Cli, tmp_path: Path, postgres_url: str
) -> None:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with pg_study(postgres_url) as name:
        app = f"hpsearch-test-{name}"
        url = _with_app_name(postgres_url, app)
        path = write_study(tmp_path, name, trials=12, epochs=2)
        run = procs.start("run", "-s", path, "--workers", "2", "--storage", url, log="run")
        study = wait_study(postgres_url, name, run)
        wait_for(
            lambda: len({t.user_attrs.get("worker") for t in study.get_trials()} - {None}) == 2,
            "both workers at work",
            watch=(run,),
        )
        killed, until = 0, time.monotonic() + 8
        while run.poll() is None and time.monotonic() < until:
            killed += _terminate(engine, app)  # launcher, workers, heartbeats, locks alike
            time.sleep(0.25)
        assert killed > 0
        assert run.wait(timeout=180) == 0, procs.err("run")
        assert_budget_met(study, 12)
        assert "Traceback" not in procs.err("run")
    engine.dispose()


@pytest.mark.postgres
def test_budget_lock_knows_when_the_server_dropped_it(postgres_url: str) -> None:
    app = f"hpsearch-test-{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with storage.budget_lock(_with_app_name(postgres_url, app), app) as held:
            assert held()
            assert _terminate(engine, app) == 1
            assert not held()  # the advisory lock went with the session
    finally:
        engine.dispose()


class Proxy:
    """A TCP forwarder to PostgreSQL that the test can take down: "the database" vanishes
    (open connections cut, new ones refused) without touching the real server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self.server.close()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.mark.postgres
def test_worker_gives_up_on_a_database_that_stays_down(
    procs: Cli, tmp_path: Path, postgres_url: str
) -> None:
    parsed = make_url(postgres_url)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    retry = 4
    try:
        with pg_study(postgres_url) as name:
            url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
            path = write_study(tmp_path, name, trials=1, epochs=40)
            worker = procs.start(
                "worker", "-s", path, "--storage", url, "--worker-id", "w", log="w",
                HPSEARCH_DB_RETRY_SECONDS=str(retry),
            )  # fmt: skip
            study = wait_study(postgres_url, name, worker)
            wait_for(lambda: running(study), "a running trial", watch=(worker,))
            proxy.close()
            down = time.monotonic()
            code = worker.wait(timeout=90)
            waited = time.monotonic() - down
            # The database is back (a worker that never used the proxy): the trial the lost
            # worker could not close is failed once its heartbeat is stale, and run again.
            again = procs.start("worker", "-s", path, "--storage", postgres_url, log="again")
            assert again.wait(timeout=120) == 0, procs.err("again")
            assert_budget_met(study, 1)
            assert states(study) == {"FAIL": 1, "COMPLETE": 1}
    finally:
        proxy.close()
    err = procs.err("w")
    assert code == 1, err  # lost mid-run: not a usage error (2), which a bad URL is
    # Bounded: the retry window, one 2 s pause and a trial epoch, with room for a slow machine.
    assert retry <= waited <= retry + 20, waited
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(
        f"error: w: database unavailable for over {retry} s, giving up: "
    ), err
    assert f"127.0.0.1:{proxy.port}/test" in lines[-1]
    assert sum("giving up" in line for line in lines) == 1


def test_worker_goes_on_when_another_failed_its_running_trial(procs: Cli, tmp_path: Path) -> None:
    # What a worker meets after an outage longer than the grace period: its heartbeats
    # lapsed, so another worker failed its trial (and queued a copy). Its result must not
    # count, and the worker must carry on rather than crash.
    path = write_study(tmp_path, "lapsed", trials=1, epochs=30)
    url = sqlite_url(tmp_path)
    worker = procs.start("worker", "-s", path, "--storage", url, "--worker-id", "w", log="w")
    study = wait_study(url, "lapsed", worker)
    victim = wait_for(lambda: running(study), "a running trial", watch=(worker,))[0]
    assert study._storage.set_trial_state_values(victim._trial_id, TrialState.FAIL)

    assert worker.wait(timeout=120) == 0, procs.err("w")
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "Traceback" not in procs.err("w")


# --- faults inside a trial -------------------------------------------------------------------


def test_diverged_trial_fails_with_its_reason_and_the_worker_goes_on(
    procs: Cli, tmp_path: Path
) -> None:
    # SGD at lr 1e8 without clipping overflows in the first epoch; lr 1e-2 trains normally.
    path = write_study(
        tmp_path,
        "diverge",
        trials=1,
        epochs=2,
        config={"optimizer": "sgd", "grad_clip": None},
        space={"lr": {"low": 1.0e-3, "high": 1.0e9, "log": True}},
        enqueue=[{"lr": 1.0e8}, {"lr": 1.0e-2}],
    )
    url = sqlite_url(tmp_path)
    worker = procs.start("worker", "-s", path, "--storage", url, log="w")
    assert worker.wait(timeout=120) == 0, procs.err("w")
    study = load(url, "diverge")
    assert study is not None
    first, second = study.get_trials()
    assert first.state == TrialState.FAIL
    # nan or inf: which comes first depends on the CPU and its kernels (both seen).
    assert re.match(r"loss became (nan|-?inf) at epoch 1,", first.user_attrs["error"])
    assert second.state == TrialState.COMPLETE and second.params == {"lr": 1.0e-2}
    err = procs.err("w")
    assert "Traceback" not in err and re.search(r"loss became (nan|-?inf)", err)


# --- a worker on another machine, cut off by the network -------------------------------------

PARTITION = 90.0  # seconds


@pytest.fixture
def far_host() -> Iterator[netns.Host]:
    """A worker machine in its own network namespace (root and ``ip netns`` needed)."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"no network namespace for a second worker host: {reason}")
    with netns.host() as made:
        yield made


@pytest.mark.postgres
def test_a_partitioned_worker_is_replaced_and_rejoins(
    procs: Cli, tmp_path: Path, postgres_url: str, far_host: netns.Host
) -> None:
    parsed = make_url(postgres_url)
    # Its connections cross a slow (0.1 s each way), lossy (10%) link to the database host.
    link = netns.Forwarder(far_host.gateway, (parsed.host or "127.0.0.1", parsed.port or 5432), 0.1)
    far_host.drop(0.1)
    beats = {settings.HEARTBEAT_INTERVAL: "2", settings.GRACE_PERIOD: "10"}  # > a slow beat
    try:
        with pg_study(postgres_url) as name:
            far_url = parsed.set(host=far_host.gateway, port=link.port)
            path = write_study(tmp_path, name, trials=3, epochs=40)
            argv = [sys.executable, "-m", "hpsearch", "worker", "-s", str(path), "--worker-id"]
            with (tmp_path / "far.err").open("wb") as err:
                far = subprocess.Popen(
                    [*far_host.prefix, *argv, "far", "--storage", far_url.render_as_string(False)],
                    stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path, start_new_session=True,
                    env=procs.env | beats | {settings.DB_RETRY_SECONDS: str(PARTITION + 60)},
                )  # fmt: skip
            procs.started.append(far)
            study = wait_study(postgres_url, name, far)
            cut_off = wait_for(
                lambda: [t for t in running(study) if t.user_attrs["worker"] == "far"],
                "the far worker's trial",
                watch=(far,),
            )[0]
            near = procs.start(
                "worker", "-s", path, "--storage", postgres_url, "--worker-id", "near",
                log="near", **beats,
            )  # fmt: skip
            far_host.heal()
            far_host.drop()  # the partition
            time.sleep(PARTITION)
            assert near.wait(timeout=60) == 0, procs.err("near")
            far_host.heal()
            # Back on the network, it rejoins: the budget is spent, so it ends its work.
            assert far.wait(timeout=60) == 0, procs.err("far")
            _assert_replaced(study, cut_off)
    finally:
        link.close()
    err = procs.err("far")
    assert "database unavailable, retrying" in err and "Traceback" not in err, err


def _assert_replaced(study: optuna.Study, cut_off: optuna.trial.FrozenTrial) -> None:
    """The budget met, and the cut-off trial failed by its stale heartbeat and run again,
    with its parameters, by the worker that could still reach the database."""
    assert_budget_met(study, 3)
    trials = study.get_trials()
    assert trials[cut_off.number].state == TrialState.FAIL
    [again] = [t for t in trials if t.system_attrs.get("failed_trial") == cut_off.number]
    assert again.state == TrialState.COMPLETE and again.user_attrs["worker"] == "near"
    assert again.params == cut_off.params
