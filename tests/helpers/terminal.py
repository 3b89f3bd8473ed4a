"""A command under a real pseudo-terminal, as a person's terminal, ``script`` or
``docker run -t`` runs it: what it wrote, byte for byte, and Ctrl-C as the terminal sends it
(SIGINT to the foreground process group)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def plain(raw: bytes) -> str:
    """What a log of the terminal reads as, escape sequences removed, lines as printed."""
    return ANSI.sub(b"", raw).replace(b"\r\n", b"\n").decode("utf-8", "replace")


class PtyRun:
    """A process whose stdin, stdout and stderr are the slave end of a new pseudo-terminal,
    which is also its controlling terminal (its own session)."""

    def __init__(
        self, cmd: list[str], *, cwd: Path, env: dict[str, str], columns: int = 120
    ) -> None:
        self.master, slave = os.openpty()
        env = {**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        self.output = b""
        self.seconds = 0.0  # from the start to the end of its output

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 1 << 16)
        except OSError:  # EIO: every process holding the slave end has exited
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, seen: Callable[[str], bool], timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not seen(plain(self.output)):
            assert time.monotonic() < end, f"timed out; output so far:\n{plain(self.output)}"
            assert self._read(0.2), f"exited early:\n{plain(self.output)}"

    def ctrl_c(self) -> None:
        """What the terminal does on Ctrl-C: SIGINT to its foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 180) -> int:
        end = time.monotonic() + timeout
        try:
            while self._read(0.2):
                assert time.monotonic() < end, f"timed out; output:\n{plain(self.output)}"
            self.seconds = time.monotonic() - self.started
            return self.proc.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            os.close(self.master)
