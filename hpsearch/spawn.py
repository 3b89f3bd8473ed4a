"""How ``hpsearch run`` starts its worker processes: forked from a fork server.

A worker is ``hpsearch worker`` in its own process. Started as a fresh interpreter, each one
spends ~4 s of CPU importing torch, optuna and SQLAlchemy, plus ``torch._dynamo``, which
torch's optimizers import at their first use (benchmarks/README.md). With more workers than
cores that start-up competes with the training of the workers already running: 4 workers on
2 cores were measurably slower than 2. So the workers are forked from a multiprocessing fork
server that has imported all of that once: N workers cost one start-up, whatever N is.

A forked worker is the same program as a started one: it gets the launcher's working
directory, umask and the environment built for it, runs ``hpsearch worker`` with the same
arguments through the same CLI entry point (same messages, same exit codes), writes its
stderr to a pipe the launcher reads, and shows ``hpsearch worker ...`` in ``ps``.
The fork server has only imported modules: no thread, no CUDA context, no database
connection exists in it, so forking it is safe. Where there is no fork server (Windows), where
it cannot be started (a warning says why), when the program is a script that a forked worker
would run again (``main_reruns_safely``), or with ``HPSEARCH_WORKER_START=subprocess``,
workers are started as ``python -m hpsearch worker`` subprocesses instead (each paying the
start-up; benchmarks/scaling.py compares the two).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import subprocess
import sys
import threading
import time
from enum import StrEnum
from multiprocessing.reduction import DupFd
from typing import IO, Any, Protocol

from hpsearch.errors import UsageError

ENV_START = "HPSEARCH_WORKER_START"
log = logging.getLogger(__name__)

# Imported once in the fork server; every forked worker starts with them loaded.
PRELOAD = [
    "torch",
    "torch._dynamo",  # imported by torch.optim at the first optimizer: ~1.4 s on its own
    "optuna",
    "sqlalchemy",
    "hpsearch.cli",
    "hpsearch.workers",
    "hpsearch.objective",
    "hpsearch.train",
]


class WorkerHandle(Protocol):
    """What the launcher needs from a worker process (a subset of ``subprocess.Popen``)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stderr(self) -> IO[bytes] | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


class StartMethod(StrEnum):
    forkserver = "forkserver"  # forked from a server that imported everything once
    subprocess = "subprocess"  # a fresh ``python -m hpsearch worker`` each


def forkserver_available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def start_method() -> StartMethod:
    """``HPSEARCH_WORKER_START``, checked; by default the fork server where there is one and
    the program's main module may be imported by a worker (``main_reruns_safely``)."""
    value = os.environ.get(ENV_START, "").strip().lower()
    if not value:
        if forkserver_available() and main_reruns_safely():
            return StartMethod.forkserver
        return StartMethod.subprocess
    try:
        method = StartMethod(value)
    except ValueError:
        allowed = " or ".join(m.value for m in StartMethod)
        raise UsageError(f"{ENV_START}: must be {allowed}, got {value!r}") from None
    if method is StartMethod.forkserver and not forkserver_available():
        raise UsageError(f"{ENV_START}: this platform has no fork server; use subprocess")
    return method


_fallback_reason: str | None = None  # why the fork server failed; workers are subprocesses


def _fall_back(exc: OSError) -> None:
    global _fallback_reason
    if _fallback_reason is None:
        _fallback_reason = str(exc) or type(exc).__name__
        log.warning("cannot use a fork server (%s): starting workers as subprocesses", exc)


def main_reruns_safely() -> bool:
    """Whether a forked worker may import this program's main module.

    multiprocessing runs the parent's main module again in every child, as ``__mp_main__``
    (all but a package's ``__main__``). The ``hpsearch`` command, ``python -m hpsearch`` and
    a notebook are safe; a user's script that calls ``run_study`` without an ``if __name__
    == "__main__":`` guard would start a new run in every worker, so such a script gets
    subprocess workers.
    """
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return bool(spec_name == "__main__" or spec_name.endswith(".__main__"))
    if getattr(main, "__file__", None) is None:
        return True  # interactive: nothing to run again
    from hpsearch import cli

    return getattr(main, "main", None) is cli.main  # pip's guarded `hpsearch` script


def warm_up(method: StartMethod) -> None:
    """Start the fork server now (it imports in the background, on another core), so that
    it is ready when the first worker is forked; no-op for subprocesses and when running."""
    if method is StartMethod.forkserver and _fallback_reason is None:
        try:
            multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
            _start_fork_server()
        except OSError as exc:
            _fall_back(exc)


def _start_fork_server() -> None:
    """Start the fork server (if it is not running) with SIGINT ignored, as it inherits it.

    It imports torch for seconds before it ignores SIGINT itself, and a Ctrl-C in a terminal
    reaches it too: it died with a traceback, and the launcher, at its next fork, with
    "Aborted." and exit 1 instead of 130. Its workers install their own handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        multiprocessing.forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def start_worker(
    args: list[str], env: dict[str, str], method: StartMethod | None = None
) -> WorkerHandle:
    """``hpsearch worker ARGS`` with environment ``env``, stdout discarded, stderr piped."""
    if (method or start_method()) is StartMethod.forkserver and _fallback_reason is None:
        try:
            return ForkedWorker(args, env)
        except OSError as exc:  # no socket, no fds left, ...: slower, but the run goes on
            _fall_back(exc)
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "worker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class ForkedWorker:
    """A worker forked from the fork server, with ``Popen``'s interface."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)  # takes effect when the server starts
        _start_fork_server()
        read_fd, write_fd = os.pipe()
        umask = os.umask(0o022)
        os.umask(umask)
        try:
            self._process = context.Process(
                target=_worker_main,
                args=(args, env, os.getcwd(), umask, DupFd(write_fd)),
                name=f"hpsearch worker {' '.join(args)}",
                # At the launcher's exit multiprocessing SIGTERMs daemonic children that
                # are still alive (a worker takes SIGTERM as Ctrl-C: its trial is failed).
                daemon=True,
            )
            self._process.start()
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds its own copy: EOF comes when it exits
        self.stderr: IO[bytes] | None = os.fdopen(read_fd, "rb")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            assert timeout is not None
            raise subprocess.TimeoutExpired(self._process.name or "worker", timeout)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None and self._process.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # exited since the check
                os.kill(self._process.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _worker_main(args: list[str], env: dict[str, str], cwd: str, umask: int, err: Any) -> None:
    """Runs in the forked process: become ``hpsearch worker ARGS`` and run it.

    ``err`` is the pipe's write end as ``DupFd`` (the fork server passes it over).
    """
    # Ctrl-C as in any process again (the fork server ignores it: _start_fork_server); the
    # worker command installs its own handlers once it runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    fd = err.detach()
    os.dup2(fd, 2)
    os.close(fd)
    _stop_with_launcher(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    argv = ["hpsearch", "worker", *args]
    # Before the environment changes: setproctitle finds argv's memory next to environ's.
    _set_title(" ".join(argv))
    os.chdir(cwd)
    os.umask(umask)
    os.environ.clear()
    os.environ.update(env)
    time.tzset()  # TZ may differ from the fork server's
    sys.argv = argv
    from hpsearch.cli import main

    main()  # exits through SystemExit with the CLI's exit code


def _stop_with_launcher(fd: int) -> None:
    """SIGTERM this worker (taken as Ctrl-C: its trial is failed) when the launcher is gone,
    even by SIGKILL or the OOM killer: a worker must not train on unseen and race the workers
    of the next `run` that resumes the study. ``fd`` is the pipe to the launcher (stderr),
    whose write end reports an error once nobody holds its read end; the fork server, the
    worker's parent, outlives the launcher, so a parent-death signal would not come."""

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP are reported without being asked for
        while True:
            if any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll()):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _set_title(title: str) -> None:
    """Show the worker as ``hpsearch worker ...`` in ps/top, not as the fork server."""
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a dependency; only cosmetic if missing
        return
    setproctitle.setproctitle(title)
