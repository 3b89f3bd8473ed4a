"""Workers: processes that pull trials of one study from the shared database until its budget
is spent, and the launcher that runs N of them on this machine.

The budget is global: ``trials`` is the number of COMPLETE + PRUNED trials of the study, across
every worker on every machine. Optuna's ``MaxTrialsCallback`` counts only finished trials, so
N workers overshoot by up to N - 1. Here a worker takes a cross-process lock
(``storage.budget_lock``), counts finished *and running* trials, and creates its trial before
releasing the lock, so no two workers can claim the last slot. A running trial that later
fails frees its slot again (a failure is not a result), which is why a worker whose slots are
all claimed waits for the running trials instead of leaving.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpsearch import storage as storage_mod
from hpsearch.errors import StorageError, StudyError
from hpsearch.objective import Objective
from hpsearch.slots import CpuSlots
from hpsearch.space import show
from hpsearch.studyfile import StudySpec

log = logging.getLogger(__name__)

SPEC_ATTR = "hpsearch_spec"
POLL_SECONDS = 1.0  # how often an idle worker re-checks running trials that may still fail
DB_RETRY_SECONDS = 60.0  # how long a worker keeps retrying a lost database before giving up
# Larger than any worker count, so (offset, trials so far) pairs give distinct seeds.
RESUME_SEED_STRIDE = 1_000_003
ENV_DB_RETRY_SECONDS = "HPSEARCH_DB_RETRY_SECONDS"
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
    return sum("error" in trial.user_attrs for trial in failed)


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
    value = os.environ.get(ENV_DB_RETRY_SECONDS, "").strip()
    if not value:
        return DB_RETRY_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects nan
        raise StorageError(
            f"environment: {ENV_DB_RETRY_SECONDS} ({value!r}) must be a number of seconds >= 0"
        )
    return seconds


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        return self.complete + self.pruned


def count_trials(study: optuna.Study) -> Counts:
    states: Mapping[TrialState, int] | None = storage_mod.count_states(study)  # one query
    if states is None:
        states = collections.Counter(t.state for t in study.get_trials(deepcopy=False))
    return Counts(
        complete=states.get(TrialState.COMPLETE, 0),
        pruned=states.get(TrialState.PRUNED, 0),
        failed=states.get(TrialState.FAIL, 0),
        running=states.get(TrialState.RUNNING, 0),
        waiting=states.get(TrialState.WAITING, 0),
    )


def open_study(
    spec: StudySpec,
    url: str,
    *,
    force: bool = False,
    heartbeat: bool = True,
    seed_offset: int = 0,
) -> optuna.Study:
    """Create the study (storing its spec, enqueuing its first configurations) or resume it.

    Resuming with a spec that differs from the stored one is refused unless ``force``: trials
    run under another search space or pruner would be silently mixed with the new ones.
    """
    storage = storage_mod.open_storage(url, heartbeat=heartbeat)
    with storage_mod.budget_lock(url, spec.name):
        try:
            study = optuna.load_study(
                study_name=spec.name,
                storage=storage,
                sampler=spec.make_sampler(seed_offset),
                pruner=spec.make_pruner(),
            )
        except KeyError:
            study = optuna.create_study(
                study_name=spec.name,
                storage=storage,
                sampler=spec.make_sampler(seed_offset),
                pruner=spec.make_pruner(),
                direction="maximize",
            )
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
            for params in spec.enqueue:
                study.enqueue_trial(params, user_attrs={"enqueued": True})
            return study
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            raise StudyError(
                f"study {spec.name!r} exists in {storage_mod.mask_url(url)} but was not made "
                "by hpsearch; choose another name"
            )
        changes = spec.differences(stored)
        if changes and not force:
            raise StudyError(
                f"study {spec.name!r} exists with a different spec: {'; '.join(changes)}. "
                "Use another study name, or --force to resume with the new spec"
            )
        if changes:
            _check_resumable(spec, study)
            # Points the edited file adds to enqueue: (queued only when a study is created).
            before = stored.get("enqueue") or []
            for params in spec.enqueue:
                if params not in before:
                    study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
        # Resuming must not replay an earlier session's draws: with the same seed, a random
        # sampler (or TPE's start-up phase) proposes the same points again, and those trials,
        # seeded alike, repeat their results exactly. The trials begun so far move the seed on
        # (enqueued ones are not draws, so one worker on a new study keeps the file's seed).
        begun = [s for s in TrialState if s != TrialState.WAITING]
        so_far = len(study.get_trials(deepcopy=False, states=begun))
        if so_far:
            offset = (seed_offset + RESUME_SEED_STRIDE * so_far) % 2**31
            study.sampler = spec.make_sampler(offset)
        return study


def _check_resumable(spec: StudySpec, study: optuna.Study) -> None:
    """Refuse a forced resume that Optuna cannot run: a parameter whose kind changed, or a
    categorical one whose choices changed, would fail every new trial at its first suggest
    (Optuna keeps one distribution per parameter name for the whole study)."""
    used: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            used.setdefault(name, distribution)
    for name, param in spec.space.items():
        if name not in used:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(used[name], param.distribution())
        except ValueError:
            raise StudyError(
                f"study {spec.name!r}: space.{name}: its trials used {_describe(used[name])}, "
                f"the file now says {param.describe()}; Optuna cannot change a parameter's "
                f"choices, kind or log scale within a study. Use another study name, or keep "
                f"space.{name} as it was"
            ) from None


def _describe(distribution: optuna.distributions.BaseDistribution) -> str:
    """As ``ParamSpec.describe`` words a parameter, so that the two read side by side."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"one of {show(list(distribution.choices))}"
    assert isinstance(distribution, IntDistribution | FloatDistribution), distribution
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    step = distribution.step
    plain = step is None or (kind == "int" and step == 1)  # ParamSpec shows no default step
    extra = ", log" if distribution.log else "" if plain else f", step {step}"
    return f"{kind} in [{distribution.low}, {distribution.high}]{extra}"


@dataclass
class WorkerSummary:
    worker: str
    trials_run: int = 0
    reason: str = ""
    ok: bool = True  # False when it stopped because trials kept failing


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
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    return stop


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
    cpu_slots: CpuSlots | None = None,
) -> WorkerSummary:
    """Run trials of ``spec`` until the study's budget is spent or ``deadline`` passes.

    ``seed_offset`` shifts the sampler's seed: the launcher gives worker i offset i, so one
    worker reproduces the study file's seed exactly and parallel workers explore differently.
    Once ``stop`` is set, KeyboardInterrupt is raised before the next trial or epoch.
    With ``cpu_slots`` each trial first waits for a free slot (hpsearch.slots).
    """
    retry_seconds = db_retry_seconds()  # a bad value is an error before the study exists
    study = open_study(spec, url, force=force, seed_offset=seed_offset)
    should_stop = stop.is_set if stop is not None else None
    objective = Objective(
        spec, worker=worker, data_dir=data_dir, threads=threads, should_stop=should_stop
    )
    summary = WorkerSummary(worker)
    max_failed = max(spec.trials, 3)  # a study whose every trial crashes must still end
    db_down_since: float | None = None
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # the signal's own may have been lost; see Objective
        if deadline is not None and time.time() >= deadline:
            summary.reason = "timeout"
            return summary
        slot = contextlib.ExitStack()  # the CPU slot, held until this round ends
        if cpu_slots is not None and not slot.enter_context(cpu_slots.hold(deadline)):
            slot.close()
            continue  # the deadline passed while waiting: the check above ends the run
        try:
            with _held(storage_mod.budget_lock(url, spec.name)) as (release, still_held):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                storage_mod.fail_trials_without_heartbeat(study)
                counts = count_trials(study)
                db_down_since = None
                if counts.done >= spec.trials:
                    summary.reason = "budget spent"
                    return summary
                if counts.failed >= max_failed and (crashed := _crashed(study)) >= max_failed:
                    summary.reason = f"stopped after {crashed} failed trials"
                    summary.ok = False
                    return summary
                if counts.done + counts.running >= spec.trials:
                    release()
                    time.sleep(POLL_SECONDS)
                    continue

                def objective_releasing(trial: optuna.Trial) -> float:
                    # The trial now exists as RUNNING and is counted: let the next worker in.
                    lost = not still_held()
                    release()
                    if lost:  # another worker may have claimed the same slot meanwhile
                        raise BudgetLockLost(
                            "the database dropped the budget lock while this trial was "
                            "created; not run, so that the budget cannot be exceeded"
                        )
                    return objective(trial)

                study.optimize(objective_releasing, n_trials=1, catch=(Exception,))
                summary.trials_run += 1
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            # Our heartbeats lapsed (a database outage longer than the grace period) and another
            # worker failed this trial and queued it again; Optuna then refuses to record our
            # result ("Cannot tell a FAIL trial"), which must not count twice anyway.
            if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a "):
                raise
            log.warning(
                "%s: result not recorded: another worker failed the trial while it ran "
                "(its heartbeats lapsed) and queued it again",
                worker,
            )
        except Exception as exc:
            # The database went away (restart, killed connection). pool_pre_ping reconnects on
            # the next checkout; the trial in flight, if any, is failed by its heartbeat and
            # retried. Keep trying for a bounded time, then stop with one clear message.
            db_error = _database_error(exc)
            if db_error is None and isinstance(exc, KeyError):
                # Optuna's "Record does not exist.": the study was deleted, or (seen while
                # PostgreSQL connections were being killed) a read came back empty.
                if not _study_exists(study, spec.name):
                    raise StudyError(
                        f"{worker}: study {spec.name!r} no longer exists in "
                        f"{storage_mod.mask_url(url)}"
                    ) from None
                db_error = exc
            if db_error is None:
                raise
            now = time.monotonic()
            reason = storage_mod.error_reason(url, db_error)
            if not isinstance(db_error, storage_mod.DatabaseUnavailable):  # names no URL
                reason = f"{storage_mod.mask_url(url)}: {reason}"
            if db_down_since is None:
                db_down_since = now
                log.warning(
                    "%s: database unavailable, retrying for up to %g s: %s",
                    worker,
                    retry_seconds,
                    reason,
                )
            elif now - db_down_since >= retry_seconds:
                raise storage_mod.DatabaseLost(
                    f"{worker}: database unavailable for over {retry_seconds:g} s, "
                    f"giving up: {reason}"
                ) from None
            slot.close()  # a slot is for training, not for waiting out an outage
            time.sleep(min(2.0, retry_seconds))
        finally:
            slot.close()
