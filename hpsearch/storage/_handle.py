"""The database handle: a storage URL resolved once per process into one SQLAlchemy engine.

The connection check, Optuna's storage and the server-side locks all draw their connections
from this engine's pool: a worker then holds one pool of connections to the database, not
one per purpose, and settings such as the driver's time limits are made in one place.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from hpsearch.storage._url import (
    connect_args,
    failure,
    missing_driver,
    resolve_url,
    sqlite_path,
)

POOL_RECYCLE = 1800  # below MySQL's and most proxies' idle-connection limits
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, eq=False)
class Database:
    """One database as this process uses it: the resolved URL and the process's engine."""

    url: str  # resolved (driver explicit), secrets included: mask it before showing it
    parsed: URL
    path: Path | None  # the SQLite file, or None for a server
    engine: Engine
    engine_kwargs: dict[str, Any]
    connect_timeout: float

    @property
    def backend(self) -> str:
        return self.parsed.get_backend_name()

    def autocommit(self) -> sa.Connection:
        """A pooled connection outside any transaction, as a server-side lock wants it (no
        transaction held open while it waits); the pool restores the isolation level when
        the connection returns."""
        try:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa_exc.SQLAlchemyError as e:
            raise failure(self.url, e) from None


_handles: dict[tuple[str, float, int], Database] = {}
_handles_guard = threading.Lock()


def database(url: str | None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Database:
    """The process's handle on ``url`` (resolved, then made once per process).

    The process id is part of the key: a forked child must not reuse its parent's sockets.
    """
    resolved = resolve_url(url)
    # A relative SQLite path names another file after a chdir (a library caller, tests
    # running commands in one process): the file, not the text, is the database.
    path = sqlite_path(make_url(resolved))
    where = str(path.absolute()) if path is not None else resolved
    key = (where, connect_timeout, os.getpid())
    with _handles_guard:
        handle = _handles.get(key)
        if handle is None:
            handle = _handles[key] = _make(resolved, connect_timeout)
        return handle


def _make(url: str, connect_timeout: float) -> Database:
    parsed = make_url(url)
    path = sqlite_path(parsed)
    kwargs: dict[str, Any] = {"connect_args": connect_args(parsed, connect_timeout)}
    if parsed.get_backend_name() != "sqlite":
        kwargs |= {"pool_pre_ping": True, "pool_recycle": POOL_RECYCLE}
    # The engine opens the file it was made for, whatever the working directory is later.
    target = parsed if path is None else parsed.set(database=str(path.absolute()))
    try:
        engine = sa.create_engine(target, **kwargs)
    except ImportError as e:
        raise missing_driver(url, e) from None
    if path is not None:
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "mysql":
        event.listen(engine, "do_connect", _mysql_handshake_within(connect_timeout))
    return Database(url, parsed, path, engine, kwargs, connect_timeout)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # NORMAL is corruption-safe under WAL and saves an fsync per commit, which shortens the
    # time each worker holds the single write lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _mysql_handshake_within(connect_timeout: float) -> Any:
    """pymysql reads the server's greeting under its read timeout, not its connect timeout:
    a server that accepts connections but never answers would hold a worker for the whole
    read timeout. The greeting is read under the connect timeout; later reads under the
    read timeout given."""

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        read_timeout = cparams.get("read_timeout")
        if dialect.driver != "pymysql" or read_timeout is None:
            return None  # the dialect connects as usual
        greeting = min(float(read_timeout), connect_timeout)
        connection = dialect.loaded_dbapi.connect(*cargs, **cparams | {"read_timeout": greeting})
        connection._read_timeout = read_timeout  # pymysql applies it at the next read
        return connection

    return do_connect
