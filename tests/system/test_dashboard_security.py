"""The served dashboard's rules, through a real HTTP client against `hpsearch dashboard`.

Read-only unless --allow-writes; credentials from the environment (enforced on loopback when
set, required beyond it unless --insecure); Ctrl-C and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from hpsearch import storage

DASHBOARD = (sys.executable, "-m", "hpsearch", "dashboard")
PASSWORD = "s3cret-pa55word-7f1d"
TOKEN = "tok-0c9b2a41e6d8"
# Every kind of route: redirect, single-page app, API, CSV, favicon and static files.
ROUTES = (
    "/",
    "/dashboard",
    "/dashboard/studies/1",
    "/api/meta",
    "/api/studies",
    "/api/studies/1",
    "/csv/1",
    "/favicon.ico",
    "/static/bundle.js.LICENSE.txt",
)
# Each route of optuna-dashboard that changes the database (trial ids: see make_database).
WRITES = (
    ("POST", "/api/studies", {"study_name": "new", "directions": ["minimize"]}),
    ("PUT", "/api/studies/1/note", {"version": 1, "body": "note"}),
    ("PUT", "/api/studies/1/1/note", {"version": 1, "body": "note"}),
    ("POST", "/api/trials/4/tell", {"state": "Complete", "values": [0.5]}),
    ("POST", "/api/trials/1/user-attrs", {"user_attrs": {"a": 1}}),
    ("POST", "/api/studies/1/1/skip", None),
    ("POST", "/api/studies/1/preference", {"mode": "ChooseWorst", "candidates": [0, 1]}),
    ("DELETE", "/api/artifacts/1/1/0a1b", None),
    ("POST", "/incompatible-rdb-schema", None),
    ("PATCH", "/api/studies/1", {"study_name": "patched"}),
    ("POST", "/api/studies/1/rename", {"study_name": "renamed"}),
    ("DELETE", "/api/studies/1", None),
)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int, method: str, path: str, body: object = None, auth: str | None = None
) -> Reply:
    """One request to 127.0.0.1:port, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept-Encoding": "identity"}
    if auth is not None:
        headers["Authorization"] = auth
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make_database(path: Path) -> str:
    """Study 1 with trials 1-3 complete and trial 4 RUNNING, as in a live search."""
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="s", storage=storage.open_storage(url, heartbeat=False), direction="minimize"
    )
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    study.ask()
    return url


def snapshot(path: Path) -> list[str]:
    """Every row of every table, as SQL (the WAL included, so it sees what the file holds)."""
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def environment(**dashboard_env: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_DASHBOARD_")}
    return env | dashboard_env


class Server:
    """`python -m hpsearch dashboard ...` in a subprocess, answering on 127.0.0.1:port."""

    def __init__(self, url: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*DASHBOARD, "--storage", url, "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or environment(),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                request(self.port, "HEAD", "/api/meta")
                return
            except OSError:
                exited = self.proc.poll() is not None
                assert not exited, f"the dashboard exited: {self.proc.communicate()}"
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)

    def stop(self, signum: int = signal.SIGTERM) -> tuple[str, str]:
        """Stop it with ``signum``; it has to exit 0 without a traceback."""
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        return out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def test_read_only_by_default_refuses_every_write(tmp_path: Path, servers: list[Server]) -> None:
    db = tmp_path / "ro.db"
    url = make_database(db)
    before = snapshot(db)
    server = Server(url)
    servers.append(server)
    for method, path, body in WRITES:
        reply = request(server.port, method, path, body)
        assert reply.status == 403, (method, path, reply.body)
        reason = json.loads(reply.body)["reason"]
        assert "read-only" in reason and "\n" not in reason
    # The two curl lines: the study is still listed, and nothing in the file changed.
    studies = json.loads(request(server.port, "GET", "/api/studies").body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["s"]
    for path in ROUTES:
        assert request(server.port, "GET", path).status in (200, 302), path
    assert snapshot(db) == before
    out, _ = server.stop(signal.SIGINT)  # Ctrl-C
    assert "read-only" in out and "no sign-in: loopback only" in out


def test_allow_writes_lets_a_delete_through(tmp_path: Path, servers: list[Server]) -> None:
    url = make_database(tmp_path / "rw.db")
    server = Server(url, "--allow-writes")
    servers.append(server)
    assert request(server.port, "DELETE", "/api/studies/1").status == 204
    listed = json.loads(request(server.port, "GET", "/api/studies").body)
    assert listed == {"study_summaries": []}
    out, _ = server.stop()
    assert "writes allowed" in out
    assert optuna.get_all_study_names(url) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_basic_auth_on_every_route(tmp_path: Path, servers: list[Server], host: str) -> None:
    url = make_database(tmp_path / "auth.db")
    env = environment(HPSEARCH_DASHBOARD_USER="ana", HPSEARCH_DASHBOARD_PASSWORD=PASSWORD)
    server = Server(url, "--host", host, env=env)
    servers.append(server)
    good = basic("ana", PASSWORD)
    for path in ROUTES:
        for auth in (None, basic("ana", "wrong"), basic("bob", PASSWORD), f"Bearer {PASSWORD}"):
            reply = request(server.port, "GET", path, auth=auth)
            assert reply.status == 401, (path, auth)
            assert reply.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert request(server.port, "GET", path, auth=good).status == (302 if path == "/" else 200)
    assert request(server.port, "DELETE", "/api/studies/1").status == 401
    assert request(server.port, "DELETE", "/api/studies/1", auth=good).status == 403
    out, err = server.stop()
    assert "sign-in required" in out
    assert PASSWORD not in out + err


def test_bearer_token_from_a_file(tmp_path: Path, servers: list[Server]) -> None:
    url = make_database(tmp_path / "token.db")
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    env = environment(HPSEARCH_DASHBOARD_TOKEN_FILE=str(secret))
    server = Server(url, "--host", "0.0.0.0", env=env)
    servers.append(server)
    for path in ROUTES:
        reply = request(server.port, "GET", path, auth=f"Bearer {TOKEN}x")
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Bearer realm=")
        expected = 302 if path == "/" else 200
        assert request(server.port, "GET", path, auth=f"Bearer {TOKEN}").status == expected
    out, err = server.stop()
    assert TOKEN not in out + err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set HPSEARCH_DASHBOARD_USER and HPSEARCH_DASHBOARD_PASSWORD"),
        ({"HPSEARCH_DASHBOARD_PASSWORD_FILE": "EMPTY"}, "the secret on one line"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "MISSING"}, "MISSING: file not found"),
        ({"HPSEARCH_DASHBOARD_PASSWORD": PASSWORD}, "HPSEARCH_DASHBOARD_USER is not set"),
    ],
)
def test_beyond_loopback_without_good_credentials_it_does_not_start(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    url = make_database(tmp_path / "exposed.db")
    (tmp_path / "EMPTY").write_text("\n")
    env = {k: str(tmp_path / v) if v in ("EMPTY", "MISSING") else v for k, v in env.items()}
    result = subprocess.run(
        [*DASHBOARD, "--storage", url, "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=environment(**env),
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
    assert PASSWORD not in line


def test_insecure_starts_beyond_loopback_with_a_warning(
    tmp_path: Path, servers: list[Server]
) -> None:
    url = make_database(tmp_path / "insecure.db")
    server = Server(url, "--host", "0.0.0.0", "--insecure")
    servers.append(server)
    assert request(server.port, "GET", "/api/studies").status == 200
    assert request(server.port, "DELETE", "/api/studies/1").status == 403  # still read-only
    out, _ = server.stop()
    assert "warning: --insecure" in out
