"""Cross-process, cross-machine mutexes in the study database.

``budget_lock`` makes "count the trials, then create one" atomic across every worker of a
study; ``db_lock`` without a study guards the creation of Optuna's tables. The kind of lock
follows the database: ``flock`` on a file beside a SQLite database, an advisory lock on
PostgreSQL, a named lock on MySQL; each is released by the operating system or the server
when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from hpsearch.errors import StorageError
from hpsearch.storage._handle import database
from hpsearch.storage._url import MYSQL_IO_TIMEOUT, failure, mask_url, resolve_url, sqlite_path

MYSQL_LOCK_SLICE = MYSQL_IO_TIMEOUT / 6  # seconds of one GET_LOCK wait

_memory_locks: dict[tuple[str, str], threading.Lock] = {}

_memory_locks_guard = threading.Lock()


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
    with db_lock(url, study_name, timeout, what) as held:
        yield held


def _always() -> bool:
    return True


@contextlib.contextmanager
def db_lock(url: str, study: str | None, timeout: float, what: str) -> Iterator[Callable[[], bool]]:
    """A mutex per database (study None) or per study, chosen by dialect."""
    parsed = make_url(url)
    name = "hpsearch:init" if study is None else f"hpsearch:budget:{study}"
    timeout = max(0.0, timeout)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is None:  # an in-memory database lives in this process only
            with _memory_lock(url, name, timeout, what):
                yield _always
            return
        suffix = ".lock" if study is None else f".{_file_safe(study)}.lock"
        with _file_lock(Path(f"{path}{suffix}"), url, timeout, what):
            yield _always  # flock holds as long as this process does
        return
    conn = database(url).autocommit()  # the process's engine, one pooled connection per lock

    def held() -> bool:
        # The lock lives exactly as long as this session: if it still answers, it holds.
        try:
            conn.execute(sa.text("SELECT 1"))
        except sa_exc.SQLAlchemyError:
            return False
        return True

    released = False
    try:
        release, params = _server_acquire(conn, url, name, timeout, what)
        try:
            yield held
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.execute(release, params)
                released = True
    finally:
        if not released:
            # The session may still hold the lock (a failed release, or an interrupted wait
            # that the server granted): close it for good instead of pooling it, which
            # releases whatever it holds.
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.invalidate()
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
        _mysql_acquire(conn, params, url, timeout, what)
        return sa.text("SELECT RELEASE_LOCK(:name)"), params
    except sa_exc.SQLAlchemyError as e:
        raise failure(url, e) from None


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


def _mysql_acquire(
    conn: sa.Connection, params: dict[str, Any], url: str, timeout: float, what: str
) -> None:
    # A wait longer than the driver's read timeout would read as a lost server: wait in
    # slices, each well within it.
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        wait = min(left, MYSQL_LOCK_SLICE)
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, :t)"), params | {"t": wait})
        if got.scalar() == 1:
            return
        if left <= wait:
            raise StorageError(_timeout_message(url, timeout, what))


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
