"""Database URLs: resolving and checking them, hiding their passwords, driver settings.

Every message that names a database goes through ``mask_url`` (the URL without its password,
in the user information or in the query string) and ``scrub`` (a driver's error text without
them, raw or URL-encoded); ``failure`` turns a driver's error into one password-free line.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import optuna
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from hpsearch import files, settings
from hpsearch.errors import StorageError, did_you_mean

DEFAULT_URL = "sqlite:///hpsearch.db"
SQLITE_BUSY_TIMEOUT = 60.0  # writers queue on SQLite's single write lock; never give up early
# Client-side limits on a server that stops answering (seconds). MySQL's server-side lock
# waits are cut into slices below MYSQL_IO_TIMEOUT (see _locks), so no read is longer.
MYSQL_IO_TIMEOUT = 60
PG_KEEPALIVE = (10, 5, 4)  # idle before the first probe, between probes, probes: 30 s
PG_TCP_USER_TIMEOUT = 30

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

# From the first ':' after the scheme (the user name may hold an unencoded '@' or '/', but
# not start with '/' as a SQLite path does), greedy up to the last '@': with an unencoded '@'
# or '/' in the password the split is ambiguous, and hiding too much is the safe side.
_USERINFO = re.compile(r"^(?P<head>[^:/?#@]*://(?:[^:/][^:]*)?:)(?P<password>.*)@")

# Query parameters whose value is a secret: libpq's secret keywords (password, sslpassword,
# oauth_client_secret) and its SCRAM keys (they authenticate like the password), pymysql's
# and mysqlclient's (password, passwd, ssl_key_password). Any other name that looks like one
# is hidden too; sslkey, sslcert and passfile are paths, kept readable.
_SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "sslpassword",
        "oauth_client_secret",
        "scram_client_key",
        "scram_server_key",
        "ssl_key_password",
    }
)
_SECRET_PARAM_NAME = re.compile(r"passw(?:or)?d|passphrase|secret")
# Every `key=value` after a '?' or '&', overlapping: where an unencoded '?' or '@' makes the
# query's start ambiguous, each reading is masked (the value runs to the next '&').
_QUERY_PARAM = re.compile(r"(?=[?&](?P<key>[^=&?]*)=(?P<value>[^&]*))")

_ENCODE_HINT = "@ as %40, : as %3A, / as %2F, # as %23, ? as %3F, % as %25"


class DatabaseUnavailable(StorageError):
    """The database refused a connection or failed mid-query; it may come back."""


class DatabaseLost(DatabaseUnavailable):
    """The database went away during a run that had started well, and stayed away: not an
    error in the input, so not exit status 2 (a script can tell it from a bad URL)."""

    exit_code = 1


def resolve_url(url: str | None) -> str:
    """Return the storage URL to use (argument, else $HPSEARCH_STORAGE, else $OPTUNA_STORAGE,
    else the default), with the driver made explicit; raise StorageError if it is malformed or
    unsupported. A message about a URL from the environment names the variable."""
    source = "storage URL"
    if url is not None and not url.strip():
        raise StorageError(
            f"--storage: the storage URL is empty; give one (e.g. {DEFAULT_URL}, the default "
            f"when neither {settings.STORAGE} nor {settings.OPTUNA_STORAGE} is set)"
        )
    if url is None and (from_env := settings.storage_url()) is not None:
        variable, url = from_env
        source = f"{variable}: storage URL"
    text = (url if url is not None else DEFAULT_URL).strip()
    where = f"{source} {mask_url(text)!r}"
    try:
        parsed = make_url(text)
    except (sa_exc.ArgumentError, ValueError):
        hint = ""
        if _USERINFO.match(text):
            hint = f" (percent-encode special characters in the user and password: {_ENCODE_HINT})"
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
        if _in_memory(parsed):
            # Every worker process, and every later command, would open its own empty one.
            raise StorageError(
                f"{where}: an in-memory SQLite database vanishes with the process, and the "
                f"workers and later commands share the database; give a file, e.g. {DEFAULT_URL}"
            )
    elif _unencoded_userinfo(text, parsed):
        raise StorageError(
            f"{where}: the password or user name contains a character that must be "
            f"percent-encoded ({_ENCODE_HINT})"
        )
    elif not parsed.host or not parsed.database:
        missing = "host" if not parsed.host else "database name"
        raise StorageError(f"{where} has no {missing}; expected e.g. {backend}://user@host/db")
    scheme = f"{backend}+{driver_or_default}" if driver_or_default else backend
    # Keep the rest exactly as written: re-rendering could change the password's encoding.
    return scheme + text[text.index("://") :]


def mask_url(url: str) -> str:
    """Return the URL with its password, and the values of secret query parameters
    (``?password=``, ``?sslpassword=``, ...), replaced by ``***``; never raises."""
    # Masked by position in the text as written, every other character kept as it is.
    spans: list[tuple[int, int]] = []
    for start, stop in sorted(_secret_spans(url)):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(stop, spans[-1][1]))
        else:
            spans.append((start, stop))
    masked, end = [], 0
    for start, stop in spans:
        masked += [url[end:start], "***"]
        end = stop
    return "".join(masked) + url[end:]


def scrub(text: str, url: str) -> str:
    """Remove the URL's password and secret query values, raw or URL-encoded, from a message."""
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
    for start, stop in _secret_spans(url, query_only=True):
        value = url[start:stop]
        forms |= {value, unquote(value), unquote_plus(value)}
    forms |= {quote(f, safe="") for f in forms} | {quote_plus(f) for f in forms}
    # The URL itself first: where its secrets overlap (an ambiguous '@'), one form replaced
    # could leave a piece of the other.
    text = text.replace(url, mask_url(url)) if url else text
    for form in sorted(forms - {""}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _secret_spans(url: str, *, query_only: bool = False) -> list[tuple[int, int]]:
    """Where the URL's secrets lie: its password, and the values of secret query parameters.

    A URL that SQLAlchemy reads unambiguously has its password exactly where ``_USERINFO``
    finds it; otherwise that match runs to the last '@', hiding too much rather than a piece.
    """
    spans = []
    match = None if query_only else _USERINFO.match(url)
    if match:
        spans.append(match.span("password"))
    for param in _QUERY_PARAM.finditer(url):
        if param["value"] and _is_secret_param(param["key"]):
            spans.append(param.span("value"))
    return spans


def _is_secret_param(key: str) -> bool:
    """Whether a query parameter's value is a secret (``key`` as written in the URL)."""
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_PARAMS or _SECRET_PARAM_NAME.search(name) is not None


def _unencoded_userinfo(text: str, parsed: URL) -> bool:
    """Whether a server URL's user name or password holds an unencoded '@', '/', '?' or '#'.

    SQLAlchemy ends the password at the first '@' and reads the rest of it as the host (or,
    after a '/' in the user name, the user information as host and database name): the
    driver's error then shows that piece of the password. A '/', '?' or '#' in the password
    reads as well as the start of a path or query holding an '@' (``h:5432/db?x=a@b``).
    """
    rest = text.split("://", 1)[1]
    if parsed.username is None and parsed.password is None:
        return "@" in rest
    userinfo, _, host_and_rest = rest.partition("@")
    return "@" in host_and_rest or any(c in userinfo for c in "/?#")


def _in_memory(parsed: URL) -> bool:
    """Whether a SQLite URL names an in-memory database (lost when its process ends)."""
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return True
    for key, memory in (("mode", "memory"), ("vfs", "memdb")):
        values = parsed.query.get(key, ())
        values = (values,) if isinstance(values, str) else values
        if any(v.strip().lower() == memory for v in values):
            return True
    return False


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
    url = parsed.render_as_string(hide_password=True)
    if not path.parent.is_dir():
        raise StorageError(
            f"{url}: directory {path.parent.absolute()} does not exist (create it first)"
        )
    # A device or FIFO is no database: SQLite would fail on it only after its lock and
    # journal files were made beside it (in /dev, for /dev/null). Checked by stat, never by
    # opening it: closing any descriptor of a database file drops this process's SQLite locks.
    with contextlib.suppress(OSError):
        if (problem := files.not_regular(path.stat().st_mode)) is not None:
            raise StorageError(f"{url}: {problem}; expected a SQLite database file")
    return path


def connect_args(parsed: URL, connect_timeout: float) -> dict[str, Any]:
    """Driver arguments; any also given in the URL's query string keep the URL's value.

    A server behind a network that drops packets (rather than refusing them) would otherwise
    hold a query for the operating system's two hours: each time limit here bounds one way a
    worker can wait on it (see docs/failure-handling.md, "A network partition").
    """
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT}
    else:
        args = {"connect_timeout": max(1, math.ceil(connect_timeout))}
        if backend == "postgresql":
            # An idle connection, or one waiting for a long query's answer, is probed after
            # PG_KEEPALIVE[0] s of silence and dropped after PG_KEEPALIVE[2] unanswered probes;
            # data the server does not acknowledge fails the connection after PG_TCP_USER_TIMEOUT.
            # No statement_timeout: a slow query on a live server is not a lost one.
            idle, interval, count = PG_KEEPALIVE
            args |= {"keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval}
            args |= {"keepalives_count": count, "tcp_user_timeout": PG_TCP_USER_TIMEOUT * 1000}
            # Names hpsearch's sessions in pg_stat_activity (to watch them, or end them).
            args |= {"application_name": "hpsearch"}
        else:
            # pymysql has no keepalive: a read or write waits at most this long.
            args |= {"read_timeout": MYSQL_IO_TIMEOUT, "write_timeout": MYSQL_IO_TIMEOUT}
    return {k: v for k, v in args.items() if k not in parsed.query}


def error_reason(url: str, error: BaseException) -> str:
    """The first line of a driver's error, without the password, for a one-line message.

    Optuna wraps driver errors in a StorageInternalError about "invalid data in the
    commit", and SQLAlchemy in its own class: the driver's own words say what happened.
    """
    cause = _driver_error(error)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return scrub(" ".join(lines[0].split()) if lines else type(cause).__name__, url)


def _driver_error(error: BaseException) -> BaseException:
    cause: BaseException = error
    while True:
        if isinstance(cause, sa_exc.DBAPIError) and cause.orig is not None:
            cause = cause.orig
        elif isinstance(cause, optuna.exceptions.StorageInternalError) and cause.__cause__:
            cause = cause.__cause__
        else:
            return cause


# What each database says when its disk is full: SQLite's SQLITE_FULL, PostgreSQL's
# disk_full class, MySQL's "disk full" and "table is full"; the OS's ENOSPC text otherwise.
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
_PG_DISK_FULL = "53100"
_MYSQL_DISK_FULL = (1021, 1114)
# SQLite reports a failed write to its shared-memory or WAL file as an I/O error: with less
# than this left on the file's filesystem, the error is the full disk.
_NEARLY_FULL = 1 << 20


def disk_full(url: str, error: BaseException) -> bool:
    """Whether a database error says that the database's disk is full."""
    cause = _driver_error(error)
    code = getattr(cause, "sqlite_errorcode", None)
    if code == _SQLITE_FULL:
        return True
    if isinstance(code, int) and code & 0xFF == _SQLITE_IOERR:
        return _nearly_full(url)
    if getattr(cause, "sqlstate", None) == _PG_DISK_FULL:
        return True
    args = getattr(cause, "args", ())
    if type(cause).__module__.startswith("pymysql") and args and args[0] in _MYSQL_DISK_FULL:
        return True
    return "No space left on device" in str(cause)


def _nearly_full(url: str) -> bool:
    try:
        path = sqlite_path(make_url(url))
        if path is None:
            return False
        fs = os.statvfs(path.absolute().parent)
    except (OSError, StorageError, sa_exc.ArgumentError):
        return False
    return fs.f_bavail * fs.f_frsize < _NEARLY_FULL


def failure(url: str, error: BaseException) -> StorageError:
    """A one-line, password-free StorageError for a driver or SQLAlchemy error."""
    reason = error_reason(url, error)
    if disk_full(url, error):
        return DatabaseUnavailable(f"cannot write to {mask_url(url)}: disk full ({reason})")
    verb = "open" if url.startswith("sqlite") else "connect to"
    return DatabaseUnavailable(f"cannot {verb} {mask_url(url)}: {reason}")


def missing_driver(url: str, error: ImportError) -> StorageError:
    backend, _, driver = url.split("://", 1)[0].partition("+")
    default = _DRIVERS[backend][0]
    install = f"pip install 'hpsearch[{'postgres' if backend == 'postgresql' else 'mysql'}]'"
    if driver != default:
        install = f"install it, or use {backend}:// for the default driver ({install})"
    return StorageError(
        f"{mask_url(url)}: database driver not installed ({error.name or error}); {install}"
    )
