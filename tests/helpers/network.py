"""Local ports for the tests: one nobody listens on, or one free to listen on."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on: ``free_port``'s, closed again when its socket is."""
    return free_port()
