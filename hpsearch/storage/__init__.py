"""The SQL database every worker shares: its URL (parsed once, secrets masked), Optuna's
storage opened on it, and the cross-process budget lock.

Passwords never reach a message: every error is masked with ``mask_url`` and ``scrub``.
"""

from hpsearch.errors import StorageError
from hpsearch.storage._database import (
    DB_ERRORS,
    RetryStaleTrial,
    check_connection,
    check_not_foreign,
    count_states,
    create_study,
    fail_trials_without_heartbeat,
    heartbeat_settings,
    open_storage,
    set_user_attrs,
    sqlite_study_attrs,
    sqlite_tables,
)
from hpsearch.storage._handle import Database, database
from hpsearch.storage._locks import budget_lock, db_lock
from hpsearch.storage._url import (
    DEFAULT_URL,
    SQLITE_BUSY_TIMEOUT,
    SUPPORTED,
    DatabaseLost,
    DatabaseUnavailable,
    connect_args,
    disk_full,
    error_reason,
    failure,
    mask_url,
    missing_driver,
    resolve_url,
    scrub,
    sqlite_path,
)

__all__ = [
    "DB_ERRORS",
    "DEFAULT_URL",
    "SQLITE_BUSY_TIMEOUT",
    "SUPPORTED",
    "Database",
    "DatabaseLost",
    "DatabaseUnavailable",
    "RetryStaleTrial",
    "StorageError",
    "budget_lock",
    "check_connection",
    "check_not_foreign",
    "connect_args",
    "count_states",
    "create_study",
    "database",
    "db_lock",
    "disk_full",
    "error_reason",
    "fail_trials_without_heartbeat",
    "failure",
    "heartbeat_settings",
    "mask_url",
    "missing_driver",
    "open_storage",
    "resolve_url",
    "scrub",
    "set_user_attrs",
    "sqlite_path",
    "sqlite_study_attrs",
    "sqlite_tables",
]
