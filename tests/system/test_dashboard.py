"""The dashboard reads a SQLite study file while workers write to it, without locking them out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna

from hpsearch import storage
from tests.helpers.network import free_port

# The writers run until the test has read the dashboard while they write (so a slow start of
# the server or a busy CI machine cannot turn the check into a race), then stop.
READS_WHILE_WRITING = 5

MAX_TRIALS = 400

# A worker's storage (heartbeats, WAL, busy timeout) and a trivial objective; any exception,
# "database is locked" included, makes the process exit non-zero with it on stderr.
WRITER = """
import sys, time, optuna
from pathlib import Path
from hpsearch import storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
study = optuna.create_study(
    study_name=name, storage=storage.open_storage(url), direction="maximize",
    load_if_exists=True,
)
def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    for step in range(3):
        trial.report(x * (step + 1) / 3, step)
        time.sleep(0.01)
    return x
def until_told(study, trial):
    if stop.exists():
        study.stop()
study.optimize(objective, n_trials=MAX_TRIALS, callbacks=[until_told])
"""

SERVER = "\n".join(
    [
        "import sys",
        "from hpsearch.cli._dashboard import serve",
        "serve(sys.argv[1], port=int(sys.argv[2]))",
    ]
)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``, from /proc (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_dashboard_serves_while_two_workers_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    storage.open_storage(url, heartbeat=False)  # the database exists before anyone serves it
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, url, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    writers: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 20
        while True:  # wait for the server to answer
            try:
                assert get_json(f"{base}/api/studies") == {"study_summaries": []}
                break
            except OSError:
                assert server.poll() is None, "the dashboard exited"
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)
        stop = tmp_path / "stop"
        writers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WRITER.replace("MAX_TRIALS", str(MAX_TRIALS)),
                    url,
                    "live",
                    str(stop),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        reads_while_writing = 0
        deadline = time.monotonic() + 60
        while reads_while_writing < READS_WHILE_WRITING:
            assert time.monotonic() < deadline, f"{reads_while_writing} reads while writing"
            assert all(w.poll() is None for w in writers), "a writer ended before it was told"
            studies = get_json(f"{base}/api/studies")["study_summaries"]
            if studies:
                assert [s["study_name"] for s in studies] == ["live"]
                detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}?after=0")
                if detail["trials"]:
                    reads_while_writing += 1
            time.sleep(0.1)
        stop.touch()
        for writer in writers:
            _, err = writer.communicate(timeout=30)
            assert writer.returncode == 0, err
            assert "locked" not in err, err
        # Once the writers are done, the dashboard shows exactly what the database holds.
        stored = optuna.load_study(study_name="live", storage=url).get_trials(deepcopy=False)
        assert 0 < len(stored) < 2 * MAX_TRIALS
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in stored)
        # The dashboard caches trials for a few seconds; it catches up with what is stored.
        study_id = get_json(f"{base}/api/studies")["study_summaries"][0]["study_id"]
        deadline = time.monotonic() + 30
        while True:
            detail = get_json(f"{base}/api/studies/{study_id}?after=0")
            complete = sum(t["state"] == "Complete" for t in detail["trials"])
            if complete == len(stored):
                break
            assert time.monotonic() < deadline, f"dashboard: {complete} of {len(stored)} complete"
            time.sleep(0.2)
        assert listening_addresses(port) == {"0100007F"}, "not bound to loopback only"
    finally:
        for proc in [*writers, server]:
            proc.kill()
            proc.wait()
    assert server.stdout is not None
    banner = server.stdout.read()
    assert f"at http://127.0.0.1:{port}/dashboard" in banner
