"""Workers: processes that pull trials of one study from the shared database until its budget
is spent.

The budget is global: ``trials`` is the number of COMPLETE + PRUNED trials of the study, across
every worker on every machine. Optuna's ``MaxTrialsCallback`` counts only finished trials, so
N workers overshoot by up to N - 1. Here a worker takes a cross-process lock
(``storage.budget_lock``), counts finished *and running* trials, and creates its trial before
releasing the lock, so no two workers can claim the last slot. A running trial that later
fails frees its slot again (a failure is not a result), which is why a worker whose slots are
all claimed waits for the running trials instead of leaving.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from hpsearch import settings
from hpsearch import storage as storage_mod
from hpsearch.errors import StudyError
from hpsearch.search._lifecycle import (
    INTERRUPTED_ATTR,
    Counts,
    count_trials,
    open_study,
    requeue_interrupted,
)
from hpsearch.search._objective import Objective
from hpsearch.study import StudySpec

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often an idle worker re-checks running trials that may still fail
DB_RETRY_SECONDS = 60.0  # how long a worker keeps retrying a lost database before giving up
# A database that went away (restart, killed connection, network): Optuna wraps the driver's
# error in StorageInternalError; the budget lock raises DatabaseUnavailable.
DB_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    optuna.exceptions.StorageInternalError,
    storage_mod.DatabaseUnavailable,
)


def _database_error(exc: BaseException) -> BaseException | None:
    """The lost-database error behind ``exc``, if any.

    Optuna may raise another error while handling it: when recording a trial's result
    fails, ``Study.optimize`` raises ``AssertionError("Should not reach.")`` from it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DB_DOWN):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _crashed(study: optuna.Study) -> int:
    """Failed trials whose training raised (they carry an `error`); not those interrupted,
    killed or cut off from the database, which say nothing about the search space."""
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sum(
        "error" in trial.user_attrs and INTERRUPTED_ATTR not in trial.user_attrs for trial in failed
    )


def _study_exists(study: optuna.Study, name: str) -> bool:
    try:
        study._storage.get_study_id_from_name(name)
    except KeyError:
        return False
    except Exception:  # the database is away: it cannot tell, so assume it still exists
        return True
    return True


def db_retry_seconds() -> float:
    """How long a worker retries a lost database: $HPSEARCH_DB_RETRY_SECONDS or the default."""
    return settings.seconds(settings.DB_RETRY_SECONDS, DB_RETRY_SECONDS)


@dataclass
class WorkerSummary:
    worker: str
    trials_run: int = 0
    reason: str = ""
    ok: bool = True  # False when it stopped because trials kept failing
    requeue: bool = False  # a trial of this worker was not run: queue its point again


class BudgetLockLost(RuntimeError):
    """The database dropped the budget lock while this worker held it."""


@contextmanager
def _held(
    lock: AbstractContextManager[Callable[[], bool]],
) -> Iterator[tuple[Callable[[], None], Callable[[], bool]]]:
    """Hold ``lock``; yield a release function that may be called early, once, and the
    lock's still-held check."""
    still_held = lock.__enter__()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            lock.__exit__(None, None, None)

    try:
        yield release, still_held
    finally:
        release()


# Ctrl-C; kill and docker stop; a closed terminal or a dropped ssh session (which would
# otherwise end the process on the spot, its trial left RUNNING until a heartbeat check).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> threading.Event:
    """Make SIGINT, SIGTERM and SIGHUP stop this worker process; return the event ``work``
    watches.

    SIGTERM (docker stop, kill) takes the same path as Ctrl-C: Optuna marks the running trial
    FAIL before the process exits, so no trial is left RUNNING. The event makes it stick
    (Python drops a KeyboardInterrupt raised inside a finalizer, which torch runs
    constantly); a second signal (Ctrl-C reaches `run` and its workers, and `run` passes it
    on) must not interrupt the FAIL being written. Call it from the main thread.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            raise KeyboardInterrupt

    def on_unraisable(unraisable: Any) -> None:
        # The lost interrupt ("Exception ignored in ..."): the event stops the worker instead.
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)

    sys.unraisablehook = on_unraisable
    handle_stop_signals(on_signal)
    _quiet_optuna_once(stop)
    return stop


def _quiet_optuna_once(stop: threading.Event) -> None:
    """Once stopping, Optuna's warnings go unsaid: it would log two for the interrupted trial
    ("Trial 3 failed with parameters ... KeyboardInterrupt()", "... failed with value None"),
    where the worker's own line already says it was interrupted; the trial is FAIL all the
    same."""

    def keep(record: logging.LogRecord) -> bool:
        return not stop.is_set()

    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(keep)


def handle_stop_signals(handler: Any) -> dict[int, Any]:
    """Install ``handler`` for SIGINT, SIGTERM and SIGHUP; return the handlers it replaced.

    A signal the process was started with ignored stays ignored: ``nohup`` ignores SIGHUP so
    that a closed terminal does not stop the search, and a shell's background job SIGINT.
    """
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    return previous


def work(
    spec: StudySpec,
    url: str,
    *,
    worker: str,
    threads: int | None = None,
    data_dir: Path | None = None,
    deadline: float | None = None,
    force: bool = False,
    seed_offset: int = 0,
    stop: threading.Event | None = None,
) -> WorkerSummary:
    """Run trials of ``spec`` until the study's budget is spent or ``deadline`` passes.

    ``seed_offset`` shifts the sampler's seed: the launcher gives worker i offset i, so one
    worker reproduces the study file's seed exactly and parallel workers explore differently.
    Once ``stop`` is set, KeyboardInterrupt is raised before the next trial or epoch.
    """
    outage = _Outage(worker, url, db_retry_seconds())  # a bad setting fails before the study
    study = open_study(spec, url, force=force, seed_offset=seed_offset)
    should_stop = stop.is_set if stop is not None else None
    objective = Objective(
        spec, worker=worker, data_dir=data_dir, threads=threads, should_stop=should_stop,
        **_model_store(url),
    )  # fmt: skip
    summary = WorkerSummary(worker)
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # the signal's own may have been lost; see Objective
        if deadline is not None and time.time() >= deadline:
            summary.reason = "timeout"
            return summary
        try:
            if _next_round(study, spec, url, objective, summary, outage):
                return summary
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            _result_refused(exc, worker)
        except Exception as exc:
            outage.wait(_lost_database(exc, study, spec, worker, url))


def _next_round(
    study: optuna.Study,
    spec: StudySpec,
    url: str,
    objective: Objective,
    summary: WorkerSummary,
    outage: _Outage,
) -> bool:
    """One round under the budget lock: fail dead workers' trials, then end the work (True),
    wait for running trials that may still fail and free a slot, or run one trial."""
    with _held(storage_mod.budget_lock(url, spec.name)) as (release, still_held):
        _fail_dead_trials(study)
        if summary.requeue:
            requeue_interrupted(study)
            summary.requeue = False
        counts = count_trials(study)
        outage.over()
        if _finished(study, spec, counts, summary):
            return True
        if counts.done + counts.running >= spec.trials:
            release()
            time.sleep(POLL_SECONDS)
            return False

        def objective_releasing(trial: optuna.Trial) -> float:
            # The trial now exists as RUNNING and is counted: let the next worker in.
            lost = not still_held()
            release()
            if lost:  # another worker may have claimed the same slot meanwhile
                _mark_interrupted(trial)  # an enqueued point must not be lost with it
                summary.requeue = True
                raise BudgetLockLost(
                    "the database dropped the budget lock while this trial was "
                    "created; not run, so that the budget cannot be exceeded"
                )
            try:
                return objective(trial)
            except KeyboardInterrupt:
                _mark_interrupted(trial)
                raise

        study.optimize(objective_releasing, n_trials=1, catch=(Exception,))
        summary.trials_run += 1
        return False


def _mark_interrupted(trial: optuna.Trial) -> None:
    """Mark a trial a stop signal ended, so that resuming the study queues its point again
    (search._lifecycle). Best effort: if the database is away, the trial is left RUNNING and
    its heartbeat retries it instead."""
    with contextlib.suppress(Exception):
        trial.set_user_attr(INTERRUPTED_ATTR, True)


def _fail_dead_trials(study: optuna.Study) -> None:
    """Fail (and re-queue) the trials of workers that stopped beating, or never beat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage_mod.fail_trials_without_heartbeat(study)


def _finished(study: optuna.Study, spec: StudySpec, counts: Counts, summary: WorkerSummary) -> bool:
    """Whether the work is over: the budget spent, or so many crashed trials that the search
    space itself must be broken (a study whose every trial crashes must still end)."""
    if counts.done >= spec.trials:
        summary.reason = "budget spent"
        return True
    max_failed = max(spec.trials, 3)
    if counts.failed >= max_failed and (crashed := _crashed(study)) >= max_failed:
        summary.reason = f"stopped after {crashed} failed trials"
        summary.ok = False
        return True
    return False


def _result_refused(exc: Exception, worker: str) -> None:
    """Our heartbeats lapsed (a database outage longer than the grace period) and another
    worker failed this trial and queued it again; Optuna then refuses to record our result
    ("Cannot tell a FAIL trial"), which must not count twice anyway. Anything else: raised."""
    if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a "):
        raise exc
    log.warning(
        "%s: result not recorded: another worker failed the trial while it ran "
        "(its heartbeats lapsed) and queued it again",
        worker,
    )


def _lost_database(
    exc: Exception, study: optuna.Study, spec: StudySpec, worker: str, url: str
) -> BaseException:
    """The lost-database error behind ``exc``; ``exc`` itself is raised when it is no such
    error, and a StudyError when the study is gone."""
    db_error = _database_error(exc)
    if db_error is None and isinstance(exc, KeyError):
        # Optuna's "Record does not exist.": the study was deleted, or (seen while
        # PostgreSQL connections were being killed) a read came back empty.
        if not _study_exists(study, spec.name):
            raise StudyError(
                f"{worker}: study {spec.name!r} no longer exists in {storage_mod.mask_url(url)}"
            ) from None
        db_error = exc
    if db_error is None:
        raise exc
    return db_error


class _Outage:
    """A database that went away (restart, killed connection): pool_pre_ping reconnects at
    the next checkout and the trial in flight, if any, is failed by its heartbeat and retried.
    Keep trying for ``retry_seconds``, then stop with one clear message."""

    def __init__(self, worker: str, url: str, retry_seconds: float) -> None:
        self.worker, self.url, self.retry_seconds = worker, url, retry_seconds
        self.since: float | None = None

    def over(self) -> None:
        self.since = None

    def wait(self, error: BaseException) -> None:
        reason = storage_mod.error_reason(self.url, error)
        if not isinstance(error, storage_mod.DatabaseUnavailable):  # names no URL
            reason = f"{storage_mod.mask_url(self.url)}: {reason}"
        now = time.monotonic()
        if self.since is None:
            self.since = now
            log.warning(
                "%s: database unavailable, retrying for up to %g s: %s",
                self.worker,
                self.retry_seconds,
                reason,
            )
        elif now - self.since >= self.retry_seconds:
            raise storage_mod.DatabaseLost(
                f"{self.worker}: database unavailable for over {self.retry_seconds:g} s, "
                f"giving up: {reason}"
            ) from None
        time.sleep(min(2.0, self.retry_seconds))


def run_worker(
    spec: StudySpec,
    url: str,
    *,
    name: str,
    threads: int | None,
    data_dir: Path | None,
    deadline: float | None,
    seed_offset: int,
    report: Callable[[str], None],
    force: bool = False,
) -> int:
    """Work on ``spec`` as one worker process until its budget is spent or ``deadline`` passes;
    ``report`` gets the closing line. Returns the process's exit status: 0, 1 when trials kept
    failing, 130 when stopped by a signal (SIGINT, SIGTERM, SIGHUP)."""
    stop = stop_on_signals()  # the running trial ends FAIL, never RUNNING
    try:
        summary = work(
            spec,
            url,
            worker=name,
            threads=threads,
            data_dir=data_dir,
            deadline=deadline,
            force=force,
            seed_offset=seed_offset,
            stop=stop,
        )
    except KeyboardInterrupt:
        report(f"{name}: interrupted")
        return 130
    trials = "1 trial" if summary.trials_run == 1 else f"{summary.trials_run} trials"
    report(f"{name}: {trials} run; {summary.reason}")
    return 0 if summary.ok else 1


def configure_logging(*, verbose: bool, debug: bool) -> None:
    """Log warnings (INFO with ``verbose``), Optuna's included, in one line each."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not (verbose or debug):
        # A failed trial's error is logged in one line and kept in its `error` attribute;
        # its traceback (one per diverged or interrupted trial) would flood `run`'s console.
        for handler in logging.getLogger("optuna").handlers:
            handler.addFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True


def _model_store(url: str) -> dict[str, Any]:
    """The objective's model store arguments: the store of ``url``'s database and how many
    models it keeps (none without a store directory)."""
    from hpsearch import artifacts

    directory = artifacts.store_dir(url)
    if directory is None:
        return {}
    return {"models": artifacts.ModelStore(directory), "keep_models": artifacts.keep_count()}
