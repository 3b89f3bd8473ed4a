"""The dashboard in process: its WSGI app, and the errors `serve` gives before it listens. The
served dashboard read while workers write is in tests/system/test_dashboard.py."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from typer.testing import CliRunner

from hpsearch import storage
from hpsearch.cli import _dashboard as dashboard
from hpsearch.cli import app
from hpsearch.errors import StorageError, UsageError
from tests.helpers.network import free_port


def test_make_app_answers_the_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    study = optuna.create_study(study_name="s", storage=storage.open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    app = dashboard.make_app(url)
    environ: dict[str, Any] = {"PATH_INFO": "/api/studies", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(code)

    body = b"".join(app(environ, start_response))
    assert status == ["200 OK"]
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "s"


def test_missing_sqlite_database_is_refused_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(StorageError, match="no such database"):
        dashboard.serve(url, port=free_port())
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_does_not_resolve_is_one_line_before_the_banner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    optuna.create_study(storage=url, study_name="d")
    with pytest.raises(UsageError, match=r"^--host nosuch\.invalid: cannot resolve it: "):
        dashboard.serve(url, host="nosuch.invalid", port=free_port())
    assert capsys.readouterr().out == ""


def test_a_port_in_use_is_one_line_before_the_banner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to print the banner and "Listening on ..." first, then the error.
    url = f"sqlite:///{tmp_path / 'd.db'}"
    optuna.create_study(storage=url, study_name="d")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=rf"^--host 127\.0\.0\.1 --port {port}: cannot listen"):
            dashboard.serve(url, host="127.0.0.1", port=port)
    assert capsys.readouterr().out == ""


def test_a_port_out_of_range_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["dashboard", "--port", "99999"])
    assert result.exit_code == 2
    assert "--port" in result.output and "65535" in result.output


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080/dashboard"),
        ("0.0.0.0", "http://127.0.0.1:8080/dashboard"),
        ("::", "http://[::1]:8080/dashboard"),
        ("example.org", "http://example.org:8080/dashboard"),
    ],
)
def test_browse_url(host: str, expected: str) -> None:
    assert dashboard.browse_url(host, 8080) == expected
