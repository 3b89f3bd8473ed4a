"""optuna-dashboard on the study database, opened so that watching never gets in the way.

The storage is opened like a worker's (SQLite in WAL mode with a long busy timeout, so the
dashboard's reads never lock out the workers' writes) but without heartbeats: the dashboard
runs no trials.

optuna-dashboard has no authentication of its own, and its API deletes, renames and annotates
studies and can ``tell`` a result for a running trial. So what ``serve`` runs is read-only
unless told otherwise (``--allow-writes``), needs credentials to listen beyond loopback
(``--insecure`` to do without, knowingly), and enforces them on loopback too when they are
configured. The checks wrap the whole WSGI application (``_dashboard_auth.guard``), and it runs
on waitress, a threaded production WSGI server, not Bottle's development server.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import optuna_dashboard
import waitress
from optuna.storages import RDBStorage

from hpsearch import artifacts, files, settings
from hpsearch import storage as storage_mod
from hpsearch.artifacts import AtomicFileSystemStore
from hpsearch.cli._dashboard_auth import Credentials, guard
from hpsearch.errors import ConfigError, StorageError, UsageError
from hpsearch.results import database_exists

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

# Enough for a few people's browsers, each polling several API routes at once.
THREADS = 8


def _open(url: str) -> RDBStorage:
    if not database_exists(url):
        # Serving would create an empty database: almost always a mistyped path.
        raise StorageError(
            f"{storage_mod.mask_url(url)}: no such database; run a study first "
            "or point --storage at an existing one"
        )
    return storage_mod.open_storage(url, heartbeat=False)


def make_app(
    url: str,
    *,
    credentials: Credentials | None = None,
    allow_writes: bool = False,
    artifacts_dir: Path | None = None,
) -> WSGIApplication:
    """The dashboard as a guarded WSGI application (for tests, or another WSGI server)."""
    app = optuna_dashboard.wsgi(_open(url), artifact_store=_model_store(url, artifacts_dir))
    return guard(app, credentials=credentials, allow_writes=allow_writes)


def _model_store(url: str, directory: Path | None) -> AtomicFileSystemStore | None:
    """The trained models' store, so that the dashboard lists each trial's model and offers
    it for download (none for a server database without --artifacts)."""
    found = artifacts.store_dir(url, directory)
    return None if found is None else AtomicFileSystemStore(found)


def credentials_from_env(environ: Mapping[str, str]) -> Credentials | None:
    """The configured credentials, or None; a half or unreadable configuration is an error."""
    user = environ.get(settings.DASHBOARD_USER)
    password = _secret(environ, settings.DASHBOARD_PASSWORD, settings.DASHBOARD_PASSWORD_FILE)
    token = _secret(environ, settings.DASHBOARD_TOKEN, settings.DASHBOARD_TOKEN_FILE)
    if user is not None and (not user or ":" in user):
        raise UsageError(f"{settings.DASHBOARD_USER}: set it to a user name, without ':'")
    if user is None and password is not None:
        raise UsageError(
            f"{settings.DASHBOARD_USER} is not set: basic auth needs a user with the password"
        )
    if user is not None and password is None:
        raise UsageError(
            f"{settings.DASHBOARD_USER} is set but neither {settings.DASHBOARD_PASSWORD} nor "
            f"{settings.DASHBOARD_PASSWORD_FILE}"
        )
    if password is None and token is None:
        return None
    return Credentials(user=user, password=password, token=token)


def _secret(environ: Mapping[str, str], name: str, file_name: str) -> str | None:
    value, path = environ.get(name), environ.get(file_name)
    if value is not None and path is not None:
        raise UsageError(f"{name} and {file_name} are both set; set one of them")
    if path is not None:
        value = _read_secret(file_name, path)
    if value is not None and not value:
        raise UsageError(f"{name} is set but empty; set a secret or unset it")
    return value


MAX_SECRET_BYTES = 4096


def _read_secret(file_name: str, path: str) -> str:
    if not path:
        raise UsageError(f"{file_name} is set but empty; set it to the file holding the secret")
    try:
        # A FIFO would wait for a writer for ever, and /dev/zero never end: a regular file,
        # and no more of it than a secret needs.
        with files.open_regular(Path(path), expected="a file holding the secret") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
        # Surrounding whitespace is the newline an editor or `echo` leaves, not the secret.
        value = raw.decode("utf-8").strip()
    except ConfigError as exc:
        raise UsageError(f"{file_name}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{file_name}={path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file_name}={path}: not UTF-8 text") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise UsageError(
            f"{file_name}={path}: over {MAX_SECRET_BYTES} bytes; the file must hold the secret "
            "on one line"
        )
    if not value or "\n" in value:
        raise UsageError(f"{file_name}={path}: the file must hold the secret on one line")
    return value


def browse_url(host: str, port: int) -> str:
    """The address to open: a wildcard bind is reached through loopback on this machine."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/dashboard"


def serve(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    allow_writes: bool = False,
    insecure: bool = False,
    environ: Mapping[str, str] | None = None,
    artifacts_dir: Path | None = None,
) -> None:
    """Serve optuna-dashboard on ``url``'s database until interrupted (Ctrl-C or SIGTERM)."""
    credentials = credentials_from_env(os.environ if environ is None else environ)
    addresses = _resolve(host, port)
    local = all(_is_loopback(address) for _, address in addresses)
    if not local and credentials is None and not insecure:
        raise UsageError(
            f"--host {host} is reachable from other machines and no credentials are set: "
            f"set {settings.DASHBOARD_USER} and {settings.DASHBOARD_PASSWORD} (or "
            f"{settings.DASHBOARD_TOKEN}; *_FILE for a file), "
            "or serve on 127.0.0.1 (an SSH tunnel), or pass --insecure"
        )
    storage = _open(url)
    family, address = addresses[0]
    sock = _listen(family, address, host, port)
    app = guard(
        optuna_dashboard.wsgi(storage, artifact_store=_model_store(url, artifacts_dir)),
        credentials=credentials,
        allow_writes=allow_writes,
        loopback_hosts_only=credentials is None and local,
    )
    server = waitress.create_server(app, sockets=[sock], threads=THREADS, ident="hpsearch")
    print(_banner(url, host, port, credentials, allow_writes, local), flush=True)
    try:
        with _sigterm_interrupts():
            server.run()  # returns once interrupted, after closing its threads and socket
    except KeyboardInterrupt:  # one that came before the server's loop caught it
        pass


def _banner(
    url: str,
    host: str,
    port: int,
    credentials: Credentials | None,
    allow_writes: bool,
    local: bool,
) -> str:
    lines = [
        f"optuna-dashboard for {storage_mod.mask_url(url)} at {browse_url(host, port)} "
        "(Ctrl-C to stop)",
        "writes allowed: whoever can use it can edit notes, delete studies and mark trials"
        if allow_writes
        else "read-only: changes are refused (--allow-writes to edit notes, delete, mark trials)",
    ]
    if credentials is not None:
        lines.append("sign-in required (HTTP basic auth or bearer token)")
        if not local:
            lines.append("note: plain HTTP: beyond a trusted network, put TLS in front")
    elif local:
        lines.append("no sign-in: loopback only")
    else:
        lines.append(
            f"warning: --insecure: no sign-in, and --host {host} is reachable from other "
            f"machines: anyone who reaches port {port} can use the dashboard"
        )
    return "\n".join(lines)


def _resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, Any]]:
    try:  # before the banner: a host that does not resolve is a usage error
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve it: {exc.strerror}") from None
    return [(family, address) for family, *_, address in found]


def _is_loopback(address: Any) -> bool:
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


def _listen(family: socket.AddressFamily, address: Any, host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that an address it cannot use is one line."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno in _LISTEN_ERRORS:
            raise _cannot_listen(host, port, exc) from None
        raise
    return sock


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (docker stop, systemd) stops the server as Ctrl-C does: cleanly, exit 0."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _cannot_listen(host: str, port: int, exc: OSError) -> UsageError:
    return UsageError(
        f"--host {host} --port {port}: cannot listen: {exc.strerror}; "
        "choose another --port (or --host)"
    )
