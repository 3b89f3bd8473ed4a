"""optuna-dashboard on the study database, opened so that watching never gets in the way.

The storage is opened like a worker's (SQLite in WAL mode with a long busy timeout, so the
dashboard's reads never lock out the workers' writes) but without heartbeats: the dashboard
runs no trials. It binds to loopback unless told otherwise, because the dashboard has no
authentication and can edit studies (notes, deletions).
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

import optuna_dashboard
from optuna.storages import RDBStorage

from hpsearch import storage as storage_mod
from hpsearch.errors import StorageError, UsageError
from hpsearch.results import database_exists

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def _open(url: str) -> RDBStorage:
    if not database_exists(url):
        # Serving would create an empty database: almost always a mistyped path.
        raise StorageError(
            f"{storage_mod.mask_url(url)}: no such database; run a study first "
            "or point --storage at an existing one"
        )
    return storage_mod.open_storage(url, heartbeat=False)


def make_app(url: str) -> WSGIApplication:
    """The dashboard as a WSGI application (for tests, or a production WSGI server)."""
    return optuna_dashboard.wsgi(_open(url))


def browse_url(host: str, port: int) -> str:
    """The address to open: a wildcard bind is reached through loopback on this machine."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/dashboard"


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on ``url``'s database until interrupted."""
    storage = _open(url)
    try:  # before the banner: a host that does not resolve is a usage error
        family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve it: {exc.strerror}") from None
    try:  # and an address it cannot listen on (a port in use): not after "Listening on"
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as exc:
        if exc.errno in _LISTEN_ERRORS:
            raise _cannot_listen(host, port, exc) from None
        raise
    print(
        f"optuna-dashboard for {storage_mod.mask_url(url)} at {browse_url(host, port)} "
        "(Ctrl-C to stop)",
        flush=True,
    )
    try:
        optuna_dashboard.run_server(storage, host=host, port=port)
    except OSError as exc:
        if exc.errno in _LISTEN_ERRORS:
            raise _cannot_listen(host, port, exc) from None
        raise
    except KeyboardInterrupt:
        pass


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _cannot_listen(host: str, port: int, exc: OSError) -> UsageError:
    return UsageError(
        f"--host {host} --port {port}: cannot listen: {exc.strerror}; "
        "choose another --port (or --host)"
    )
