"""``hpsearch run``: N worker processes on this machine and a live view of the study.

Workers are processes, not threads: training holds the GIL between torch ops, and a crashed
or killed worker must not take the others down. Each gets ``cores // N`` torch threads so
that N workers never oversubscribe the CPU, and one GPU (round-robin) when there are GPUs.
Without GPUs there is never more than one worker per core: a core shared by two workers only
slices its time between them. Workers are plain subprocesses (search._process), handed the
study the launcher has parsed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError
from hpsearch.search._lifecycle import (
    INTERRUPTED_ATTR,
    Counts,
    best_trials,
    count_trials,
    open_study,
)
from hpsearch.search._preflight import check_inputs
from hpsearch.search._process import WorkerOrder, start
from hpsearch.search._progress import Progress, Tracker
from hpsearch.search._worker import DB_DOWN, db_retry_seconds, handle_stop_signals
from hpsearch.study import StudySpec, load_study

# A second stop signal this long after the first (seconds) kills the workers and exits at
# once: an orderly stop takes a few seconds, unless a database that does not answer holds it.
FORCE_AFTER = 10.0
SUMMARY_TOP = 10  # trials in the table a run ends with


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Split the cores so N workers never oversubscribe the CPU (each >= 1 thread)."""
    return max(1, (cores or available_cores()) // workers)


def available_cores() -> int:
    """Cores this process may run on (a CPU-limited container's, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no sched_getaffinity
        return os.cpu_count() or 1


@dataclass
class Launch:
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    stderr_tails: dict[str, list[str]] = field(default_factory=dict)


def start_workers(
    spec: StudySpec,
    url: str,
    *,
    workers: int,
    data_dir: Path | None,
    deadline: float | None,
    on_line: Callable[[str, str], None] | None = None,
    gpus: int = 0,
) -> Launch:
    """Start ``workers`` worker processes (search._process) for a study that exists; with
    ``gpus`` they share the GPUs round-robin."""
    # The study file's fixed thread count wins over the split: what is trained is what it says.
    threads = spec.config.get("threads") or threads_per_worker(workers)
    launch = Launch()
    host = os.uname().nodename
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for i in range(workers):
        # The launcher's pid in the name: two runs on one machine must not share names, or
        # the first to end would fail the other's running trials as its own orphans.
        name = f"{host}-{os.getpid()}-w{i + 1}"
        env = dict(base_env)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)  # round-robin, one GPU per worker
        # The URL travels in the order on stdin, not argv: argv is visible to every user in ps.
        order = WorkerOrder(spec, url, name, threads, i, data_dir, deadline)
        proc = start(order, env)
        launch.processes.append(proc)
        launch.names.append(name)
        tail: list[str] = []
        launch.stderr_tails[name] = tail
        threading.Thread(
            target=_pump, args=(proc, name, tail, on_line), daemon=True, name=f"pump-{name}"
        ).start()
    return launch


def _pump(
    proc: subprocess.Popen[bytes],
    name: str,
    tail: list[str],
    on_line: Callable[[str, str], None] | None,
) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        tail.append(line)
        del tail[:-20]
        if on_line is not None and line:
            on_line(name, line)


def stop_workers(launch: Launch, *, grace: float = 15.0) -> None:
    """Ask every worker to stop (SIGTERM: the running trial is marked FAIL), then insist."""
    _send(launch, signal.SIGTERM)
    end = time.time() + grace
    for proc in launch.processes:
        try:
            proc.wait(timeout=max(end - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for proc in launch.processes:
        if proc.stdin is not None:
            proc.stdin.close()  # the worker has exited: nothing watches the pipe any more


def _send(launch: Launch, signum: int) -> None:
    """Send ``signum`` to every worker still running."""
    for proc in launch.processes:
        if proc.poll() is None:
            with contextlib.suppress(OSError):  # it exited a moment ago
                proc.send_signal(signum)


def fail_orphans(study: optuna.Study, workers: list[str]) -> int:
    """Mark RUNNING trials of the given (now dead) workers as FAIL; return how many."""
    storage: Any = study._storage
    n = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") in workers:
            storage.set_trial_user_attr(trial._trial_id, "error", "worker stopped")
            storage.set_trial_user_attr(trial._trial_id, INTERRUPTED_ATTR, True)  # re-queued
            if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                n += 1
    return n


def _read_results(
    study: optuna.Study,
    launch: Launch,
    url: str,
    retry_seconds: float,
    metric_name: str,
    *,
    interrupted: bool,
) -> RunResult:
    """Fail the dead workers' orphans, then read the counts and the best trials.

    The database may be away for a moment just as the workers end (a restart, a killed
    connection: Optuna then leaves its session unusable for that one call); like a worker,
    retry for up to ``retry_seconds`` before giving up with one clear message.
    """
    since = time.monotonic()
    while True:
        try:
            orphans = fail_orphans(study, launch.names)
            top = best_trials(study, top=SUMMARY_TOP)
            exit_codes = [p.wait() for p in launch.processes]  # all have exited
            return RunResult(
                study_name=study.study_name,
                metric_name=metric_name,
                counts=count_trials(study),
                exit_codes=exit_codes,
                interrupted=interrupted,
                orphans_failed=orphans,
                best=top[0] if top else None,
                top=top,
                failures=[] if interrupted else _failures(launch),
            )
        except DB_DOWN as exc:
            if time.monotonic() - since >= retry_seconds:
                raise storage_mod.DatabaseLost(
                    f"study {study.study_name}: cannot read the results from "
                    f"{storage_mod.mask_url(url)}: {storage_mod.error_reason(url, exc)}"
                ) from None
            time.sleep(min(1.0, retry_seconds))


def _failures(launch: Launch) -> list[str]:
    """A line for each worker that failed: its exit status and its last words."""
    lines = []
    for name, proc in zip(launch.names, launch.processes, strict=True):
        if proc.returncode not in (0, None):
            tail = (launch.stderr_tails[name][-1:] or ["(no output)"])[0]
            lines.append(f"{name} exited with {proc.returncode}: {tail}")
    return lines


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install must not stop CPU runs
        return 0


@dataclass
class RunResult:
    study_name: str
    metric_name: str  # what the trials' values are, as METRIC_NAMES names the study's metric
    counts: Counts
    exit_codes: list[int]
    interrupted: bool
    orphans_failed: int = 0
    best: FrozenTrial | None = None
    top: list[FrozenTrial] = field(default_factory=list)  # the best complete trials, best first
    failures: list[str] = field(default_factory=list)  # "worker exited with N: last line"

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(code == 0 for code in self.exit_codes)


class RunView(Protocol):
    """How ``run_study`` shows a run (the CLI's is a rich live view)."""

    def note(self, text: str) -> None: ...  # one line of plain text, never markup
    def worker_line(self, worker: str, line: str) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def close(self) -> None: ...  # the live part ends; notes may follow


class _Stopper:
    """SIGINT, SIGTERM and SIGHUP stop every worker at once, even while the main loop waits
    on the database; a second signal long after the first kills them and exits."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.event = threading.Event()
        self.launch: Launch | None = None
        self._signals: list[float] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()
        self._signals.append(time.monotonic())
        if self.launch is None:
            return
        if len(self._signals) == 1:
            _send(self.launch, signal.SIGTERM)
        elif self._signals[-1] - self._signals[0] > FORCE_AFTER:
            # The orderly stop is stuck, waiting on a database that does not answer. Kill the
            # workers and leave now; their running trials are failed by the next heartbeat check.
            _send(self.launch, signal.SIGKILL)
            self.view.note("stop did not finish (is the database answering?): workers killed")
            os._exit(130)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = handle_stop_signals(self)
        # The workers have sessions of their own, so a terminal's Ctrl-Z stops only this
        # process: pause them with it, and let them go on with it.
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._pause)
        previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, self._resume)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _pause(self, signum: int, frame: FrameType | None) -> None:
        if self.launch is not None:
            _send(self.launch, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # what SIGTSTP would have done to this process

    def _resume(self, signum: int, frame: FrameType | None) -> None:
        if self.launch is not None:
            _send(self.launch, signal.SIGCONT)


def run_study(
    spec: StudySpec,
    url: str,
    *,
    workers: int,
    view: RunView,
    data_dir: Path | None = None,
    force: bool = False,
    refresh: float = 1.0,
) -> RunResult:
    """Run a study with ``workers`` local processes until its budget is spent.

    The study is created (or checked against its stored spec) here, once, before any worker
    starts, so a bad spec or URL fails fast with one message instead of N.
    SIGINT, SIGTERM and SIGHUP stop every worker; none of their trials is left RUNNING.
    """
    if workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {workers}")
    retry_seconds = db_retry_seconds()  # a bad value is an error before anything starts
    storage_mod.heartbeat_settings()  # the workers' settings too: checked before they start
    study = open_study(spec, url, force=force, heartbeat=False)
    gpus = _gpu_count()
    workers = _workers_to_start(spec, study, workers, gpus=gpus, view=view)
    view.note(
        f"study {spec.name}: {spec.trials} trials, {workers} workers, "
        f"storage {storage_mod.mask_url(url)}"
    )
    started = time.time()
    deadline = started + spec.timeout if spec.timeout else None
    stopper = _Stopper(view)
    with stopper.installed():
        launch = start_workers(
            spec, url, workers=workers, data_dir=data_dir, deadline=deadline,
            gpus=gpus, on_line=view.worker_line,
        )  # fmt: skip
        stopper.launch = launch
        tracker = Tracker(
            study, budget=spec.trials, epochs=spec.epochs, started=started, deadline=deadline,
            metric=spec.metric,
            short_names={name: name.rpartition("-")[2] for name in launch.names},
        )  # fmt: skip
        try:
            _watch(tracker, launch, stopper.event, view, refresh=refresh)
        finally:
            stop_workers(launch)
            view.close()
    return _read_results(
        study, launch, url, retry_seconds, tracker.metric_name, interrupted=stopper.event.is_set()
    )


def _workers_to_start(
    spec: StudySpec, study: optuna.Study, workers: int, *, gpus: int, view: RunView
) -> int:
    """No more workers than trials left, nor (without GPUs) than cores; one note says why
    when fewer start than were asked for."""
    left = spec.trials - count_trials(study).done
    cores = available_cores()
    # A worker beyond the trials left would start (import torch, load the data) for nothing;
    # two workers on one core only slice its time between them: no trial ends sooner.
    by_trials = max(1, left)
    by_cores = workers if gpus else cores
    start = min(workers, by_trials, by_cores)
    if start == workers:
        return workers
    if by_trials <= by_cores:
        reason = f"{max(0, left)} of {spec.trials} trials left to run"
    else:
        reason = "one worker per core without a GPU"
    view.note(f"note: {reason}: starting {start} of the {workers} workers")
    return start


def _watch(
    tracker: Tracker,
    launch: Launch,
    interrupted: threading.Event,
    view: RunView,
    *,
    refresh: float,
) -> None:
    """Show progress until every worker has exited or a stop signal came."""

    def show() -> int:
        alive = sum(p.poll() is None for p in launch.processes)
        # The database may be away for a while: the workers retry (and report it), and the
        # view catches up afterwards.
        with contextlib.suppress(*DB_DOWN):
            progress = tracker.poll(alive)
            if interrupted.is_set():  # the trials the stop failed: each worker says so once
                finished = [t for t in progress.finished if t.state != "failed"]
                progress = replace(progress, finished=finished)
            view.progress(progress)
        return alive

    while show() and not interrupted.wait(refresh):
        pass
    if interrupted.is_set():
        view.note("interrupted: stopping workers...")
        stop_workers(launch)
        show()  # the stopped workers' trials as they were left: failed


def prepare(
    study: str,
    *,
    studies_dir: Path | None,
    trials: int | None,
    timeout: float | None,
    storage: str | None,
    data_dir: Path | None,
) -> tuple[StudySpec, str]:
    """The study file parsed and its budget set, the storage URL resolved, the data there and
    the study's devices and vectors checked: everything a bad input can fail, before the
    study is created (a bad file writes nothing) and before any worker starts."""
    spec = load_study(study, studies_dir).with_budget(trials=trials, timeout=timeout)
    url = storage_mod.resolve_url(storage)
    check_inputs(spec, data_dir)
    return spec, url
