"""Shared fixtures: the TREC data directory and the database servers.

Database tests never skip in CI: with CI=true an unreachable server is a failure, so a broken
CI machine cannot pass by running nothing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TREC = REPO.parent / "shared" / "data" / "trec"


@pytest.fixture(scope="session")
def trec_dir() -> Path:
    """The real TREC files: $HPSEARCH_TEST_DATA_DIR, ../shared/data/trec, or a download."""
    env = os.environ.get("HPSEARCH_TEST_DATA_DIR")
    if env:
        return Path(env)
    if (SHARED_TREC / "train_5500.label").exists():
        return SHARED_TREC
    from hpsearch.data import ensure_data

    return ensure_data(None)


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
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must run the {what} tests", pytrace=False)
        pytest.skip(message)
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
