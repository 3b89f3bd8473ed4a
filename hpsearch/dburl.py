"""Database URLs: resolving and checking them, hiding their passwords, driver settings.

Every message that names a database goes through ``mask_url`` (the URL without its password)
and ``scrub`` (a driver's error text without it, raw or URL-encoded); ``failure`` turns a
driver's error into one password-free line.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import optuna
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from hpsearch.errors import StorageError, did_you_mean

DEFAULT_URL = "sqlite:///hpsearch.db"
ENV_URL = "HPSEARCH_STORAGE"
SQLITE_BUSY_TIMEOUT = 60.0  # writers queue on SQLite's single write lock; never give up early
MYSQL_IO_TIMEOUT = 300  # pymysql otherwise waits forever on a half-open connection

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


class DatabaseUnavailable(StorageError):
    """The database refused a connection or failed mid-query; it may come back."""


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


def sqlite_path(parsed: URL) -> Path | None:
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


def connect_args(
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


def failure(url: str, error: BaseException) -> StorageError:
    """A one-line, password-free StorageError for a driver or SQLAlchemy error."""
    verb = "open" if url.startswith("sqlite") else "connect to"
    return DatabaseUnavailable(f"cannot {verb} {mask_url(url)}: {error_reason(url, error)}")


def missing_driver(url: str, error: ImportError) -> StorageError:
    backend, _, driver = url.split("://", 1)[0].partition("+")
    default = _DRIVERS[backend][0]
    install = f"pip install 'hpsearch[{'postgres' if backend == 'postgresql' else 'mysql'}]'"
    if driver != default:
        install = f"install it, or use {backend}:// for the default driver ({install})"
    return StorageError(
        f"{mask_url(url)}: database driver not installed ({error.name or error}); {install}"
    )
