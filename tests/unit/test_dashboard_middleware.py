"""The dashboard's guard, called directly as a WSGI application (no server, no database)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from hpsearch import settings
from hpsearch.cli import _dashboard as dashboard
from hpsearch.cli._dashboard_auth import Credentials, guard
from hpsearch.errors import UsageError

PASSWORD = "correct horse battery"
TOKEN = "t0ken-9f2c1e"
BASIC = Credentials(user="ana", password=PASSWORD)
BEARER = Credentials(token=TOKEN)
WRITES = ("DELETE", "POST", "PUT", "PATCH", "OPTIONS", "delete", "post")


def inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner"]


def call(app: Any, method: str = "GET", path: str = "/api/studies", **headers: str) -> Any:
    """(status, headers, body) of one request; headers as WSGI keys, e.g. HTTP_HOST."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": "127.0.0.1:8080"}
    environ |= headers
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers))

    body = b"".join(app(environ, start_response))
    ((status, response_headers),) = seen
    return status, response_headers, body


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_read_only_refuses_every_method_but_get_and_head() -> None:
    app = guard(inner, credentials=None, allow_writes=False)
    for method in ("GET", "HEAD", "get"):
        assert call(app, method)[0] == "200 OK"
    for method in WRITES:
        status, headers, body = call(app, method, "/api/studies/1")
        assert status == "403 Forbidden"
        assert ("Content-Type", "application/json") in headers
        reason = json.loads(body)["reason"]
        assert "read-only" in reason and "--allow-writes" in reason and "\n" not in reason


def test_allow_writes_passes_writes_but_not_from_another_sites_page() -> None:
    app = guard(inner, credentials=None, allow_writes=True)
    assert call(app, "DELETE", "/api/studies/1")[0] == "200 OK"
    same_site = call(app, "DELETE", HTTP_ORIGIN="http://127.0.0.1:8080")
    assert same_site[0] == "200 OK"
    other = call(app, "DELETE", HTTP_ORIGIN="https://evil.example")
    assert other[0] == "403 Forbidden" and b"another site" in other[2]
    assert call(app, "GET", HTTP_ORIGIN="https://evil.example")[0] == "200 OK"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic("ana", "wrong"),
        basic("bob", PASSWORD),
        basic("ana", PASSWORD + "x"),
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"ana").decode(),  # no colon
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
        f"Bearer {PASSWORD}",
        "Digest whatever",
    ],
)
def test_basic_auth_refuses_anything_but_the_credentials(authorization: str | None) -> None:
    app = guard(inner, credentials=BASIC, allow_writes=True)
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    for path in ("/", "/dashboard", "/static/bundle.js", "/api/studies", "/artifacts/1/ab"):
        status, response_headers, body = call(app, "GET", path, **headers)
        assert status == "401 Unauthorized"
        assert response_headers[-1] == (
            "WWW-Authenticate",
            'Basic realm="hpsearch dashboard", charset="UTF-8"',
        )
        assert PASSWORD.encode() not in body


def test_basic_auth_lets_the_credentials_through() -> None:
    app = guard(inner, credentials=BASIC, allow_writes=False)
    good = basic("ana", PASSWORD)
    assert call(app, "GET", HTTP_AUTHORIZATION=good)[2] == b"inner"
    assert call(app, "GET", HTTP_AUTHORIZATION=good.replace("Basic", "basic"))[0] == "200 OK"
    # Signed in is not write access: read-only still holds.
    assert call(app, "DELETE", HTTP_AUTHORIZATION=good)[0] == "403 Forbidden"


def test_bearer_token() -> None:
    app = guard(inner, credentials=BEARER, allow_writes=False)
    assert call(app, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[0] == "200 OK"
    status, headers, _ = call(app, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert status == "401 Unauthorized"
    assert ("WWW-Authenticate", 'Bearer realm="hpsearch dashboard"') in headers
    assert call(app, HTTP_AUTHORIZATION=basic("ana", TOKEN))[0] == "401 Unauthorized"


def test_credentials_come_before_read_only() -> None:
    # Whoever has not signed in learns nothing, not even that the dashboard is read-only.
    app = guard(inner, credentials=BASIC, allow_writes=False)
    assert call(app, "DELETE")[0] == "401 Unauthorized"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:8080", True),
        ("[::1]:8080", True),
        ("127.0.0.2", True),
        ("evil.example:8080", False),
        ("", False),
    ],
)
def test_a_loopback_dashboard_without_sign_in_answers_only_to_loopback_names(
    host: str, allowed: bool
) -> None:
    # A page whose name is rebound to 127.0.0.1 sends its own name as Host.
    app = guard(inner, credentials=None, allow_writes=False, loopback_hosts_only=True)
    assert (call(app, HTTP_HOST=host)[0] == "200 OK") is allowed


def test_secrets_stay_out_of_the_repr() -> None:
    shown = repr(Credentials(user="ana", password=PASSWORD, token=TOKEN))
    assert PASSWORD not in shown and TOKEN not in shown


def test_credentials_from_the_environment(tmp_path: Path) -> None:
    assert dashboard.credentials_from_env({}) is None
    env = {settings.DASHBOARD_USER: "ana", settings.DASHBOARD_PASSWORD: PASSWORD}
    assert dashboard.credentials_from_env(env) == BASIC
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")  # the newline `echo` leaves is not part of it
    assert dashboard.credentials_from_env({settings.DASHBOARD_TOKEN_FILE: str(secret)}) == BEARER


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HPSEARCH_DASHBOARD_PASSWORD": "pw"}, "HPSEARCH_DASHBOARD_USER is not set"),
        ({"HPSEARCH_DASHBOARD_USER": "ana"}, "neither HPSEARCH_DASHBOARD_PASSWORD"),
        ({"HPSEARCH_DASHBOARD_USER": "a:b", "HPSEARCH_DASHBOARD_PASSWORD": "pw"}, "without ':'"),
        ({"HPSEARCH_DASHBOARD_TOKEN": ""}, "HPSEARCH_DASHBOARD_TOKEN is set but empty"),
        (
            {"HPSEARCH_DASHBOARD_TOKEN": "t", "HPSEARCH_DASHBOARD_TOKEN_FILE": "f"},
            "both set",
        ),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": ""}, "set it to the file"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "MISSING"}, "TOKEN_FILE: .*MISSING: file not found"),
        # Read whole: a FIFO waited for a writer for ever, /dev/zero filled the memory.
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "/dev/null"}, "a character device, not a regular"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "HUGE"}, "over 4096 bytes; the file must hold"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "EMPTY"}, "the secret on one line"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "TWO_LINES"}, "the secret on one line"),
        ({"HPSEARCH_DASHBOARD_TOKEN_FILE": "BINARY"}, "not UTF-8"),
    ],
)
def test_bad_credential_settings_are_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    files = {
        "EMPTY": b" \n",
        "TWO_LINES": b"a\nb\n",
        "BINARY": b"\xff\xfe",
        "HUGE": b"x" * 100_000,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    env = {k: str(tmp_path / v) if v in (*files, "MISSING") else v for k, v in env.items()}
    with pytest.raises(UsageError, match=message) as raised:
        dashboard.credentials_from_env(env)
    assert "\n" not in str(raised.value)
