"""Concurrency soak: four workers race through many one-epoch trials while a dashboard reads
the same database. No lock error, no failed trial, exactly the budget, every trial whole."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from hpsearch import search, storage
from hpsearch import study as studyfile
from tests.helpers.network import free_port

TRIALS = 40
HPSEARCH = (sys.executable, "-m", "hpsearch")
WORKERS = 4
# What a lost write race looks like in any of the processes' output.
LOCK_ERRORS = ("database is locked", "deadlock", "could not obtain lock", "Traceback")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class DashboardPoller:
    """``hpsearch dashboard`` in a process, read by a thread until stopped."""

    def __init__(self, url: str, study: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.study = study
        self.polls = 0
        self.seen_trials = 0
        self.errors: list[str] = []
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*HPSEARCH, "dashboard", "--storage", url, "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        base = f"http://127.0.0.1:{self.port}/api"
        while not self.stop.is_set():
            try:
                studies = get_json(f"{base}/studies")["study_summaries"]
            except OSError:  # not listening yet
                if self.proc.poll() is not None:
                    self.errors.append(f"dashboard exited with {self.proc.returncode}")
                    return
                time.sleep(0.2)
                continue
            except Exception as exc:  # a 500, a broken answer
                self.errors.append(repr(exc))
                continue
            ours = [s for s in studies if s["study_name"] == self.study]
            if ours:
                try:
                    detail = get_json(f"{base}/studies/{ours[0]['study_id']}?after=0")
                except Exception as exc:
                    self.errors.append(repr(exc))
                    continue
                self.polls += 1
                self.seen_trials = max(self.seen_trials, len(detail["trials"]))
            time.sleep(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def dashboard(url: str, study: str, env: dict[str, str], log: Path) -> Iterator[DashboardPoller]:
    poller = DashboardPoller(url, study, env, log)
    try:
        yield poller
    finally:
        poller.close()


def soak(tmp_path: Path, trec_dir: Path, url: str, name: str) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "config": {"hidden_dim": 8, "embedding_dim": 8, "batch_size": 256, "threads": 1},
                "space": {
                    "lr": {"low": 1e-3, "high": 1e-2, "log": True},
                    "dropout": {"low": 0.0, "high": 0.5},
                },
                "sampler": {"name": "tpe", "seed": 0, "options": {"n_startup_trials": 5}},
                "pruner": "none",
                "budget": {"trials": TRIALS, "epochs": 1},
            }
        )
    )
    # The study exists before the dashboard opens the database (it refuses a missing one).
    search.open_study(studyfile.load_study(path), url, heartbeat=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env |= {"HPSEARCH_DATA_DIR": str(trec_dir), "HPSEARCH_TREC_URL": "http://127.0.0.1:9/"}
    with dashboard(url, name, env, tmp_path / "dashboard.log") as poller:
        run = subprocess.run(
            [*HPSEARCH, "run", "-s", str(path), "--storage", url, "--workers", str(WORKERS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for text in (output, (tmp_path / "dashboard.log").read_text(errors="replace")):
        assert not [e for e in LOCK_ERRORS if e in text], text
    assert poller.errors == []
    assert poller.polls > 0 and poller.seen_trials > 0, "the dashboard was never read"

    study = optuna.load_study(study_name=name, storage=storage.open_storage(url, heartbeat=False))
    trials = study.get_trials()
    assert Counter(t.state.name for t in trials) == {"COMPLETE": TRIALS}
    # They all took part: as many as run starts, one per core at most.
    assert len({t.user_attrs["worker"] for t in trials}) == min(WORKERS, search.available_cores())
    for trial in trials:
        assert set(trial.params) == {"lr", "dropout"}
        assert trial.value is not None and 0.0 <= trial.value <= 1.0
        assert trial.intermediate_values.keys() == {1}
        assert trial.user_attrs["config"]["lr"] == trial.params["lr"]


def test_soak_sqlite(tmp_path: Path, trec_dir: Path) -> None:
    soak(tmp_path, trec_dir, f"sqlite:///{tmp_path / 'soak.db'}", "soak")


@pytest.mark.postgres
def test_soak_postgres(tmp_path: Path, trec_dir: Path, postgres_url: str) -> None:
    name = f"soak-{uuid.uuid4().hex[:10]}"
    try:
        soak(tmp_path, trec_dir, postgres_url, name)
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=postgres_url)
