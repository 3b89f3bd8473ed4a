"""Shared fixtures: the TREC data directory, the database servers, and the working directories
and environments that tests in both tests/unit/ and tests/system/ start from.

Database tests never skip in CI: with CI=true an unreachable server is a failure, so a broken
CI machine cannot pass by running nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.network import closed_port

REPO = Path(__file__).resolve().parents[1]
SHARED_TREC = REPO.parent / "shared" / "data" / "trec"
# The one variable that points the tests at the TREC files (never committed to the repo).
TEST_DATA_ENV = "HPSEARCH_TEST_DATA_DIR"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _missing(message: str) -> None:
    """Skip locally; in CI the data are provided, so their absence is a failure."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def trec_dir() -> Path:
    """The real TREC files: $HPSEARCH_TEST_DATA_DIR, ../shared/data/trec, or the user's copy.

    Nothing is downloaded: the test machines are offline, and a test that needs the files
    says which variable to set instead of erroring.
    """
    from hpsearch.errors import DataError
    from hpsearch.training._data import TRAIN_FILE, ensure_data

    env = os.environ.get(TEST_DATA_ENV)
    candidates = [Path(env)] if env else [SHARED_TREC, None]
    for candidate in candidates:
        if candidate is not None and not (candidate / TRAIN_FILE).is_file():
            continue
        try:
            return ensure_data(candidate, download=False)
        except DataError:
            continue
    where = f"{TEST_DATA_ENV}={env}" if env else f"{SHARED_TREC} or the hpsearch data directory"
    _missing(f"TREC files not found in {where}; set {TEST_DATA_ENV} to a directory holding them")
    raise AssertionError("unreachable")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _server_url(env_name: str, default: str, host: str, port: int, what: str) -> str:
    url = os.environ.get(env_name, default)
    if not _reachable(host, port):
        message = f"{what} is not reachable on {host}:{port}"
        _missing(f"{message}; CI must run the {what} tests" if in_ci() else message)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _server_url(
        "HPSEARCH_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "127.0.0.1",
        5432,
        "PostgreSQL",
    )


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return _server_url(
        "HPSEARCH_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
        "127.0.0.1",
        3306,
        "MySQL/MariaDB",
    )


# --- working directories and environments (each used by a unit and a system test file) --------


@pytest.fixture
def cli(tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in an empty working directory (the SQLite default lands there); test_cli.py."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("HPSEARCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the messages checked below
    return CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, trec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, no HPSEARCH_* settings but the data directory, and no
    download possible; every test of test_hostile_input.py uses it."""
    for name in (
        "HPSEARCH_STORAGE",
        "OPTUNA_STORAGE",
        "HPSEARCH_STUDIES_DIR",
        "HPSEARCH_DB_RETRY_SECONDS",
        "HPSEARCH_HEARTBEAT_INTERVAL",
        "HPSEARCH_GRACE_PERIOD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def clean_storage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No storage URL or heartbeat settings from the environment; every test of
    test_storage.py uses it."""
    from hpsearch import settings

    for name in (
        settings.STORAGE,
        settings.OPTUNA_STORAGE,
        settings.HEARTBEAT_INTERVAL,
        settings.GRACE_PERIOD,
    ):
        monkeypatch.delenv(name, raising=False)
