"""The launcher's split of the cores between its workers (no process started). The runs of
real worker processes are in tests/system/test_launcher.py."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.search import _launcher as launcher
from hpsearch.study import parse_study


@pytest.mark.parametrize(
    ("workers", "cores", "threads"), [(1, 2, 2), (4, 2, 1), (2, 16, 8), (3, 16, 5), (8, 1, 1)]
)
def test_threads_per_worker_never_oversubscribes(workers: int, cores: int, threads: int) -> None:
    assert launcher.threads_per_worker(workers, cores) == threads


class _Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)


@pytest.mark.parametrize(
    ("asked", "done", "gpus", "started", "note"),
    [
        (2, 0, 0, 2, None),
        (4, 0, 0, 2, "one worker per core without a GPU: starting 2 of the 4 workers"),
        (4, 0, 1, 4, None),
        (4, 9, 0, 1, "1 of 10 trials left to run: starting 1 of the 4 workers"),
        (10**20, 0, 0, 2, "one worker per core without a GPU: starting 2 of the 10"),
    ],
)
def test_workers_to_start_is_one_decision_with_one_note(
    monkeypatch: pytest.MonkeyPatch,
    asked: int,
    done: int,
    gpus: int,
    started: int,
    note: str | None,
) -> None:
    monkeypatch.setattr(launcher, "available_cores", lambda: 2)
    spec = parse_study({"name": "s", "space": {"lr": {"low": 1e-4, "high": 1e-2}},
                        "budget": {"trials": 10, "epochs": 1}}, source="s")  # fmt: skip
    study = optuna.create_study(direction="maximize")
    for _ in range(done):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    notes = _Notes()
    count = launcher._workers_to_start(spec, study, asked, gpus=gpus, view=notes)  # type: ignore[arg-type]
    assert count == started
    assert len(notes.lines) == (0 if note is None else 1), notes.lines
    if note is not None:
        assert notes.lines[0].startswith(f"note: {note}")
