"""CPU slots: at most one training trial per core among the workers of one ``hpsearch run``.

With more workers than cores, every worker already gets a single torch thread, and still the
workers together oversubscribe the CPU: measured (benchmarks/README.md), 4 workers on 2 cores
trained 0.73-0.78x the trials per hour of 2, because time-slicing CPU-bound processes evicts
each one's weights and optimizer state from the cache at every switch. So ``run`` hands the
workers ``cores`` slots; a worker takes one before it asks for a trial and gives it back when
the trial is told (so a trial's storage and sampler work counts against its slot too, as it
would on a core of its own). The extra workers wait, holding no trial, and step in within a
poll of a slot freeing.

A slot is an exclusive ``flock`` on a file in a directory the launcher creates: the kernel
releases it when its holder exits, however it dies, so a killed worker never keeps a slot.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpsearch.errors import UsageError

ENV_SLOTS = "HPSEARCH_CPU_SLOTS"  # "COUNT:DIRECTORY", set by `hpsearch run` for its workers
POLL_SECONDS = 0.02  # waiting is rare and short; a free slot is taken within this


class CpuSlots:
    def __init__(self, directory: Path, count: int) -> None:
        if count < 1:
            raise ValueError(f"CPU slots: count ({count}) must be >= 1")
        self.directory = Path(directory)
        self.count = count

    def to_env(self) -> str:
        return f"{self.count}:{self.directory}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CpuSlots | None:
        value = (os.environ if environ is None else environ).get(ENV_SLOTS, "")
        if not value:
            return None
        count, sep, directory = value.partition(":")
        if not sep or not count.isdigit() or int(count) < 1 or not Path(directory).is_dir():
            raise UsageError(
                f"{ENV_SLOTS}={value!r}: expected COUNT:DIRECTORY with COUNT >= 1 and an "
                "existing directory (hpsearch run sets it; unset it to train without slots)"
            )
        return cls(Path(directory), int(count))

    @contextmanager
    def hold(self, deadline: float | None = None) -> Iterator[bool]:
        """Hold a free slot for the block; yields False if ``deadline`` (time.time()) came
        first. Waits as long as it takes otherwise (a signal still interrupts it)."""
        while True:
            for i in range(self.count):
                fd = os.open(self.directory / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                except BaseException:
                    os.close(fd)
                    raise
                try:
                    yield True
                finally:
                    os.close(fd)  # closing the descriptor releases the lock
                # Give the slot to a waiting worker (they poll): the one that just released
                # it would otherwise take it straight back, trial after trial.
                time.sleep(2 * POLL_SECONDS)
                return
            if deadline is not None and time.time() >= deadline:
                yield False
                return
            time.sleep(POLL_SECONDS)
