"""A worker of ``hpsearch run`` as a plain subprocess: ``python -m hpsearch.search._entry``.

The launcher has already parsed and checked the study file, so it hands the worker its
order (the parsed spec included) as a pickle on stdin, and keeps stdin open for as long as it
runs: when the launcher is gone, even by SIGKILL or the OOM killer, the pipe reaches EOF and
the worker stops as if interrupted, instead of training on unseen and racing the workers of
the next ``run`` that resumes the study.

The worker lives in a session of its own, so a terminal's Ctrl-C reaches only the launcher,
which passes the stop on as SIGTERM: a worker still importing torch then simply ends, with no
traceback, and one that is training fails its running trial and exits 130.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hpsearch.errors import UsageError
from hpsearch.study import StudySpec

# The module a worker process runs; imported by nothing, so that runpy can run it as __main__.
ENTRY = "hpsearch.search._entry"


@dataclass(frozen=True)
class WorkerOrder:
    """What one worker of ``hpsearch run`` is to do."""

    spec: StudySpec
    url: str
    name: str
    threads: int
    seed_offset: int
    data_dir: Path | None
    # When the study's time budget ends (time.time()), counted from the launcher's start: a
    # worker's own start-up (importing torch) must not extend it.
    deadline: float | None


def start(order: WorkerOrder, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start one worker process; its stderr is piped to the launcher, its stdout discarded."""
    # The arguments only name the worker in ps and top; its order comes on stdin.
    study = str(order.spec.path or order.spec.name)
    proc = subprocess.Popen(
        [sys.executable, "-m", ENTRY, "worker", "--study", study, "--worker-id", order.name],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(pickle.dumps(order))
        proc.stdin.flush()
    except BrokenPipeError:  # it died at once; its exit code and stderr tell why
        pass
    return proc


def _read_order(stream: IO[bytes]) -> WorkerOrder:
    try:
        order = pickle.load(stream)  # from our own launcher, through a pipe only it holds
    except Exception:
        order = None
    if not isinstance(order, WorkerOrder):
        raise UsageError(
            "this program is a worker of `hpsearch run`, which hands it its work; "
            "to start a worker yourself, run `hpsearch worker --study ...`"
        )
    return order


def _stop_with_launcher(fd: int) -> None:
    """SIGTERM this worker (taken as Ctrl-C) once the launcher's end of stdin is closed."""

    def watch() -> None:
        # The raw descriptor, not sys.stdin: a thread blocked inside a buffered reader holds
        # its lock, which the interpreter needs at exit.
        while os.read(fd, 1 << 12):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def main() -> int:
    from hpsearch.search._worker import configure_logging, run_worker

    try:
        order = _read_order(sys.stdin.buffer)
        _stop_with_launcher(sys.stdin.fileno())
        configure_logging(verbose=False, debug=False)
        return run_worker(
            order.spec,
            order.url,
            name=order.name,
            threads=order.threads,
            data_dir=order.data_dir,
            deadline=order.deadline,
            seed_offset=order.seed_offset,
            report=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
