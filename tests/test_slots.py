"""CPU slots: at most COUNT holders at once, across processes; a dead holder frees its slot."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpsearch.errors import UsageError
from hpsearch.slots import ENV_SLOTS, CpuSlots

HOLDER = """
import sys, time
from pathlib import Path
from hpsearch.slots import CpuSlots
with CpuSlots(Path(sys.argv[1]), 1).hold():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_count_holders_at_once(tmp_path: Path) -> None:
    slots = CpuSlots(tmp_path, 2)
    inside, most = 0, 0
    lock = threading.Lock()

    def hold() -> None:
        nonlocal inside, most
        with slots.hold() as got:
            assert got
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert most == 2


def test_deadline_while_waiting_yields_false(tmp_path: Path) -> None:
    slots = CpuSlots(tmp_path, 1)
    with slots.hold() as first:
        assert first
        started = time.time()
        with slots.hold(deadline=started + 0.2) as second:
            assert second is False
        assert 0.2 <= time.time() - started < 2
    with slots.hold(deadline=time.time()) as again:
        assert again  # free again: a passed deadline does not matter when a slot is free


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        slots = CpuSlots(tmp_path, 1)
        with slots.hold(deadline=time.time() + 0.1) as got:
            assert got is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with slots.hold(deadline=time.time() + 5) as got:
            assert got
    finally:
        holder.kill()
        holder.wait()


def test_env_round_trip(tmp_path: Path) -> None:
    slots = CpuSlots(tmp_path, 3)
    back = CpuSlots.from_env({ENV_SLOTS: slots.to_env()})
    assert back is not None and (back.directory, back.count) == (tmp_path, 3)
    assert CpuSlots.from_env({}) is None


@pytest.mark.parametrize("value", ["3", "0:{dir}", "x:{dir}", "2:{dir}/missing"])
def test_bad_env_value_is_a_usage_error(tmp_path: Path, value: str) -> None:
    value = value.format(dir=tmp_path)
    with pytest.raises(UsageError, match=f"{ENV_SLOTS}=.*COUNT:DIRECTORY"):
        CpuSlots.from_env({ENV_SLOTS: value})
