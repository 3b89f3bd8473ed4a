"""Every environment variable hpsearch reads, in one place: its name, what it sets, how it is read.

All are named ``HPSEARCH_<WHAT>``, but for Optuna's own ``OPTUNA_STORAGE``, read after
``HPSEARCH_STORAGE`` as the ``optuna`` command reads it. A command-line option, where there is
one, wins over its variable. A malformed value is a one-line error naming the variable, raised
by the code that needs the value, before anything starts.
"""

from __future__ import annotations

import os

from hpsearch.errors import StorageError, UsageError

STORAGE = "HPSEARCH_STORAGE"  # the database URL (--storage); default sqlite:///hpsearch.db
OPTUNA_STORAGE = "OPTUNA_STORAGE"  # Optuna's variable for it: used when STORAGE is unset
DATA_DIR = "HPSEARCH_DATA_DIR"  # where the TREC files are (--data-dir)
TREC_URL = "HPSEARCH_TREC_URL"  # a mirror of the TREC files: a base URL, file names appended
ARTIFACTS = "HPSEARCH_ARTIFACTS"  # the trained-model store, a directory (--artifacts)
KEEP_MODELS = "HPSEARCH_KEEP_MODELS"  # how many of a study's best trials keep their model
STUDIES_DIR = "HPSEARCH_STUDIES_DIR"  # where study files are looked up by name (--studies-dir)
DB_RETRY_SECONDS = "HPSEARCH_DB_RETRY_SECONDS"  # how long a worker waits out a lost database
HEARTBEAT_INTERVAL = "HPSEARCH_HEARTBEAT_INTERVAL"  # seconds between a running trial's beats
GRACE_PERIOD = "HPSEARCH_GRACE_PERIOD"  # silence after which a running trial counts as dead
# The dashboard's credentials: from the environment or a file, never the command line (where
# ps and the shell history would show them). The *_FILE variables suit docker secrets.
DASHBOARD_USER = "HPSEARCH_DASHBOARD_USER"  # with DASHBOARD_PASSWORD: HTTP basic auth
DASHBOARD_PASSWORD = "HPSEARCH_DASHBOARD_PASSWORD"
DASHBOARD_PASSWORD_FILE = "HPSEARCH_DASHBOARD_PASSWORD_FILE"
DASHBOARD_TOKEN = "HPSEARCH_DASHBOARD_TOKEN"  # a bearer token, for scripts and proxies
DASHBOARD_TOKEN_FILE = "HPSEARCH_DASHBOARD_TOKEN_FILE"


def text(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def storage_url() -> tuple[str, str] | None:
    """The database URL the environment sets and the variable that set it: $HPSEARCH_STORAGE,
    else $OPTUNA_STORAGE (so a shell set up for ``optuna`` and optuna-dashboard finds the same
    database); None when neither is set."""
    for name in (STORAGE, OPTUNA_STORAGE):
        if (value := text(name)) is not None:
            return name, value
    return None


def whole_seconds(name: str) -> int | None:
    """A positive whole number of seconds, or None when unset."""
    value = text(name)
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise StorageError(
            f"environment: {name} ({value!r}) must be a positive whole number of seconds"
        )
    return seconds


def seconds(name: str, default: float) -> float:
    """A finite number of seconds >= 0, or ``default`` when unset."""
    value = text(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also rejects nan; inf waits for ever
        raise StorageError(f"environment: {name} ({value!r}) must be a number of seconds >= 0")
    return number


def count(name: str, default: int) -> int:
    """A whole number >= 0, or ``default`` when unset."""
    value = text(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise UsageError(f"environment: {name} ({value!r}) must be a whole number >= 0")
    return number
