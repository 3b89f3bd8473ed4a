"""The database password never leaves the storage URL: not in console output, logs, process
arguments, exported files or anything stored with the study.

Binding the dashboard to loopback is checked in test_dashboard.py, and the compose file's
private PostgreSQL port and environment-only password in test_compose.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import optuna
import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from hpsearch import cli

# '@', ':' and '/' must be percent-encoded in a URL: both spellings are searched for.
PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}@:/"
# A password in the query string (libpq and pymysql take one there too); '&' and '=' as well.
QUERY_PASSWORD = f"Qp-{uuid.uuid4().hex[:12]}@:/&="
FORMS = {
    form
    for secret in (PASSWORD, QUERY_PASSWORD)
    for form in (secret, quote(secret, safe=""), quote_plus(secret), secret[:15])
}


def leaked(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def process_arguments() -> str:
    """Every process's command line on this machine (what `ps` shows every user)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return "\n".join(found)


@pytest.mark.postgres
def test_password_appears_nowhere(tmp_path: Path, trec_dir: Path, postgres_url: str) -> None:
    name = f"security-{uuid.uuid4().hex[:10]}"
    # Trust authentication on the test server accepts any password.
    url = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    assert quote(PASSWORD, safe="") in url
    url += f"?application_name=hp-test&password={quote_plus(QUERY_PASSWORD)}"
    masked = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=True)
    masked += "?application_name=hp-test&password=***"
    study_file = tmp_path / "study.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "config": {"hidden_dim": 8, "embedding_dim": 8, "batch_size": 256, "threads": 1},
                "space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}},
                "sampler": {"name": "random", "seed": 0},
                "pruner": "none",
                "budget": {"trials": 3, "epochs": 1},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env |= {"HPSEARCH_STORAGE": url, "HPSEARCH_DATA_DIR": str(trec_dir)}
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "--verbose", "run", "-s", str(study_file)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        arguments = []
        while run.poll() is None:  # the workers' arguments, while they exist
            arguments.append(process_arguments())
            time.sleep(0.2)
        output = run.communicate()[0]
        assert run.returncode == 0, output
        assert re.search(rf"{re.escape(os.uname().nodename)}-\d+-w1", output)  # it reported
        assert leaked(output) == []
        assert leaked("\n".join(arguments)) == []

        runner = CliRunner(env={"HPSEARCH_STORAGE": url})
        outputs = [
            runner.invoke(cli.app, ["export", "-s", name, "-o", str(tmp_path / "best.json")]),
            runner.invoke(
                cli.app, ["export", "-s", name, "-f", "csv", "-o", str(tmp_path / "t.csv")]
            ),
            runner.invoke(cli.app, ["export", "-s", name]),
            runner.invoke(cli.app, ["best", "-s", name]),
            runner.invoke(cli.app, ["studies", "--studies-dir", str(tmp_path)]),
            runner.invoke(cli.app, ["report", "-s", name, "-o", str(tmp_path / "report")]),
            runner.invoke(cli.app, ["export", "-s", f"{name}-missing"]),  # an error message
        ]
        codes = [r.exit_code for r in outputs]
        assert codes == [0, 0, 0, 0, 0, 0, 2], [r.output for r in outputs]
        for result in outputs:
            assert leaked(result.output) == []
        assert masked in outputs[-1].output  # the error names the masked URL
        files = [tmp_path / "best.json", tmp_path / "t.csv", *(tmp_path / "report").iterdir()]
        for path in files:
            assert leaked(path.read_bytes().decode(errors="replace")) == [], path
        for path in (tmp_path / "best.json", tmp_path / "report" / "summary.json"):
            assert json.loads(path.read_text())["storage"] == masked

        study = optuna.load_study(study_name=name, storage=postgres_url)
        stored = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id)]
        for trial in study.get_trials():
            stored += [trial.params, trial.user_attrs, trial.system_attrs]
        assert len(study.get_trials()) == 3
        assert leaked(json.dumps(stored, default=str)) == []
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=postgres_url)


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
