"""Passwords in the storage URL never reach the terminal: secret query parameters are masked,
and an unencoded '@' is refused before anything connects. Console output, logs and process
arguments of a real run on PostgreSQL are in tests/system/test_security.py.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from typer.testing import CliRunner, Result

from hpsearch import cli
from tests.helpers.security import PASSWORD, QUERY_PASSWORD, leaked


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_line_error(result: Result) -> str:
    """The single ``error: ...`` line of a usage error (exit status 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trec_dir: Path) -> Path:
    for name in ("HPSEARCH_STORAGE", "HPSEARCH_STUDIES_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "config": {"hidden_dim": 8, "embedding_dim": 8, "batch_size": 256, "threads": 1},
                "space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}},
                "budget": {"trials": 1, "epochs": 1},
            }
        )
    )
    return path


# The parameters libpq (psycopg) and pymysql (or mysqlclient) take a secret from.
QUERY_SECRETS = [
    ("postgresql", "password"),
    ("postgresql", "sslpassword"),
    ("postgresql", "oauth_client_secret"),
    ("postgresql+psycopg", "scram_client_key"),
    ("mysql", "password"),
    ("mysql", "passwd"),
    ("mysql+pymysql", "ssl_key_password"),
]


@pytest.mark.parametrize(("scheme", "key"), QUERY_SECRETS)
def test_password_in_the_query_string_is_masked(study_file: Path, scheme: str, key: str) -> None:
    options = "sslmode=disable&options=-c%20synchronous_commit%3Doff"
    if scheme.startswith("mysql"):
        options = "charset=utf8mb4&program_name=hp-test"
    secret = quote_plus(QUERY_PASSWORD)
    url = f"{scheme}://u:{quote(PASSWORD, safe='')}@127.0.0.1:{_closed_port()}/test"
    url += f"?{options}&{key}={secret}"
    masked = url.replace(quote(PASSWORD, safe=""), "***").replace(secret, "***")
    assert f"{key}=***" in masked and options in masked  # the other options stay readable
    runner = CliRunner()
    for args in (
        ["studies"],
        ["best", "-s", "tiny"],
        ["export", "-s", "tiny"],
        ["report", "-s", "tiny"],
        ["run", "-s", str(study_file)],
        ["worker", "-s", str(study_file)],
    ):
        result = runner.invoke(cli.app, [*args, "--storage", url])
        line = _one_line_error(result)
        assert f"cannot connect to {scheme.split('+')[0]}+" in line
        assert masked.split("://")[1] in line, line
        assert leaked(result.output) == []
    debug = runner.invoke(cli.app, ["--debug", "studies", "--storage", url])
    assert debug.exit_code == 1 and leaked(str(debug.exception)) == []
    assert masked.split("://")[1] in str(debug.exception)
    assert sorted(p.name for p in study_file.parent.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "postgresql+psycopg2"])
@pytest.mark.parametrize("password", ["pa@ssW0rdX", "pa@ssW0rdX/:?#", "@ssW0rdX@"])
def test_unencoded_at_sign_in_the_password_is_refused(
    study_file: Path, scheme: str, password: str
) -> None:
    # SQLAlchemy ends the password at the first '@': the driver tried host 'ssW0rdX@...'.
    url = f"{scheme}://u:{password}@127.0.0.1:{_closed_port()}/test"
    masked = f"{scheme}://u:***@{url.split('@')[-1]}"
    runner = CliRunner()
    for args in (["studies"], ["best", "-s", "tiny"], ["run", "-s", str(study_file)]):
        line = _one_line_error(runner.invoke(cli.app, [*args, "--storage", url]))
        assert line == (
            f"error: storage URL {masked!r}: the password or user name contains a character "
            "that must be percent-encoded (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F, "
            "% as %25)"
        )
    assert sorted(p.name for p in study_file.parent.iterdir()) == ["study.yaml"]
