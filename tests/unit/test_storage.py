"""The study database: URLs and masking (hpsearch.dburl), opening Optuna's storage, and the
cross-process budget lock (hpsearch.locks), all through the names hpsearch.storage exports."""

from __future__ import annotations

import importlib.util
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import optuna
import pytest
import sqlalchemy
from typer.testing import CliRunner

from hpsearch import cli, settings, storage
from hpsearch.errors import StorageError
from hpsearch.storage import _locks as locks
from tests.helpers.storage import ENCODED, SECRET

pytestmark = pytest.mark.usefixtures("clean_storage_env")


def _leaks(text: str) -> bool:
    return any(form in text for form in (SECRET, ENCODED, quote_plus(SECRET), "ss:w/rd"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- URLs ---------------------------------------------------------------------------------


def test_resolve_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage.resolve_url(None) == storage.DEFAULT_URL == "sqlite:///hpsearch.db"
    monkeypatch.setenv(settings.STORAGE, "postgresql://u@envhost/db")
    assert storage.resolve_url(None) == "postgresql+psycopg://u@envhost/db"
    assert storage.resolve_url("sqlite:///arg.db") == "sqlite:///arg.db"
    monkeypatch.setenv(settings.STORAGE, "  ")  # blank means unset
    assert storage.resolve_url(None) == storage.DEFAULT_URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        (f"postgres://u:{ENCODED}@h/db", f"postgresql+psycopg://u:{ENCODED}@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("mysql://root@h:3306/t?charset=utf8mb4", "mysql+pymysql://root@h:3306/t?charset=utf8mb4"),
        ("mysql+pymysql://root@h/t", "mysql+pymysql://root@h/t"),
        (" sqlite:////abs/x.db ", "sqlite:////abs/x.db"),
        ("sqlite:////abs/we@x:y.db", "sqlite:////abs/we@x:y.db"),  # a path, not a password
        (
            "postgresql://u@h/db?application_name=a%40b",
            "postgresql+psycopg://u@h/db?application_name=a%40b",
        ),
    ],
)
def test_resolve_url_normalises(url: str, expected: str) -> None:
    assert storage.resolve_url(url) == expected
    assert storage.resolve_url(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "the storage URL is empty"),
        ("hpsearch.db", "malformed"),
        (f"postgresql://u:{SECRET}@h/db", "percent-encode"),
        ("redis://localhost:6379", "unsupported database 'redis'"),
        (f"oracle://scott:{ENCODED}@h/orcl", "unsupported database 'oracle'"),
        ("postgress://h/db", "did you mean 'postgresql'"),
        ("postgresql+asyncpg://h/db", "unsupported driver 'asyncpg'"),
        ("sqlite://somehost/x.db", "no host"),
        ("postgresql:///db", "no host"),
        ("mysql://root@h", "no database name"),
    ],
)
def test_resolve_url_rejects(url: str, fragment: str) -> None:
    with pytest.raises(StorageError) as info:
        storage.resolve_url(url)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert not _leaks(message)
    if "malformed" in fragment or "unsupported database" in fragment:
        assert "sqlite:///" in message and "postgresql://" in message and "mysql://" in message


# An unencoded '@' (or '/' in the user name) shifts SQLAlchemy's split: the rest of the
# password became the host, and the driver's error showed it. A '/', '?' or '#' in the
# password could start a path or query as well.
@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "postgresql+psycopg", "mysql+pymysql"])
@pytest.mark.parametrize(
    ("userinfo", "masked"),
    [
        ("u:pa@ssW0rdX", "u:***@"),
        ("u:pa@ssW0rdX@more", "u:***@"),
        ("u:@ssW0rdX", "u:***@"),
        ("u:pa@ssW0rdX/x", "u:***@"),
        ("u:pa@ssW0rdX?x=y", "u:***@"),
        ("us@ssW0rdX:pw", "us@ssW0rdX:***@"),  # the user name: no secret, but misread
        ("u/ssW0rdX:pw", "u/ssW0rdX:***@"),
        ("u:pa/ssW0rdX", "u:***@"),
        ("u:pa?ssW0rdX", "u:***@"),
        ("u:pa#ssW0rdX", "u:***@"),
    ],
)
def test_resolve_url_rejects_unencoded_userinfo(scheme: str, userinfo: str, masked: str) -> None:
    url = f"{scheme}://{userinfo}@127.0.0.1:5432/test"
    with pytest.raises(StorageError) as info:
        storage.resolve_url(url)
    message = str(info.value)
    assert (
        f"storage URL '{scheme}://{masked}127.0.0.1:5432/test': the password or user name"
        in message
    )
    assert "must be percent-encoded (@ as %40," in message and "\n" not in message
    if userinfo.startswith("u:"):
        assert "ssW0rdX" not in message and "pa@" not in message
    assert "ssW0rdX" not in storage.mask_url(url).replace(masked, "")
    assert "pw" not in storage.mask_url(url)
    encoded = f"{scheme}://u:{quote('pa@ssW0rdX/?#:%', safe='')}@127.0.0.1:5432/test"
    assert storage.resolve_url(encoded).endswith(encoded.split("://", 1)[1])


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///:memory:",
        "sqlite:///file::memory:?cache=shared&uri=true",
        "sqlite:///file:x.db?mode=memory&uri=true",
        "sqlite:///file:x.db?vfs=memdb&uri=true",
    ],
)
def test_resolve_url_refuses_in_memory_sqlite(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every worker process, and every later command, would open its own empty database.
    for call in (lambda: storage.resolve_url(url), lambda: storage.open_storage(url)):
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value) == (
            f"storage URL {url!r}: an in-memory SQLite database vanishes with the process, and "
            "the workers and later commands share the database; give a file, e.g. "
            "sqlite:///hpsearch.db"
        )
    monkeypatch.setenv(settings.STORAGE, url)
    with pytest.raises(StorageError, match=f"^{settings.STORAGE}: storage URL .*in-memory"):
        storage.resolve_url(None)


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_every_command_refuses_in_memory_sqlite(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trec_dir: Path
) -> None:
    # `run` used to exit 0 with every trial lost: each worker had its own empty database.
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(trec_dir))
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "name: tiny\nconfig: {hidden_dim: 8, embedding_dim: 8, batch_size: 256, threads: 1}\n"
        "space: {lr: {low: 0.001, high: 0.01, log: true}}\nbudget: {trials: 2, epochs: 1}\n"
    )
    expected = (
        f"storage URL {url!r}: an in-memory SQLite database vanishes with the process, "
        "and the workers and later commands share the database; give a file, e.g. "
        "sqlite:///hpsearch.db\n"
    )
    commands = [
        ["studies"],
        ["run", "-s", str(study), "--workers", "2"],
        ["worker", "-s", str(study)],
        ["export", "-s", "tiny"],
        ["best", "-s", "tiny"],
        ["evaluate", "-s", "tiny", "--seeds", "1"],
        ["report", "-s", "tiny"],
        ["compare", "tiny", "--no-evaluate"],
        ["dashboard", "--port", str(_closed_port())],
    ]
    for args in commands:
        for storage_args, env, source in (
            (["--storage", url], {}, ""),
            ([], {settings.STORAGE: url}, f"{settings.STORAGE}: "),
            ([], {settings.STORAGE: "", settings.OPTUNA_STORAGE: url}, "OPTUNA_STORAGE: "),
        ):
            result = CliRunner(env=env).invoke(cli.app, [*args, *storage_args])
            assert result.exit_code == 2, (args, result.output, result.exception)
            assert result.stderr == f"error: {source}{expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing written


def test_resolve_url_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.STORAGE, "redis://x")
    with pytest.raises(StorageError, match=settings.STORAGE):
        storage.resolve_url(None)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://user:{ENCODED}@host:5432/db",
        f"mysql://user:{quote_plus(SECRET)}@host/db?charset=utf8mb4",
        f"postgresql://user:{SECRET}@host/db",  # not encoded: unparseable
        "postgresql://user:p@ss@host/db",  # not encoded: parses, wrongly
        f"nonsense://user:{SECRET}@",
        f"postgresql://user:{ENCODED}@h/db?application_name=x@y&password={SECRET}",
        f"postgresql://user:{ENCODED}@h/db?password={SECRET}&password={quote_plus(SECRET)}",
    ],
)
def test_mask_url_and_scrub_hide_the_password(url: str) -> None:
    masked = storage.mask_url(url)
    assert "user:***" in masked  # and, where the URL is ambiguous, perhaps what follows
    assert not _leaks(masked) and "p@ss" not in masked
    message = f"failed for {SECRET} / {ENCODED} / {quote_plus(SECRET)} ({url})"
    scrubbed = storage.scrub(message, url)
    assert not _leaks(scrubbed) and "p@ss" not in scrubbed
    assert scrubbed.startswith("failed for ***")


# Values of the parameters libpq marks secret (password, sslpassword, oauth_client_secret),
# its SCRAM keys, pymysql's and mysqlclient's (password, passwd, ssl_key_password).
SECRET_PARAMS = [
    ("postgresql", "password"),
    ("postgresql", "sslpassword"),
    ("postgresql", "oauth_client_secret"),
    ("postgresql", "scram_client_key"),
    ("postgresql", "scram_server_key"),
    ("postgresql+psycopg2", "PassWord"),
    ("mysql", "password"),
    ("mysql", "passwd"),
    ("mysql", "ssl_key_password"),
    ("mysql+mysqldb", "passwd"),
]


@pytest.mark.parametrize(("scheme", "key"), SECRET_PARAMS)
@pytest.mark.parametrize("userinfo", ["u:S3cretPW@", f"u:{ENCODED}@", "u@", ""])
@pytest.mark.parametrize("encode", [quote, quote_plus, lambda s: "S3cretQP"])
def test_mask_url_and_scrub_hide_secret_query_parameters(
    scheme: str, key: str, userinfo: str, encode: Callable[[str], str]
) -> None:
    value = encode(f"S3cretQP{SECRET}")
    plain = unquote_plus(value)
    url = (
        f"{scheme}://{userinfo}127.0.0.1:5432/test?sslmode=require&{key}={value}"
        "&options=-c%20synchronous_commit%3Doff&sslkey=/k.pem&passfile=/p"
    )
    masked = storage.mask_url(url)
    prefix = f"{scheme}://{userinfo.replace('S3cretPW', '***').replace(ENCODED, '***')}"
    assert masked == (
        f"{prefix}127.0.0.1:5432/test?sslmode=require&{key}=***"
        "&options=-c%20synchronous_commit%3Doff&sslkey=/k.pem&passfile=/p"
    )
    assert storage.mask_url(masked) == masked
    message = f"failed: {plain} / {value} / {quote(plain, safe='')} / {quote_plus(plain)} ({url})"
    scrubbed = storage.scrub(message, url)
    assert "S3cret" not in scrubbed and not _leaks(scrubbed), scrubbed
    assert scrubbed.startswith("failed: *** / *** / *** / ***")
    assert "sslmode=require" in scrubbed and "synchronous_commit%3Doff" in scrubbed


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h:5432/db?password=S3cr@etQP&sslmode=require",
        "postgresql://u:pw@h/db?application_name=x@y&password=S3cr@etQP",
        "postgresql://u:pw@h/db?password=S3cr@etQP&application_name=x@y",
        "postgresql://u:S3cr@etQP@h/db?password=S3cr@etQP",
        "postgresql://u:S3cr?password=etQP@h/db",
        "mysql://u@h:3306/db?passwd=S3cr@etQP",
        "mysql://u:S3cr@etQP@h/db?ssl_key_password=S3cr@etQP&charset=utf8mb4",
    ],
)
def test_an_unencoded_at_sign_never_shows_a_piece_of_a_secret(url: str) -> None:
    # An '@' in a query value reads as the end of a password too: each reading is masked.
    for text in (storage.mask_url(url), storage.scrub(f"x {url}", url)):
        assert "S3cr" not in text and "etQP" not in text, text
    with pytest.raises(StorageError, match="must be percent-encoded") as info:
        storage.resolve_url(url)
    assert "S3cr" not in str(info.value) and "etQP" not in str(info.value)


def test_mask_url_keeps_urls_without_password_and_never_raises() -> None:
    for url in ("sqlite:///hpsearch.db", "sqlite:///:memory:", "postgresql://u@h/db"):
        assert storage.mask_url(url) == url
        assert storage.scrub(f"x {url}", url) == f"x {url}"
    for junk in ("", "::::", "a://b:c@", "%zz://@@@"):
        assert isinstance(storage.mask_url(junk), str)
    assert storage.mask_url("mysql://u:p@h:notaport/db") == "mysql://u:***@h:notaport/db"
    for url in (
        "postgresql://u@h/db?sslmode=require&options=-c%20synchronous_commit%3Doff",
        "postgresql://h/db?password=&passfile=/x&sslkey=k&sslcert=c&sslrootcert=r",
        "mysql://root@h/t?charset=utf8mb4&ssl_key=/k.pem&password",
    ):
        assert storage.mask_url(url) == url
        assert storage.scrub(f"x {url}", url) == f"x {url}"


# --- SQLite -----------------------------------------------------------------------------


def test_open_sqlite_uses_wal_and_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default URL is relative to the working directory
    monkeypatch.setenv(settings.HEARTBEAT_INTERVAL, "2")
    monkeypatch.setenv(settings.GRACE_PERIOD, "7")
    rdb = storage.open_storage(storage.DEFAULT_URL)
    with sqlite3.connect(tmp_path / "hpsearch.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert rdb.heartbeat_interval == 2 and rdb.grace_period == 7
    assert isinstance(
        rdb.heartbeat_stale_trial_callback, optuna.storages.RetryHeartbeatStaleTrialCallback
    )
    assert rdb.engine_kwargs["connect_args"]["timeout"] >= 30
    with rdb.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    study = optuna.create_study(storage=rdb, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2

    monkeypatch.delenv(settings.GRACE_PERIOD)
    assert storage.open_storage(storage.DEFAULT_URL).grace_period == 6  # 3 intervals
    plain = storage.open_storage(storage.DEFAULT_URL, heartbeat=False)
    assert plain.heartbeat_interval is None and plain.get_heartbeat_interval() is None


def test_server_connections_have_client_side_time_limits() -> None:
    # A server behind a network that drops packets would hold a query for hours otherwise.
    pg = storage.connect_args(sqlalchemy.engine.make_url("postgresql+psycopg://u@h/db"), 10)
    assert pg["connect_timeout"] == 10 and pg["keepalives"] == 1
    assert pg["keepalives_idle"] + pg["keepalives_interval"] * pg["keepalives_count"] <= 30
    assert pg["tcp_user_timeout"] == 30_000  # milliseconds
    my = storage.connect_args(sqlalchemy.engine.make_url("mysql+pymysql://u@h/db"), 10)
    assert my == {"connect_timeout": 10, "read_timeout": 60, "write_timeout": 60}
    assert my["read_timeout"] > locks.MYSQL_LOCK_SLICE  # a lock wait is no lost server
    # The URL's own settings win.
    url = "postgresql+psycopg://u@h/db?tcp_user_timeout=5000&keepalives=0"
    mine = storage.connect_args(sqlalchemy.engine.make_url(url), 10)
    assert "tcp_user_timeout" not in mine and "keepalives" not in mine


@pytest.fixture
def engines_made(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every SQLAlchemy engine this process makes from now on (Optuna's included)."""
    made: list[object] = []
    init = sqlalchemy.engine.Engine.__init__

    def counted(self: sqlalchemy.engine.Engine, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.engine.Engine, "__init__", counted)
    return made


def test_one_engine_per_database_and_process(tmp_path: Path, engines_made: list[object]) -> None:
    url = f"sqlite:///{tmp_path}/one.db"
    storage.check_connection(url)
    first = storage.open_storage(url)
    with storage.budget_lock(url, "s"):
        again = storage.open_storage(url, heartbeat=False)
    storage.check_connection(url)
    assert len(engines_made) == 1
    assert first.engine is again.engine is storage.database(url).engine
    # A server: the connection check, Optuna's storage and the lock (each refused here).
    server = f"postgresql://u@127.0.0.1:{_closed_port()}/db"
    for call in (
        storage.check_connection,
        storage.open_storage,
        lambda u: storage.budget_lock(u, "s", timeout=1).__enter__(),
    ):
        with pytest.raises(StorageError, match="cannot connect to"):
            call(server)
    assert len(engines_made) == 2


def test_storage_on_a_given_engine_is_optunas_storage(tmp_path: Path) -> None:
    # RDBStorage.__init__ is redone on hpsearch's engine: it must set what Optuna's sets.
    url = f"sqlite:///{tmp_path}/same.db"
    ours = storage.open_storage(url)
    plain = optuna.storages.RDBStorage(url)
    assert set(vars(ours)) == set(vars(plain))
    assert ours.url == plain.url and ours.skip_compatibility_check is False
    assert ours.heartbeat_interval and ours.grace_period
    assert ours.failed_trial_callback is ours.heartbeat_stale_trial_callback is not None
    assert optuna.create_study(storage=ours, study_name="x").study_name == "x"


@pytest.mark.parametrize(
    ("interval", "grace", "fragment"),
    [
        ("ten", None, "HPSEARCH_HEARTBEAT_INTERVAL ('ten')"),
        ("0", None, "HPSEARCH_HEARTBEAT_INTERVAL ('0')"),
        (None, "1.5", "HPSEARCH_GRACE_PERIOD ('1.5')"),
        ("10", "10", "HPSEARCH_GRACE_PERIOD (10) must be > HPSEARCH_HEARTBEAT_INTERVAL (10)"),
    ],
)
def test_heartbeat_environment_is_validated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    interval: str | None,
    grace: str | None,
    fragment: str,
) -> None:
    for name, value in (
        (settings.HEARTBEAT_INTERVAL, interval),
        (settings.GRACE_PERIOD, grace),
    ):
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(StorageError) as info:
        storage.open_storage(f"sqlite:///{tmp_path}/h.db")
    assert fragment in str(info.value)
    assert not (tmp_path / "h.db").exists()  # validated before touching the database


def test_sqlite_bad_paths(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StorageError, match=f"directory {missing} does not exist"):
        storage.open_storage(f"sqlite:///{missing}/x.db")
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_connection(f"sqlite:///{missing}/x.db")
    storage.check_connection(f"sqlite:///{tmp_path}/new.db")
    assert not (tmp_path / "new.db").exists()  # a check creates nothing
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    for check in (storage.check_connection, storage.open_storage):
        with pytest.raises(
            StorageError, match=r"cannot open sqlite:///.*junk\.db: .*not a database"
        ):
            check(f"sqlite:///{tmp_path}/junk.db")


def test_sqlite_open_reader_and_budget_lock_do_not_block_writers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    study = optuna.create_study(study_name="w", storage=storage.open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    # A dashboard mid-read holds a read transaction; without WAL no writer could commit.
    with sqlite3.connect(tmp_path / "w.db", isolation_level=None) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM trials").fetchone()
        with storage.budget_lock(url, "w"):
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            writer.join(timeout=10)
        reader.execute("COMMIT")
    assert not writer.is_alive() and not errors
    assert len(study.trials) == 4


def test_budget_lock_in_memory_sqlite_and_odd_study_names(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="in-memory SQLite database vanishes"):
        storage.budget_lock("sqlite://", "m").__enter__()
    with (
        locks.db_lock("sqlite://", "m", 300, "the lock"),
        pytest.raises(StorageError),
        locks.db_lock("sqlite://", "m", 0.05, "the lock"),
    ):
        pass
    url = f"sqlite:///{tmp_path}/x.db"
    for name in ("a/b", "..", "", "ü" * 100):
        with storage.budget_lock(url, name, timeout=1):
            pass
    assert len(list(tmp_path.glob("x.db.*.lock"))) == 4  # one flat file per study


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_fails_fast_and_masked(scheme: str) -> None:
    url = f"{scheme}://user:{ENCODED}@127.0.0.1:{_closed_port()}/db"
    for call in (storage.open_storage, storage.check_connection):
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            call(url, connect_timeout=2)
        assert time.monotonic() - start < 5
        message = str(info.value)
        assert message.startswith(f"cannot connect to {scheme}+")
        assert "user:***@127.0.0.1" in message and "\n" not in message
        assert not _leaks(message)


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is not None, reason="installed")
def test_missing_driver_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match=r"driver not installed \(psycopg2\).*postgresql://"):
        storage.check_connection(f"postgresql+psycopg2://u:{ENCODED}@127.0.0.1/db")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_retried_trial_is_queued_without_the_dead_runs_attributes() -> None:
    study = optuna.create_study()
    dead = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL,
        params={"lr": 0.01},
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
        user_attrs={"enqueued": True, "worker": "vm-w1", "host": "vm", "error": "x", "seed": 3},
    )
    study.add_trial(dead)
    storage.RetryStaleTrial(max_retry=1)(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.params == {"lr": 0.01} and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs == {"enqueued": True}
    assert study.trials[0].user_attrs["worker"] == "vm-w1"  # the failed trial keeps its record


def test_a_blank_storage_url_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.STORAGE, raising=False)
    with pytest.raises(StorageError, match=r"^--storage: the storage URL is empty; give one"):
        storage.resolve_url("  ")
    # A blank variable is an unset one, in a command as in the library (compose files give
    # ${VAR:-}): the next one in line, or the default, is used.
    monkeypatch.setenv(settings.STORAGE, " ")
    monkeypatch.delenv(settings.OPTUNA_STORAGE, raising=False)
    assert storage.resolve_url(None) == storage.DEFAULT_URL


def test_optuna_storage_is_read_after_hpsearch_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shell set up for `optuna` and optuna-dashboard used to send hpsearch to ./hpsearch.db.
    monkeypatch.delenv(settings.STORAGE, raising=False)
    monkeypatch.setenv(settings.OPTUNA_STORAGE, "postgresql://u@optunahost/db")
    assert storage.resolve_url(None) == "postgresql+psycopg://u@optunahost/db"
    monkeypatch.setenv(settings.STORAGE, "postgresql://u@hphost/db")
    assert storage.resolve_url(None) == "postgresql+psycopg://u@hphost/db"
    assert storage.resolve_url("sqlite:///arg.db") == "sqlite:///arg.db"
    monkeypatch.delenv(settings.STORAGE)
    monkeypatch.setenv(settings.OPTUNA_STORAGE, "redis://x")
    with pytest.raises(StorageError, match=r"^OPTUNA_STORAGE: storage URL 'redis://x'"):
        storage.resolve_url(None)


# --- a full disk -------------------------------------------------------------------------


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


def test_a_full_disk_is_named_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    full = _sqlite_error("database or disk is full", sqlite3.SQLITE_FULL)
    wrapped = sqlalchemy.exc.OperationalError("INSERT ...", {}, full)
    try:
        raise optuna.exceptions.StorageInternalError("invalid data in the commit") from wrapped
    except optuna.exceptions.StorageInternalError as e:
        message = str(storage.failure(url, e))
    assert message == f"cannot write to {url}: disk full (database or disk is full)"
    assert storage.disk_full(url, OSError(28, "No space left on device"))
    # An I/O error is the full disk only where the file's filesystem is (nearly) full.
    assert not storage.disk_full(url, _sqlite_error("disk I/O error", 4874))
    assert not storage.disk_full(url, _sqlite_error("database is locked", 5))


def test_a_study_is_created_with_its_spec_or_not_at_all(tmp_path: Path) -> None:
    backend = storage.open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=False)
    with pytest.raises(TypeError):  # the attribute's write fails, as on a full disk
        storage.create_study(backend, "half", {"spec": {"a": 1}, "bad": object()})
    assert backend.get_all_studies() == []  # a study without its spec would read as foreign
    storage.create_study(backend, "whole", {"spec": {"a": 1}})
    [study] = backend.get_all_studies()
    assert study.study_name == "whole" and study.user_attrs == {"spec": {"a": 1}}
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        storage.create_study(backend, "whole", {})


@pytest.mark.parametrize("kind", ["FIFO", "directory"])
def test_a_sqlite_path_that_is_no_regular_file_is_refused_before_anything_is_made(
    tmp_path: Path, kind: str
) -> None:
    # sqlite:////dev/null said "disk I/O error" after leaving null.lock and null-journal in
    # /dev; a FIFO likewise, a directory "unable to open database file".
    path = tmp_path / "study.db"
    if kind == "FIFO":
        os.mkfifo(path)
    else:
        path.mkdir()
    url = f"sqlite:///{path}"
    with pytest.raises(StorageError) as info:
        storage.open_storage(url, heartbeat=False)
    assert str(info.value) == (
        f"{url}: a {kind}, not a regular file; expected a SQLite database file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
