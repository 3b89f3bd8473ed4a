"""The SQL database shared by every worker: opening Optuna's storage on it.

Workers in several processes, possibly on several machines, share one database through
Optuna's ``RDBStorage``. This module opens the storage with settings that survive that
concurrency (SQLite in WAL mode with a long busy timeout; pre-ping, recycling and connect
timeouts for servers; heartbeats for crashed trials), checks a database before a study is
created on it, and fails the trials of workers that died before their first heartbeat.
URLs and their passwords are handled in ``_url``, the process's one engine per database in
``_handle``, the budget lock in ``_locks``; the package's ``__init__`` is the public face of
all four.

Passwords never reach a message: every error is masked with ``mask_url`` and ``scrub``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models as optuna_models
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.engine import make_url

from hpsearch import settings
from hpsearch.errors import StorageError
from hpsearch.storage._handle import DEFAULT_CONNECT_TIMEOUT, Database, database
from hpsearch.storage._locks import db_lock
from hpsearch.storage._url import (
    SQLITE_BUSY_TIMEOUT,
    error_reason,
    failure,
    mask_url,
    resolve_url,
    sqlite_path,
)

DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds; Optuna wants whole seconds
GRACE_FACTOR = 3  # default grace = 3 intervals: one missed beat is not a dead worker
MAX_RETRY = 3  # a trial whose worker died is re-queued at most this many times
INIT_LOCK_TIMEOUT = 120.0  # creating Optuna's tables takes well under a second

# What a database's driver, SQLAlchemy or Optuna raise when the database fails a statement.
DB_ERRORS = (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, sqlite3.Error)

_logger = logging.getLogger(__name__)


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's storage with a heartbeat that survives a lost connection.

    Optuna beats from a thread that dies at its first exception; the trial then looks dead
    and another worker fails it and runs it again while this one is still training it.
    """

    _beat_failing = False

    def __init__(
        self,
        db: Database,
        *,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: RetryStaleTrial | None = None,
    ) -> None:
        """``RDBStorage.__init__`` on the process's engine instead of one of its own: Optuna
        takes a URL and creates an engine, with no way to hand it one. The same attributes
        and the same steps (tables created, schema version checked) otherwise."""
        from optuna.storages._rdb.storage import _VersionManager

        self.engine_kwargs = db.engine_kwargs
        self.url = db.url
        self.skip_compatibility_check = False
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self.failed_trial_callback = heartbeat_stale_trial_callback
        self.engine = db.engine
        self.scoped_session = orm.scoped_session(orm.sessionmaker(bind=self.engine))
        optuna_models.BaseModel.metadata.create_all(self.engine)
        self._version_manager = _VersionManager(self.url, self.engine, self.scoped_session)
        self._version_manager.check_table_schema_compatibility()

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except DB_ERRORS as exc:
            if not self._beat_failing:  # once per outage, not once a second
                url = str(self.url)
                _logger.warning(
                    "heartbeat of a running trial (id %d in the database) not recorded, "
                    "retrying: %s",
                    trial_id,
                    error_reason(url, exc),
                )
            self._beat_failing = True
        else:
            self._beat_failing = False

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attributes in one transaction: Optuna commits each attribute on
        its own, and a commit is a round trip plus a log flush on a database server."""
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            for key, value in attrs.items():
                self._set_trial_attr_without_commit(
                    session, optuna_models.TrialUserAttributeModel, trial_id, key, value
                )


def create_study(
    storage: optuna.storages.BaseStorage, name: str, user_attrs: dict[str, Any]
) -> None:
    """Create a study that maximizes one value, with its user attributes in the same
    transaction on hpsearch's storage: a study that exists never lacks them (a full disk
    between two commits would leave one that reads as another program's)."""
    backend = _backend(storage)
    if not isinstance(backend, _RDBStorage):
        study_id = storage.create_new_study([StudyDirection.MAXIMIZE], name)
        for key, value in user_attrs.items():
            storage.set_study_user_attr(study_id, key, value)
        return
    from optuna.storages._rdb.storage import _create_scoped_session

    direction = optuna_models.StudyDirectionModel(objective=0, direction=StudyDirection.MAXIMIZE)
    try:
        with _create_scoped_session(backend.scoped_session) as session:
            study = optuna_models.StudyModel(study_name=name, directions=[direction])
            session.add(study)
            session.flush()  # assigns study_id
            for key, value in user_attrs.items():
                session.add(
                    optuna_models.StudyUserAttributeModel(
                        study_id=study.study_id, key=key, value_json=json.dumps(value)
                    )
                )
    except sa_exc.IntegrityError:
        raise optuna.exceptions.DuplicatedStudyError(f"study {name!r} exists") from None


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Queue a dead worker's trial again, as Optuna does, but as a fresh entry of the queue.

    Optuna's callback copies every user attribute into the WAITING copy: it would name the
    dead worker and host until another worker takes it, and would carry an ``error`` or
    ``epochs_run`` of the dead run into a retry that then completes. Only the attributes that
    describe the queue entry (KEPT_ON_RETRY) go across; the objective records the rest anew.
    """

    KEPT_ON_RETRY = frozenset({"enqueued"})

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        queued = copy.copy(trial)
        queued.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in self.KEPT_ON_RETRY}
        super().__call__(study, queued)


def _backend(storage: Any) -> Any:
    """The storage under Optuna's cache (``_CachedStorage`` wraps the RDB one), or itself."""
    return getattr(storage, "_backend", storage)


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for each of ``attrs``, in one transaction on hpsearch's
    database storage (one round trip instead of one per attribute), one by one elsewhere."""
    backend = _backend(trial.storage)
    if not isinstance(backend, _RDBStorage) or len(attrs) < 2:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    backend.set_trial_user_attrs(trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # as Trial.set_user_attr does


def open_storage(
    url: str, *, heartbeat: bool = True, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> optuna.storages.RDBStorage:
    """Open (creating tables if needed) the Optuna storage behind ``url``, on the process's
    engine for it (``database``).

    Heartbeats (interval $HPSEARCH_HEARTBEAT_INTERVAL, grace $HPSEARCH_GRACE_PERIOD) only
    beat during ``Study.optimize``; a trial left RUNNING by a dead worker is failed and
    re-queued up to MAX_RETRY times when the next trial is created.
    """
    db = database(url, connect_timeout)
    beats = heartbeat_settings() if heartbeat else None
    _check(db)
    if db.path is not None:
        check_not_foreign(db.path, db.url)  # before the schema lock's file is made beside it
    extra: dict[str, Any] = {}
    if beats is not None:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" in Optuna 5; users cannot act on the warning.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = RetryStaleTrial(max_retry=MAX_RETRY)
        extra = {
            "heartbeat_interval": beats[0],
            "grace_period": beats[1],
            "heartbeat_stale_trial_callback": callback,
        }
    try:
        # Workers starting together would race to create the same tables.
        with db_lock(db.url, None, INIT_LOCK_TIMEOUT, "the schema-creation lock"):
            if db.path is not None:
                _enable_wal(db.path, db.url)
            return _RDBStorage(db, **extra)
    except DB_ERRORS as e:
        raise failure(db.url, e) from None
    except RuntimeError as e:
        if "table schema" not in str(e):  # Optuna's "schema is too old/new" message
            raise
        raise failure(db.url, e) from None


def fail_trials_without_heartbeat(study: optuna.Study) -> int:
    """Fail, and re-queue like a stale trial, every RUNNING trial that started over a grace
    period ago and never recorded a heartbeat; return how many.

    Optuna fails only trials whose last heartbeat is old. A worker that lost the database (or
    was killed) between creating a trial and its first heartbeat leaves a trial that Optuna
    never fails, holding a slot of the budget for ever while the other workers wait on it.
    """
    backend = _backend(study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage) or not backend.heartbeat_interval:
        return 0
    grace = backend.grace_period or 2 * backend.heartbeat_interval
    # datetime_start is the creating worker's clock (stored as naive UTC); a live trial beats
    # within milliseconds of it, so clock skew between machines cannot fail one.
    cutoff = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    cutoff -= datetime.timedelta(seconds=grace)
    # Optuna's own tables, read as its stale-heartbeat check reads them (no public API).
    trials = optuna_models.TrialModel.__table__
    beats = optuna_models.TrialHeartbeatModel.__table__
    query = (
        sa.select(trials.c.trial_id)
        .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
        .where(trials.c.study_id == study._study_id, trials.c.state == TrialState.RUNNING)
        .where(beats.c.trial_id.is_(None), trials.c.datetime_start < cutoff)
    )
    with backend.engine.connect() as conn:
        orphans = list(conn.execute(query).scalars())
    failed = 0
    callback = backend.get_heartbeat_stale_trial_callback()
    for trial_id in orphans:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed += 1
                if callback is not None:
                    callback(study, copy.deepcopy(study._storage.get_trial(trial_id)))
    return failed


def count_states(study: optuna.Study) -> dict[TrialState, int] | None:
    """How many of the study's trials are in each state, by one ``GROUP BY`` query; None
    where the storage is not an RDB (the caller then counts ``study.get_trials()``).

    Workers count before every trial, and ``run``'s live view at every refresh. Through
    Optuna's API that is a ``get_all_trials``: several queries (trials, parameters, values,
    attributes) and a cached copy of every trial, to answer with five numbers. (A worker
    saves less than it seems: Optuna's cache then reads the new trials at the sampler's next
    call instead; benchmarks/storage_overhead.py measures it.)
    """
    backend = _backend(study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    trials = optuna_models.TrialModel.__table__
    query = (
        sa.select(trials.c.state, sa.func.count())
        .where(trials.c.study_id == study._study_id)
        .group_by(trials.c.state)
    )
    with backend.engine.connect() as conn:
        return {TrialState(state): int(n) for state, n in conn.execute(query)}


def heartbeat_settings() -> tuple[int, int]:
    """Return (interval, grace period) in seconds from the environment or the defaults."""
    interval = settings.whole_seconds(settings.HEARTBEAT_INTERVAL) or DEFAULT_HEARTBEAT_INTERVAL
    grace = settings.whole_seconds(settings.GRACE_PERIOD)
    if grace is None:
        return interval, GRACE_FACTOR * interval
    if grace <= interval:
        raise StorageError(
            f"environment: {settings.GRACE_PERIOD} ({grace}) must be > "
            f"{settings.HEARTBEAT_INTERVAL} ({interval}), or live workers' trials would be failed"
        )
    return interval, grace


def check_connection(url: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Raise StorageError with a masked one-line reason unless the database can be used."""
    _check(database(url, connect_timeout))


def _check(db: Database) -> None:
    """Bounded by the connect timeout, even against a server that accepts but never answers;
    a SQLite file is only read (a missing one is not created)."""
    if db.path is not None:
        if not db.path.exists():
            if not os.access(db.path.parent, os.W_OK):
                raise StorageError(
                    f"cannot create {mask_url(db.url)}: {db.path.parent} is not writable"
                )
            return
        try:
            read_only = sqlite3.connect(_read_only(db.path), timeout=SQLITE_BUSY_TIMEOUT, uri=True)
            with contextlib.closing(read_only) as con:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise failure(db.url, e) from None
        return
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa_exc.SQLAlchemyError as e:
        raise failure(db.url, e) from None


def _read_only(path: Path) -> str:
    """A URI that opens the SQLite file without writing to it, or beside it."""
    return f"{path.resolve().as_uri()}?mode=ro"


# Optuna's tables (Optuna 3-5; alembic's own table as well). A database holding any other
# table, or a `studies` table of other columns, belongs to another program. Not "all of
# them present": another worker may be creating the schema this very moment.
_OPTUNA_TABLES = frozenset(
    {
        "alembic_version",
        "studies",
        "study_directions",
        "study_system_attributes",
        "study_user_attributes",
        "trial_heartbeats",
        "trial_intermediate_values",
        "trial_params",
        "trial_system_attributes",
        "trial_user_attributes",
        "trial_values",
        "trials",
        "version_info",
    }
)


def sqlite_tables(path: Path) -> dict[str, set[str]] | None:
    """The tables of the SQLite file at ``path`` and their columns, read without writing
    (None: no such file, or not a SQLite database, which opening it reports)."""
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(_read_only(path), uri=True)) as db:
            names = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            return {
                name: {row[1] for row in db.execute(f'PRAGMA table_info("{name}")')}
                for name in names
            }
    except sqlite3.Error:
        return None


def sqlite_study_attrs(url: str, study_name: str) -> set[str] | None:
    """The names of a study's user attributes in a SQLite database, read without writing
    to the file or beside it (None: not a SQLite file that holds this study)."""
    path = sqlite_path(make_url(resolve_url(url)))
    if path is None or not path.is_file():
        return None
    query = (
        "SELECT a.key FROM studies s LEFT JOIN study_user_attributes a "
        "ON a.study_id = s.study_id WHERE s.study_name = ?"
    )
    try:
        read_only = sqlite3.connect(_read_only(path), timeout=SQLITE_BUSY_TIMEOUT, uri=True)
        with contextlib.closing(read_only) as db:
            rows = db.execute(query, (study_name,)).fetchall()
    except sqlite3.Error:
        return None  # no such tables, or no database: opening it reports what it is
    return {key for (key,) in rows if key is not None} if rows else None


def check_not_foreign(path: Path, url: str) -> dict[str, set[str]] | None:
    """Refuse a SQLite database another program made: Optuna would write its tables into it
    (or fail on one of the same name, such as ``studies``, with a traceback). Returns
    ``sqlite_tables(path)``."""
    tables = sqlite_tables(path)
    other = sorted(name for name in tables or {} if name not in _OPTUNA_TABLES)
    if tables and "studies" in tables and "study_id" not in tables["studies"]:
        other = sorted({*other, "studies"})
    if other:
        shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
        raise StorageError(
            f"{mask_url(url)}: a SQLite database of another program (tables not Optuna's: "
            f"{shown}); give hpsearch's study database, or a new file"
        )
    return tables


def _enable_wal(path: Path, url: str) -> None:
    # Persistent in the file: readers (optuna-dashboard) then never block writers. Set it
    # before Optuna's first connection so no connection ever runs in rollback-journal mode.
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT)) as con:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        _logger.warning("%s: journal_mode is %s, not WAL; expect lock waits", mask_url(url), mode)
