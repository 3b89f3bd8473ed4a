"""Malformed input through `python -m hpsearch` processes and database servers: one line on
stderr, exit status 2, nothing written. The in-process cases are in
tests/unit/test_hostile_input.py."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.helpers.hostile_input import (
    BASE,
    PASSWORD,
    SQLITE,
    edit,
    invoke,
    no_database,
    one_line_error,
    write,
)
from tests.helpers.network import closed_port

pytestmark = pytest.mark.usefixtures("workdir")


def test_errors_reach_the_terminal_as_one_line(workdir: Path) -> None:
    """The real process: no banner before the error, no wrapping, no traceback."""
    path = write(workdir / "study.yaml", edit("space:", "sapce:"))
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "run", "-s", str(path), "--storage", SQLITE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: study.yaml: sapce:")
    no_database(workdir)


# --- storage URLs ----------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    server.settimeout(0.2)
    stop = False

    def serve() -> None:
        while not stop:
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop = True
        thread.join()
        for sock in accepted:
            sock.close()
        server.close()


def test_refused_connection_with_a_password_is_masked(workdir: Path) -> None:
    path = write(workdir / "study.yaml", BASE)
    port = closed_port()
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/test"
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "run", "-s", str(path), "--storage", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert PASSWORD not in proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(
        f"error: cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:{port}/test: "
    )
    assert "refused" in proc.stderr


def test_unreachable_database_fails_within_the_connect_timeout(
    workdir: Path, silent_server: int
) -> None:
    path = write(workdir / "study.yaml", BASE)
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{silent_server}/test"
    started = time.monotonic()
    line = one_line_error(invoke("run", "-s", path, "--storage", url))
    assert time.monotonic() - started < 25  # the default connect timeout is 10 s
    assert line.startswith("error: cannot connect to postgresql+psycopg://postgres:***@")
    assert "timeout" in line.lower() and PASSWORD not in line


@pytest.mark.postgres
def test_bad_input_writes_nothing_to_postgres(workdir: Path, postgres_url: str) -> None:
    name = f"hostile-{uuid.uuid4().hex[:10]}"
    text = edit("name: bad", f"name: {name}").replace(
        "threads: 1}", "threads: 1, embeddings: x.txt}"
    )
    path = write(workdir / "study.yaml", text)
    line = one_line_error(invoke("run", "-s", path, "--storage", postgres_url))
    assert line == "error: embeddings: x.txt: file not found"
    assert name not in optuna.get_all_study_names(storage=postgres_url)
