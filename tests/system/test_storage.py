"""The study database across processes and servers: killed workers' trials, concurrent
workers, the budget lock on SQLite, PostgreSQL and MySQL, server storage and timeouts. URLs,
masking and in-process storage are in tests/unit/test_storage.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from hpsearch import settings, storage
from hpsearch.errors import StorageError
from hpsearch.storage import _locks as locks
from hpsearch.storage._database import DEFAULT_HEARTBEAT_INTERVAL
from tests.helpers.faults import write_study
from tests.helpers.storage import ENCODED

pytestmark = pytest.mark.usefixtures("clean_storage_env")


def _run(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    """Start a Python child running ``script`` (a worker); the caller waits for it."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "database is locked" not in err
    return out


def _count(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


DYING_WORKER = """
    import sys, time, optuna
    from hpsearch.storage import open_storage
    study = optuna.load_study(study_name="h", storage=open_storage(sys.argv[1]))
    study.optimize(lambda trial: time.sleep(600), n_trials=1)
"""


def test_trial_of_a_killed_worker_is_failed_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.HEARTBEAT_INTERVAL, "1")
    monkeypatch.setenv(settings.GRACE_PERIOD, "2")
    url = f"sqlite:///{tmp_path}/h.db"
    study = optuna.create_study(study_name="h", storage=storage.open_storage(url))
    worker = _run(DYING_WORKER, url)
    try:
        deadline = time.monotonic() + 30
        # Optuna never fails a RUNNING trial that has no heartbeat yet: wait for the first.
        while not _count(tmp_path / "h.db", "trial_heartbeats"):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    time.sleep(3.5)  # the 2 s grace period passes; SQLite's clock has 1 s resolution
    study.optimize(lambda t: 1.0, n_trials=1)
    first, retry = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0  # set by RetryHeartbeatStaleTrialCallback


READER = """
    import contextlib, os, sqlite3, sys, time, optuna
    path, url, stop = sys.argv[1:]
    while True:  # wait for a worker to create the schema, like a dashboard started early
        if os.path.exists(stop):  # the workers failed (the test reports it): no polling on
            sys.exit(0)
        try:
            with contextlib.closing(sqlite3.connect(path)) as con:
                if con.execute("SELECT count(*) FROM studies").fetchone()[0]:
                    break
        except sqlite3.OperationalError as e:
            assert "no such table" in str(e), e
        time.sleep(0.05)
    rdb = optuna.storages.RDBStorage(url)  # plain, as optuna-dashboard opens it
    reads = 0
    while True:
        done = os.path.exists(stop)
        for name in optuna.get_all_study_names(rdb):
            optuna.load_study(study_name=name, storage=rdb).get_trials(deepcopy=False)
            reads += 1
        if done:
            break
    print(reads)
"""

WORKER = """
    import sys, optuna
    from hpsearch.storage import budget_lock, open_storage
    url, budget = sys.argv[1], int(sys.argv[2])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="c", storage=open_storage(url), load_if_exists=True)
    mine = 0
    while True:
        with budget_lock(url, "c"):
            if len(study.get_trials(deepcopy=False)) >= budget:
                break
            trial = study.ask()
        study.tell(trial, trial.suggest_float("x", -1, 1) ** 2)
        mine += 1
    print(mine)
"""


def test_sqlite_concurrent_workers_and_reader_exact_budget(tmp_path: Path) -> None:
    path, stop, budget = tmp_path / "c.db", tmp_path / "stop", 120
    url = f"sqlite:///{path}"
    reader = _run(READER, str(path), url, str(stop))
    try:
        workers = [_run(WORKER, url, str(budget)) for _ in range(4)]
        counts = [int(_finish(w)) for w in workers]
    finally:  # a failed worker must not leave the reader polling for ever
        stop.touch()
    reads = int(_finish(reader))
    assert sum(counts) == budget and reads > 0
    study = optuna.load_study(study_name="c", storage=url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(study.trials) == len(complete) == budget
    assert sorted(t.number for t in complete) == list(range(budget))


# --- budget lock ----------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from hpsearch.storage import budget_lock
    with budget_lock(sys.argv[1], sys.argv[2]):
        open(sys.argv[3], "w").close()
        time.sleep(120)
"""

COUNTER = """
    import sys, time
    from hpsearch.storage import budget_lock
    url, study, counter, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    for _ in range(rounds):
        with budget_lock(url, study, timeout=30):
            value = int(open(counter).read())
            time.sleep(0.003)  # widen the read-modify-write window
            open(counter, "w").write(str(value + 1))
"""


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def lock_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lock.db"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def study_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_budget_lock_excludes_other_processes_and_dies_with_them(
    lock_url: str, study_name: str, tmp_path: Path
) -> None:
    held = tmp_path / "held"
    holder = _run(HOLDER, lock_url, study_name, str(held))
    try:
        deadline = time.monotonic() + 30
        while not held.exists():
            assert holder.poll() is None, holder.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        start = time.monotonic()
        with (
            pytest.raises(StorageError, match=r"timed out after 0\.3 s") as info,
            storage.budget_lock(lock_url, study_name, timeout=0.3),
        ):
            pass
        assert 0.25 < time.monotonic() - start < 3
        assert study_name in str(info.value)
        with storage.budget_lock(lock_url, study_name + "-other", timeout=1):
            pass  # other studies are independent
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with storage.budget_lock(lock_url, study_name, timeout=10):
        pass  # released by the holder's death


def test_budget_lock_no_lost_updates(lock_url: str, study_name: str, tmp_path: Path) -> None:
    counter, rounds = tmp_path / "counter", 15
    counter.write_text("0")
    procs = [_run(COUNTER, lock_url, study_name, str(counter), str(rounds)) for _ in range(3)]
    for proc in procs:
        _finish(proc)
    assert int(counter.read_text()) == 3 * rounds


def _lock_is_free(url: str, study: str) -> bool:
    """Whether another session could take the budget lock of ``study`` right now."""
    name = f"hpsearch:budget:{study}"
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                key = locks._pg_key(name)
                got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                if got.scalar():
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    return True
                return False
            lock = locks._mysql_lock_name(sqlalchemy.engine.make_url(url), name)
            got = conn.execute(sqlalchemy.text("SELECT GET_LOCK(:n, 0)"), {"n": lock})
            if got.scalar() == 1:
                conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": lock})
                return True
            return False
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "server_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
def test_server_lock_connection_is_pooled_after_an_explicit_release(
    server_url: str, study_name: str
) -> None:
    pool = storage.database(server_url).engine.pool
    for _ in range(2):
        with storage.budget_lock(server_url, study_name, timeout=5) as held:
            assert held()
            assert not _lock_is_free(server_url, study_name)
        assert _lock_is_free(server_url, study_name)  # released, though its session lives on
        assert pool.checkedin() >= 1 and pool.checkedout() == 0  # ... back in the pool


@pytest.mark.postgres
def test_server_lock_connection_whose_release_failed_is_discarded(
    postgres_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    acquire = locks._server_acquire

    def failing_release(*args: object) -> tuple[sqlalchemy.TextClause, dict[str, object]]:
        acquire(*args)  # type: ignore[arg-type]
        return sqlalchemy.text("SELECT no_such_function()"), {}

    monkeypatch.setattr(locks, "_server_acquire", failing_release)
    with storage.budget_lock(postgres_url, study_name, timeout=5):
        pass
    # Pooled as it was, the session would hold the lock for ever; closed, it released it.
    assert _lock_is_free(postgres_url, study_name)
    monkeypatch.setattr(locks, "_server_acquire", acquire)
    with storage.budget_lock(postgres_url, study_name, timeout=5) as held:
        assert held()  # the pool opens a new session in its place


# --- servers ----------------------------------------------------------------------------


@pytest.fixture
def server_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.mark.parametrize(
    "server_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
def test_open_server_storage(server_url: str, study_name: str) -> None:
    storage.check_connection(server_url)
    rdb = storage.open_storage(server_url)
    assert rdb.engine is storage.database(server_url).engine  # the check's and the locks'
    assert rdb.engine_kwargs["pool_pre_ping"] is True
    assert rdb.engine_kwargs["pool_recycle"] > 0
    assert rdb.engine_kwargs["connect_args"]["connect_timeout"] == 10
    assert rdb.heartbeat_interval == DEFAULT_HEARTBEAT_INTERVAL
    study = optuna.create_study(study_name=study_name, storage=rdb)
    try:
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        again = optuna.load_study(study_name=study_name, storage=storage.open_storage(server_url))
        assert len(again.trials) == 2
    finally:
        optuna.delete_study(study_name=study_name, storage=rdb)
    missing = server_url.rsplit("/", 1)[0] + "/hpsearch_no_such_db"
    with pytest.raises(StorageError, match="hpsearch_no_such_db"):
        storage.open_storage(missing)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_silent_server_times_out(scheme: str, silent_server: int) -> None:
    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect to"):
        storage.open_storage(
            f"{scheme}://u:{ENCODED}@127.0.0.1:{silent_server}/db", connect_timeout=2
        )
    assert 1.5 < time.monotonic() - start < 6


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_set_user_attrs_is_one_transaction(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'attrs.db'}"
        name = "attrs"
    else:
        url = request.getfixturevalue("postgres_url")
        name = f"attrs-{uuid.uuid4().hex}"
    backend = storage.open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=name, storage=backend)
    try:
        trial = study.ask()
        commits: list[object] = []
        listener = commits.append
        sqlalchemy.event.listen(backend.engine, "commit", listener)
        attrs = {"host": "h", "worker": "w", "config": {"lr": 1e-3, "cell": "rnn"}, "seed": 3}
        storage.set_user_attrs(trial, attrs)
        sqlalchemy.event.remove(backend.engine, "commit", listener)
        assert len(commits) == 1
        assert trial.user_attrs == attrs  # the trial object sees them, as set_user_attr does
        stored = optuna.load_study(study_name=name, storage=url).trials[0].user_attrs
        assert stored == attrs
        storage.set_user_attrs(trial, {"seed": 4})  # overwrites, like set_user_attr
        assert optuna.load_study(study_name=name, storage=url).trials[0].user_attrs["seed"] == 4
    finally:
        optuna.delete_study(study_name=name, storage=url)


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root, and mounts allowed, or skipped)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(directory: Path) -> Path:
    """Write zeros into a file in ``directory`` until its filesystem is full."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)
    return filler


def test_full_disk_when_the_study_is_created_is_one_line(
    tiny_disk: Path, tmp_path: Path, trec_dir: Path
) -> None:
    url = f"sqlite:///{tiny_disk / 'study.db'}"
    _finish(
        _run("import sys; from hpsearch import storage; storage.open_storage(sys.argv[1])", url)
    )
    path = write_study(tmp_path, "full", trials=1, epochs=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env |= {"HPSEARCH_DATA_DIR": str(trec_dir), "HPSEARCH_TREC_URL": "http://127.0.0.1:9/"}
    command = [sys.executable, "-m", "hpsearch", "run", "-s", str(path), "--storage", url]
    # The tables exist; the study's first write must grow the (emptied) write-ahead log,
    # which a reader keeps open meanwhile, on a disk with no byte left.
    with contextlib.closing(sqlite3.connect(tiny_disk / "study.db")) as reader:
        reader.execute("SELECT count(*) FROM studies").fetchone()
        reader.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        filler = _fill(tiny_disk)
        full = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        filler.unlink()
        assert full.returncode == 2, full.stderr
        assert (
            full.stderr == f"error: cannot write to {url}: disk full (database or disk is full)\n"
        )
        assert reader.execute("SELECT count(*) FROM studies").fetchone()[0] == 0
    # Nothing half-made: with room again, the same command creates the study and runs it.
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert _count(tiny_disk / "study.db", "trials") == 1


def test_checking_a_sqlite_path_keeps_this_process_s_locks(tmp_path: Path) -> None:
    # Checking the file by opening it dropped this process's POSIX locks on it when the
    # descriptor closed (SQLite's locks are the process's): workers met "disk I/O error".
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    storage.sqlite_path(sqlalchemy.engine.make_url(f"sqlite:///{path}"))
    other = (
        "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=0).execute('BEGIN EXCLUSIVE')"
    )
    probe = subprocess.run([sys.executable, "-c", other, str(path)], capture_output=True, text=True)
    holder.execute("ROLLBACK")
    holder.close()
    assert "database is locked" in probe.stderr, probe.stderr
