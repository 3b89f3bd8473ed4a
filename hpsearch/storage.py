"""The SQL database shared by every worker: URL handling, opening Optuna's storage, locks.

Workers in several processes, possibly on several machines, share one database through
Optuna's ``RDBStorage``. This module resolves and validates the URL, opens the storage with
settings that survive that concurrency (SQLite in WAL mode with a long busy timeout; pre-ping,
recycling and connect timeouts for servers; heartbeats for crashed trials) and provides the
cross-process ``budget_lock`` that makes "count trials, then create one" atomic.

Passwords never reach a message: every error is masked with ``mask_url`` and ``scrub``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import functools
import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models as optuna_models
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from hpsearch.errors import StorageError, did_you_mean

DEFAULT_URL = "sqlite:///hpsearch.db"
ENV_URL = "HPSEARCH_STORAGE"
ENV_HEARTBEAT_INTERVAL = "HPSEARCH_HEARTBEAT_INTERVAL"
ENV_GRACE_PERIOD = "HPSEARCH_GRACE_PERIOD"

DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds; Optuna wants whole seconds
GRACE_FACTOR = 3  # default grace = 3 intervals: one missed beat is not a dead worker
MAX_RETRY = 3  # a trial whose worker died is re-queued at most this many times
SQLITE_BUSY_TIMEOUT = 60.0  # writers queue on SQLite's single write lock; never give up early
POOL_RECYCLE = 1800  # below MySQL's and most proxies' idle-connection limits
MYSQL_IO_TIMEOUT = 300  # pymysql otherwise waits forever on a half-open connection
INIT_LOCK_TIMEOUT = 120.0  # creating Optuna's tables takes well under a second

SUPPORTED = (
    "sqlite:///hpsearch.db (a file relative to the working directory), "
    "sqlite:////abs/path/hpsearch.db, postgresql://user:password@host:5432/dbname, "
    "mysql://user:password@host:3306/dbname (also for MariaDB)"
)
# Synchronous drivers only: Optuna's engine is synchronous. Each accepts connect_timeout.
_DRIVERS: dict[str, tuple[str | None, ...]] = {
    "sqlite": (None, "pysqlite"),
    "postgresql": ("psycopg", "psycopg2"),
    "mysql": ("pymysql", "mysqldb"),
}
_SCHEME_ALIASES = {"postgres": "postgresql"}

# Greedy up to the last '@': with an unencoded '@' or '/' in the password the split is
# ambiguous, and hiding too much is the safe side.
_USERINFO = re.compile(r"^(?P<head>[^:/?#@]*://[^:/?#@]*:)(?P<password>.*)@")
_DB_ERRORS = (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, sqlite3.Error)

_logger = logging.getLogger(__name__)


class DatabaseUnavailable(StorageError):
    """The database refused a connection or failed mid-query; it may come back."""


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's storage with a heartbeat that survives a lost connection.

    Optuna beats from a thread that dies at its first exception; the trial then looks dead
    and another worker fails it and runs it again while this one is still training it.
    """

    _beat_failing = False

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except _DB_ERRORS as exc:
            if not self._beat_failing:  # once per outage, not once a second
                url = str(self.url)
                _logger.warning(
                    "heartbeat of trial %d not recorded, retrying: %s",
                    trial_id,
                    error_reason(url, exc),
                )
            self._beat_failing = True
        else:
            self._beat_failing = False

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attributes in one transaction: Optuna commits each attribute on
        its own, and a commit is a round trip plus a log flush on a database server."""
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            for key, value in attrs.items():
                self._set_trial_attr_without_commit(
                    session, optuna_models.TrialUserAttributeModel, trial_id, key, value
                )


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for each of ``attrs``, in one transaction on hpsearch's
    database storage (benchmarks/README.md, storage_overhead.py), one by one elsewhere."""
    backend = getattr(trial.storage, "_backend", trial.storage)  # Optuna's cache wraps it
    if not isinstance(backend, _RDBStorage) or len(attrs) < 2:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    backend.set_trial_user_attrs(trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # as Trial.set_user_attr does


_memory_locks: dict[tuple[str, str], threading.Lock] = {}
_memory_locks_guard = threading.Lock()


def resolve_url(url: str | None) -> str:
    """Return the storage URL to use (argument, else $HPSEARCH_STORAGE, else the default),
    with the driver made explicit; raise StorageError if it is malformed or unsupported."""
    source = "storage URL"
    if url is None:
        url = os.environ.get(ENV_URL, "").strip() or None
        source = f"{ENV_URL}: storage URL" if url else source
    text = (url if url is not None else DEFAULT_URL).strip()
    where = f"{source} {mask_url(text)!r}"
    try:
        parsed = make_url(text)
    except (sa_exc.ArgumentError, ValueError):
        hint = ""
        if _USERINFO.match(text):
            hint = " (percent-encode special characters in the password: @ %40, : %3A, / %2F)"
        raise StorageError(f"{where} is malformed{hint}; expected one of: {SUPPORTED}") from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = _SCHEME_ALIASES.get(backend, backend)
    if backend not in _DRIVERS:
        hint = did_you_mean(backend, _DRIVERS)
        raise StorageError(
            f"{where}: unsupported database {backend!r}{hint}; expected one of: {SUPPORTED}"
        )
    drivers = _DRIVERS[backend]
    driver_or_default = driver or drivers[0]
    if driver_or_default not in drivers:
        allowed = ", ".join(f"{backend}+{d}" for d in drivers if d)
        raise StorageError(f"{where}: unsupported driver {driver!r}; allowed: {allowed}")
    if backend == "sqlite":
        if parsed.host or parsed.username or parsed.port:
            raise StorageError(
                f"{where}: a SQLite URL has no host; use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
    elif not parsed.host or not parsed.database:
        missing = "host" if not parsed.host else "database name"
        raise StorageError(f"{where} has no {missing}; expected e.g. {backend}://user@host/db")
    scheme = f"{backend}+{driver_or_default}" if driver_or_default else backend
    # Keep the rest exactly as written: re-rendering could change the password's encoding.
    return scheme + text[text.index("://") :]


def mask_url(url: str) -> str:
    """Return the URL with its password replaced by ``***``; never raises."""
    parsed = _trusted_parse(url)
    if parsed is not None:
        return url if parsed.password is None else parsed.render_as_string(hide_password=True)
    return _USERINFO.sub(r"\g<head>***@", url, count=1)


def scrub(text: str, url: str) -> str:
    """Remove the URL's password, raw or URL-encoded, from a message."""
    forms: set[str] = set()
    parsed = _trusted_parse(url)
    if parsed is not None:
        if parsed.password:
            forms.add(str(parsed.password))
    else:
        match = _USERINFO.match(url)
        if match:
            raw = match["password"]
            forms |= {raw, unquote(raw), unquote_plus(raw)}
    forms |= {quote(f, safe="") for f in forms} | {quote_plus(f) for f in forms}
    for form in sorted(forms - {""}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def open_storage(
    url: str, *, heartbeat: bool = True, connect_timeout: float = 10.0
) -> optuna.storages.RDBStorage:
    """Open (creating tables if needed) the Optuna storage behind ``url``.

    Heartbeats (interval $HPSEARCH_HEARTBEAT_INTERVAL, grace $HPSEARCH_GRACE_PERIOD) only
    beat during ``Study.optimize``; a trial left RUNNING by a dead worker is failed and
    re-queued up to MAX_RETRY times when the next trial is created.
    """
    url = resolve_url(url)
    parsed = make_url(url)
    beats = _heartbeat_settings() if heartbeat else None
    # Bounded by connect_timeout even against a server that accepts but never answers.
    check_connection(url, connect_timeout)
    path = _sqlite_path(parsed)
    engine_kwargs: dict[str, Any] = {"connect_args": _connect_args(parsed, connect_timeout)}
    if parsed.get_backend_name() != "sqlite":
        engine_kwargs |= {"pool_pre_ping": True, "pool_recycle": POOL_RECYCLE}
    try:
        # Workers starting together would race to create the same tables.
        with _db_lock(url, None, INIT_LOCK_TIMEOUT, "the schema-creation lock"):
            if path is not None:
                _enable_wal(path, url)
            with warnings.catch_warnings():
                # Heartbeats are "experimental" in Optuna 5; users cannot act on the warning.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                extra: dict[str, Any] = {}
                if beats is not None:
                    extra = {
                        "heartbeat_interval": beats[0],
                        "grace_period": beats[1],
                        "heartbeat_stale_trial_callback": (
                            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                        ),
                    }
                storage = _RDBStorage(url, engine_kwargs=engine_kwargs, **extra)
    except _DB_ERRORS as e:
        raise _failure(url, e) from None
    except ImportError as e:
        raise _missing_driver(url, e) from None
    except RuntimeError as e:
        if "table schema" not in str(e):  # Optuna's "schema is too old/new" message
            raise
        raise _failure(url, e) from None
    if path is not None:
        # Per-connection pragma; the pool is emptied so every connection gets it.
        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    return storage


def fail_trials_without_heartbeat(study: optuna.Study) -> int:
    """Fail, and re-queue like a stale trial, every RUNNING trial that started over a grace
    period ago and never recorded a heartbeat; return how many.

    Optuna fails only trials whose last heartbeat is old. A worker that lost the database (or
    was killed) between creating a trial and its first heartbeat leaves a trial that Optuna
    never fails, holding a slot of the budget for ever while the other workers wait on it.
    """
    backend = getattr(study._storage, "_backend", study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage) or not backend.heartbeat_interval:
        return 0
    grace = backend.grace_period or 2 * backend.heartbeat_interval
    # datetime_start is the creating worker's clock (stored as naive UTC); a live trial beats
    # within milliseconds of it, so clock skew between machines cannot fail one.
    cutoff = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    cutoff -= datetime.timedelta(seconds=grace)
    # Optuna's own tables, read as its stale-heartbeat check reads them (no public API).
    trials = optuna_models.TrialModel.__table__
    beats = optuna_models.TrialHeartbeatModel.__table__
    query = (
        sa.select(trials.c.trial_id)
        .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
        .where(trials.c.study_id == study._study_id, trials.c.state == TrialState.RUNNING)
        .where(beats.c.trial_id.is_(None), trials.c.datetime_start < cutoff)
    )
    with backend.engine.connect() as conn:
        orphans = list(conn.execute(query).scalars())
    failed = 0
    callback = backend.get_heartbeat_stale_trial_callback()
    for trial_id in orphans:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed += 1
                if callback is not None:
                    callback(study, copy.deepcopy(study._storage.get_trial(trial_id)))
    return failed


def _heartbeat_settings() -> tuple[int, int]:
    """Return (interval, grace period) in seconds from the environment or the defaults."""
    interval = _env_seconds(ENV_HEARTBEAT_INTERVAL) or DEFAULT_HEARTBEAT_INTERVAL
    grace = _env_seconds(ENV_GRACE_PERIOD)
    if grace is None:
        return interval, GRACE_FACTOR * interval
    if grace <= interval:
        raise StorageError(
            f"environment: {ENV_GRACE_PERIOD} ({grace}) must be > "
            f"{ENV_HEARTBEAT_INTERVAL} ({interval}), or live workers' trials would be failed"
        )
    return interval, grace


@contextlib.contextmanager
def budget_lock(
    url: str, study_name: str, *, timeout: float = 300.0
) -> Iterator[Callable[[], bool]]:
    """Hold a cross-process, cross-machine mutex for ``study_name`` in this database.

    It does not block Optuna's own reads and writes. It is released on exit, and by the
    operating system or the database server if the holding process dies. It yields a check
    that the lock is still held: a server's lock goes with its connection, which the server
    may drop (restart, pg_terminate_backend) without the holder noticing.
    """
    url = resolve_url(url)
    what = f"the trial-budget lock of study {study_name!r}"
    with _db_lock(url, study_name, timeout, what) as held:
        yield held


def check_connection(url: str, connect_timeout: float = 10.0) -> None:
    """Raise StorageError with a masked one-line reason unless the database can be used."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed)
        if path is None:
            return
        if not path.exists():
            if not os.access(path.parent, os.W_OK):
                raise StorageError(f"cannot create {mask_url(url)}: {path.parent} is not writable")
            return
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT)) as con:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise _failure(url, e) from None
        return
    try:
        engine = sa.create_engine(
            parsed,
            poolclass=NullPool,
            connect_args=_connect_args(parsed, connect_timeout, io_timeout=connect_timeout),
        )
    except ImportError as e:
        raise _missing_driver(url, e) from None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa_exc.SQLAlchemyError as e:
        raise _failure(url, e) from None
    finally:
        engine.dispose()


# --- locks -------------------------------------------------------------------------------


def _always() -> bool:
    return True


@contextlib.contextmanager
def _db_lock(
    url: str, study: str | None, timeout: float, what: str
) -> Iterator[Callable[[], bool]]:
    """A mutex per database (study None) or per study, chosen by dialect."""
    parsed = make_url(url)
    name = "hpsearch:init" if study is None else f"hpsearch:budget:{study}"
    timeout = max(0.0, timeout)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(parsed)
        if path is None:  # an in-memory database lives in this process only
            with _memory_lock(url, name, timeout, what):
                yield _always
            return
        suffix = ".lock" if study is None else f".{_file_safe(study)}.lock"
        with _file_lock(Path(f"{path}{suffix}"), url, timeout, what):
            yield _always  # flock holds as long as this process does
        return
    conn = _connect(_lock_engine(url), url)

    def held() -> bool:
        # The lock lives exactly as long as this session: if it still answers, it holds.
        try:
            conn.execute(sa.text("SELECT 1"))
        except sa_exc.SQLAlchemyError:
            return False
        return True

    try:
        release, params = _server_acquire(conn, url, name, timeout, what)
        try:
            yield held
        finally:
            # Closing the connection releases the lock anyway; this only makes it prompt.
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.execute(release, params)
    finally:
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            conn.close()


def _server_acquire(
    conn: sa.Connection, url: str, name: str, timeout: float, what: str
) -> tuple[sa.TextClause, dict[str, Any]]:
    """Take a PostgreSQL advisory lock or a MySQL named lock; return how to release it."""
    try:
        if conn.dialect.name == "postgresql":
            _pg_acquire(conn, url, name, timeout, what)
            return sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _pg_key(name)}
        params = {"name": _mysql_lock_name(make_url(url), name)}
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, :t)"), params | {"t": timeout})
        if got.scalar() != 1:
            raise StorageError(_timeout_message(url, timeout, what))
        return sa.text("SELECT RELEASE_LOCK(:name)"), params
    except sa_exc.SQLAlchemyError as e:
        raise _failure(url, e) from None


def _pg_acquire(conn: sa.Connection, url: str, name: str, timeout: float, what: str) -> None:
    # lock_timeout 0 would mean "wait forever", hence the 1 ms floor.
    millis = f"{max(1, round(timeout * 1000))}ms"
    conn.execute(sa.text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": millis})
    try:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _pg_key(name)})
    except sa_exc.OperationalError as e:
        code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
        if code == "55P03":  # lock_not_available
            raise StorageError(_timeout_message(url, timeout, what)) from None
        raise


@contextlib.contextmanager
def _file_lock(path: Path, url: str, timeout: float, what: str) -> Iterator[None]:
    # flock, not SQLite's own locking: holding a SQLite write transaction would stall every
    # other worker's Optuna writes. The lock lives in a separate file for the same reason.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise StorageError(f"cannot create lock file {path}: {e.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StorageError(_timeout_message(url, timeout, what)) from None
                time.sleep(min(delay, left))
                delay = min(2 * delay, 0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _memory_lock(url: str, name: str, timeout: float, what: str) -> Iterator[None]:
    with _memory_locks_guard:
        lock = _memory_locks.setdefault((url, name), threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise StorageError(_timeout_message(url, timeout, what))
    try:
        yield
    finally:
        lock.release()


@functools.cache
def _lock_engine(url: str) -> Engine:
    """One connection per held lock (NullPool): closing it is what releases a lock."""
    parsed = make_url(url)
    try:
        return sa.create_engine(
            parsed,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",  # no transaction held open while waiting
            connect_args=_connect_args(parsed, 10.0, io_timeout=None),
        )
    except ImportError as e:
        raise _missing_driver(url, e) from None


def _connect(engine: Engine, url: str) -> sa.Connection:
    try:
        return engine.connect()
    except sa_exc.SQLAlchemyError as e:
        raise _failure(url, e) from None


def _pg_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key (Python's hash() differs per process)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _mysql_lock_name(parsed: URL, name: str) -> str:
    # GET_LOCK names are server-wide and at most 64 characters: hash in the database name.
    digest = hashlib.blake2b(f"{parsed.database}/{name}".encode(), digest_size=16).hexdigest()
    return f"hpsearch:{digest}"


def _file_safe(study: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:64]
    if safe == study and study not in ("", ".", ".."):
        return safe
    return f"{safe}-{hashlib.blake2b(study.encode(), digest_size=4).hexdigest()}"


def _timeout_message(url: str, timeout: float, what: str) -> str:
    return (
        f"timed out after {timeout:g} s waiting for {what} in {mask_url(url)}; "
        "another worker holds it (stuck?)"
    )


# --- helpers -----------------------------------------------------------------------------


def _trusted_parse(url: str) -> URL | None:
    """Parse ``url`` only if SQLAlchemy's reading of it is unambiguous (renders back verbatim
    and has no stray '@'); otherwise the password boundaries cannot be trusted."""
    try:
        parsed = make_url(url)
        rendered = parsed.render_as_string(hide_password=False)
    except Exception:
        return None
    rest = f"{parsed.host or ''}{parsed.database or ''}{parsed.query}"
    return parsed if rendered == url and "@" not in rest else None


def _sqlite_path(parsed: URL) -> Path | None:
    """The database file of a SQLite URL (relative to the CWD), or None if in memory."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(str(parsed.database))
    if not path.parent.is_dir():
        url = parsed.render_as_string(hide_password=True)
        raise StorageError(
            f"{url}: directory {path.parent.absolute()} does not exist (create it first)"
        )
    return path


def _enable_wal(path: Path, url: str) -> None:
    # Persistent in the file: readers (optuna-dashboard) then never block writers. Set it
    # before Optuna's first connection so no connection ever runs in rollback-journal mode.
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT)) as con:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        _logger.warning("%s: journal_mode is %s, not WAL; expect lock waits", mask_url(url), mode)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # NORMAL is corruption-safe under WAL and saves an fsync per commit, which shortens the
    # time each worker holds the single write lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _connect_args(
    parsed: URL, connect_timeout: float, *, io_timeout: float | None = MYSQL_IO_TIMEOUT
) -> dict[str, Any]:
    """Driver arguments; any also given in the URL's query string keep the URL's value."""
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT}
    else:
        args = {"connect_timeout": max(1, math.ceil(connect_timeout))}
        if backend == "postgresql":
            # Notice a vanished server within ~90 s instead of the OS's two hours.
            args |= {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10}
            args |= {"keepalives_count": 6}
            # Names hpsearch's sessions in pg_stat_activity (to watch them, or end them).
            args |= {"application_name": "hpsearch"}
        elif io_timeout is not None:
            args |= {"read_timeout": math.ceil(io_timeout), "write_timeout": math.ceil(io_timeout)}
    return {k: v for k, v in args.items() if k not in parsed.query}


def _env_seconds(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise StorageError(
            f"environment: {name} ({value!r}) must be a positive whole number of seconds"
        )
    return seconds


def error_reason(url: str, error: BaseException) -> str:
    """The first line of a driver's error, without the password, for a one-line message.

    Optuna wraps driver errors in a StorageInternalError about "invalid data in the
    commit", and SQLAlchemy in its own class: the driver's own words say what happened.
    """
    cause: BaseException = error
    while True:
        if isinstance(cause, sa_exc.DBAPIError) and cause.orig is not None:
            cause = cause.orig
        elif isinstance(cause, optuna.exceptions.StorageInternalError) and cause.__cause__:
            cause = cause.__cause__
        else:
            break
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return scrub(" ".join(lines[0].split()) if lines else type(cause).__name__, url)


def _failure(url: str, error: BaseException) -> StorageError:
    """A one-line, password-free StorageError for a driver or SQLAlchemy error."""
    verb = "open" if url.startswith("sqlite") else "connect to"
    return DatabaseUnavailable(f"cannot {verb} {mask_url(url)}: {error_reason(url, error)}")


def _missing_driver(url: str, error: ImportError) -> StorageError:
    backend, _, driver = url.split("://", 1)[0].partition("+")
    default = _DRIVERS[backend][0]
    install = f"pip install 'hpsearch[{'postgres' if backend == 'postgresql' else 'mysql'}]'"
    if driver != default:
        install = f"install it, or use {backend}:// for the default driver ({install})"
    return StorageError(
        f"{mask_url(url)}: database driver not installed ({error.name or error}); {install}"
    )
