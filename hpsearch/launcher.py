"""``hpsearch run``: N worker processes on this machine and a live view of the study.

Workers are processes, not threads: training holds the GIL between torch ops, and a crashed
or killed worker must not take the others down. Each gets ``cores // N`` torch threads so
that N workers never oversubscribe the CPU, and one GPU (round-robin) when there are GPUs.
They are forked from a fork server that has imported torch once (hpsearch.spawn).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hpsearch import display
from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError
from hpsearch.slots import ENV_SLOTS, CpuSlots
from hpsearch.spawn import StartMethod, WorkerHandle, start_method, start_worker, warm_up
from hpsearch.studyfile import StudySpec
from hpsearch.workers import (
    DB_DOWN,
    STOP_SIGNALS,
    Counts,
    count_trials,
    db_retry_seconds,
    open_study,
)

# A second stop signal this long after the first (seconds) kills the workers and exits at
# once: an orderly stop takes a few seconds, unless a database that does not answer holds it.
FORCE_AFTER = 10.0


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
    processes: list[WorkerHandle] = field(default_factory=list)
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
    cpu_slots: CpuSlots | None = None,
    method: StartMethod | None = None,
    gpus: int = 0,
) -> Launch:
    """Start ``workers`` ``hpsearch worker`` processes (hpsearch.spawn) for a study that exists;
    with ``cpu_slots`` they take turns to train (hpsearch.slots), with ``gpus`` they share
    the GPUs round-robin."""
    assert spec.path is not None, "run needs a study loaded from a file"
    # The study file's fixed thread count wins over the split: what is trained is what it says.
    threads = spec.config.get("threads") or threads_per_worker(workers)
    launch = Launch()
    host = os.uname().nodename
    base_env = {**os.environ, storage_mod.ENV_URL: url, "PYTHONUNBUFFERED": "1"}
    base_env.pop(ENV_SLOTS, None)
    if cpu_slots is not None:
        base_env[ENV_SLOTS] = cpu_slots.to_env()
    for i in range(workers):
        # The launcher's pid in the name: two runs on one machine must not share names, or
        # the first to end would fail the other's running trials as its own orphans.
        name = f"{host}-{os.getpid()}-w{i + 1}"
        # The URL travels in the environment, not argv: argv is visible to every user in `ps`.
        env = dict(base_env)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)  # round-robin, one GPU per worker
        cmd = ["--study", str(spec.path)]
        cmd += ["--worker-id", name, "--threads", str(threads), "--trials", str(spec.trials)]
        cmd += ["--seed-offset", str(i)]
        if deadline is not None:
            cmd += ["--timeout", f"{max(deadline - time.time(), 0.001):.3f}"]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        proc = start_worker(cmd, env, method)
        launch.processes.append(proc)
        launch.names.append(name)
        tail: list[str] = []
        launch.stderr_tails[name] = tail
        threading.Thread(
            target=_pump, args=(proc, name, tail, on_line), daemon=True, name=f"pump-{name}"
        ).start()
    return launch


def _pump(
    proc: WorkerHandle,
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
    """Ask every worker to stop (SIGINT: the running trial is marked FAIL), then insist."""
    _send(launch, signal.SIGINT)
    end = time.time() + grace
    for proc in launch.processes:
        try:
            proc.wait(timeout=max(end - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
            if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                n += 1
    return n


def _read_results(
    study: optuna.Study, names: list[str], url: str, retry_seconds: float
) -> tuple[int, FrozenTrial | None, Counts, Table]:
    """Fail the dead workers' orphans, then read the best trial, counts and summary.

    The database may be away for a moment just as the workers end (a restart, a killed
    connection: Optuna then leaves its session unusable for that one call); like a worker,
    retry for up to ``retry_seconds`` before giving up with one clear message.
    """
    since = time.monotonic()
    while True:
        try:
            orphans = fail_orphans(study, names)
            return orphans, display.best_trial(study), count_trials(study), display.summary(study)
        except DB_DOWN as exc:
            if time.monotonic() - since >= retry_seconds:
                raise storage_mod.DatabaseLost(
                    f"study {study.study_name}: cannot read the results from "
                    f"{storage_mod.mask_url(url)}: {storage_mod.error_reason(url, exc)}"
                ) from None
            time.sleep(min(1.0, retry_seconds))


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install must not stop CPU runs
        return 0


@dataclass
class RunResult:
    study_name: str
    counts: Counts
    exit_codes: list[int]
    interrupted: bool
    orphans_failed: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(code == 0 for code in self.exit_codes)


def run_study(
    spec: StudySpec,
    url: str,
    *,
    workers: int,
    data_dir: Path | None = None,
    force: bool = False,
    console: Console | None = None,
    refresh: float = 1.0,
    method: StartMethod | None = None,
) -> RunResult:
    """Run a study with ``workers`` local processes until its budget is spent.

    The study is created (or checked against its stored spec) here, once, before any worker
    starts, so a bad spec or URL fails fast with one message instead of N.
    SIGINT and SIGTERM stop every worker; none of their trials is left RUNNING.
    ``method`` is how workers start (hpsearch.spawn; default: ``start_method()``).
    """
    if workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {workers}")
    if method is None:
        method = start_method()  # checked before anything is written
        warm_up(method)  # the fork server imports torch while the study is opened
    retry_seconds = db_retry_seconds()  # a bad value is an error before anything starts
    storage_mod.heartbeat_settings()  # the workers' settings too: checked before they start
    console = console or Console(stderr=True)
    study = open_study(spec, url, force=force, heartbeat=False)
    left = spec.trials - count_trials(study).done
    if workers > max(1, left):
        # A worker beyond the trials left would start (import torch, load the data) for
        # nothing: --workers 100 on a 2-trial budget starts 2.
        needed = max(1, left)
        console.print(
            f"note: {max(0, left)} of {spec.trials} trials left to run: starting {needed} of "
            f"the {workers} workers",
            soft_wrap=True,
        )
        workers = needed
    console.print(
        f"study {spec.name}: {spec.trials} trials, {workers} workers, "
        f"storage {storage_mod.mask_url(url)}",
        soft_wrap=True,
    )
    cores = available_cores()
    gpus = _gpu_count()
    slots_dir = None
    cpu_slots = None
    if workers > cores and not gpus:
        # More CPU workers than cores would time-slice the cores (measured slower than one
        # worker per core, benchmarks/README.md): they take turns instead.
        slots_dir = tempfile.TemporaryDirectory(prefix="hpsearch-slots-")
        cpu_slots = CpuSlots(Path(slots_dir.name), cores)
        console.print(
            f"note: {workers} workers on {cores} cores: at most {cores} train at a time",
            soft_wrap=True,
        )
    started = time.time()
    deadline = started + spec.timeout if spec.timeout else None
    interrupted = threading.Event()
    first_signal: list[float] = []
    launched: list[Launch] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        first_signal.append(time.monotonic())
        if launched and len(first_signal) == 1:  # now, even if the main loop is stuck
            _send(launched[0], signal.SIGINT)
        elif launched and first_signal[-1] - first_signal[0] > FORCE_AFTER:
            # Signalled again, long after the first: the orderly stop is stuck, waiting on a
            # database that does not answer. Kill the workers and leave now; their running
            # trials are failed by the next worker's heartbeat check.
            _send(launched[0], signal.SIGKILL)
            console.print("stop did not finish (is the database answering?): workers killed")
            os._exit(130)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    launch = start_workers(
        spec,
        url,
        workers=workers,
        data_dir=data_dir,
        deadline=deadline,
        cpu_slots=cpu_slots,
        method=method,
        gpus=gpus,
        # Escaped: a worker's "[...]" must not be read as markup (a stray "[/x]" raises).
        on_line=lambda name, line: console.print(
            f"[dim]{escape(name)}[/dim] {escape(line.removeprefix(name + ': '))}",
            soft_wrap=True,
        ),
    )
    launched.append(launch)

    def show(live: Live) -> int:
        alive = sum(p.poll() is None for p in launch.processes)
        # The database may be away for a while: the workers retry (and report it), and the
        # view catches up afterwards.
        with contextlib.suppress(*DB_DOWN):
            counts = count_trials(study)
            live.update(
                display.status(
                    study, counts, budget=spec.trials, started=started, workers_alive=alive
                )
            )
        return alive

    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while show(live) and not interrupted.wait(refresh):
                pass
            if interrupted.is_set():
                console.print("interrupted: stopping workers...")
                stop_workers(launch)
                show(live)  # the stopped workers' trials as they were left: failed
        display.end_live(console)
    finally:
        stop_workers(launch)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if slots_dir is not None:
            slots_dir.cleanup()
    orphans, best, counts, summary = _read_results(study, launch.names, url, retry_seconds)
    result = RunResult(
        study_name=spec.name,
        counts=counts,
        exit_codes=[p.wait() for p in launch.processes],  # all have exited
        interrupted=interrupted.is_set(),
        orphans_failed=orphans,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
    )
    console.print(summary)
    for name, proc in zip(launch.names, launch.processes, strict=True):
        if proc.returncode not in (0, None) and not result.interrupted:
            tail = escape((launch.stderr_tails[name][-1:] or ["(no output)"])[0])
            message = f"[red]{name} exited with {proc.returncode}[/red]: {tail}"
            console.print(message, soft_wrap=True)
    return result
