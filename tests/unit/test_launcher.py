"""The launcher's split of the cores between its workers (no process started). The runs of
real worker processes are in tests/system/test_launcher.py."""

from __future__ import annotations

import pytest

from hpsearch.search import _launcher as launcher


@pytest.mark.parametrize(
    ("workers", "cores", "threads"), [(1, 2, 2), (4, 2, 1), (2, 16, 8), (3, 16, 5), (8, 1, 1)]
)
def test_threads_per_worker_never_oversubscribes(workers: int, cores: int, threads: int) -> None:
    assert launcher.threads_per_worker(workers, cores) == threads
