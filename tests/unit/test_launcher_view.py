"""What ``hpsearch run`` shows, in process: the ETA's arithmetic and the lines and view it is
shown in. The same through a real pipe and pseudo-terminal: tests/system/test_launcher_view.py."""

from __future__ import annotations

import io
import math
import random
from dataclasses import replace

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hpsearch.cli._views import (
    RunConsoleView,
    RunLogView,
    eta_text,
    live_view,
    run_view,
    status_line,
    summary_table,
    trial_line,
)
from hpsearch.config import METRIC_NAMES
from hpsearch.search import Counts, Eta, FinishedTrial, Progress, RunningTrial, estimate_eta

BEST = create_trial(
    state=TrialState.COMPLETE,
    value=0.8606,
    params={"lr": 8.7e-4, "dropout": 0.0149},
    distributions={
        "lr": FloatDistribution(1e-5, 1e-2, log=True),
        "dropout": FloatDistribution(0, 1),
    },
)
BEST.number = 0


def progress(**changes: object) -> Progress:
    base: dict[str, object] = {
        "study_name": "reg",
        "metric_name": "validation accuracy",
        "counts": Counts(complete=3, pruned=2, failed=1, running=2),
        "budget": 24,
        "epochs": 60,
        "elapsed": 131.0,
        "workers_alive": 2,
        "running": [
            RunningTrial(6, "w1", 12, 0.7123, {"lr": 1.234567e-3, "dropout": 0.25}),
            RunningTrial(7, "w2", 0, None, {"lr": 2e-3, "dropout": 0.1}),
        ],
        "best": BEST,
        "eta": Eta(1351.0, 13.0, 5),
    }
    return Progress(**{**base, **changes})  # type: ignore[arg-type]


# --- the ETA ----------------------------------------------------------------------------------


def test_no_eta_before_the_first_finished_trial() -> None:
    assert estimate_eta([], left=10, running_ages=[5.0], workers=2) is None
    assert eta_text(None) == "ETA after the first trial"


def test_eta_is_the_mean_duration_times_the_trials_left_over_the_workers() -> None:
    eta = estimate_eta([50.0, 70.0], left=4, running_ages=[], workers=2)
    assert eta is not None and eta.seconds == pytest.approx(4 * 60 / 2)
    assert estimate_eta([60.0], left=0, running_ages=[], workers=2) == Eta(0.0, 0.0, 1)


def test_eta_counts_down_as_the_running_trials_age() -> None:
    durations = [60.0, 60.0, 60.0]
    before = estimate_eta(durations, left=3, running_ages=[10.0, 20.0], workers=2)
    after = estimate_eta(durations, left=3, running_ages=[15.0, 25.0], workers=2)
    assert before is not None and after is not None
    assert before.seconds == pytest.approx((50 + 40 + 60) / 2)
    assert before.seconds - after.seconds == pytest.approx(5.0)
    assert after.spread == before.spread  # it moves only when a trial ends


def test_one_duration_is_as_uncertain_as_it_is_long() -> None:
    eta = estimate_eta([60.0], left=4, running_ages=[], workers=1)
    assert eta is not None
    assert eta.spread == pytest.approx(math.sqrt(4 * 60**2 + (4 * 60) ** 2))


def test_fewer_trials_left_than_workers_share_no_further() -> None:
    eta = estimate_eta([60.0, 60.0], left=1, running_ages=[], workers=4)
    assert eta is not None and eta.seconds == pytest.approx(60.0)


def test_the_time_budget_caps_the_eta() -> None:
    eta = estimate_eta([60.0, 60.0], left=10, running_ages=[], workers=1, time_left=90.0)
    assert eta == Eta(90.0, 0.0, 2, capped=True)
    assert eta_text(eta) == "ETA 1:30 (time budget)"


def test_the_eta_stays_within_what_it_states() -> None:
    # Simulated studies whose trials are either pruned early or run in full: after each
    # finished trial, the time the rest then took lies within two stated spreads of the ETA
    # (the view went 18:53, 42:30, 3:53 with 5 minutes left).
    inside = total = 0
    for seed in range(20):
        rng = random.Random(seed)
        durations = [rng.choice([120, 40, 30, 120, 50]) * rng.uniform(0.9, 1.1) for _ in range(24)]
        for k in range(1, len(durations)):
            eta = estimate_eta(durations[:k], left=24 - k, running_ages=[], workers=1)
            assert eta is not None
            total += 1
            inside += abs(eta.seconds - sum(durations[k:])) <= 2 * eta.spread
    assert inside / total >= 0.9


# --- the lines and the view -------------------------------------------------------------------


def test_a_trial_line_has_every_field_on_one_line() -> None:
    trial = FinishedTrial(5, "pruned", 0.71234, 20, 41.26)
    assert trial_line(trial, progress()) == (
        "[2:11] trial 5 pruned  validation accuracy 0.7123  epochs 20/60  41.3 s  "
        "best 0.8606 (trial 0)  finished 5/24  ETA 22:31 ± 0:13"
    )
    failed = FinishedTrial(6, "failed", None, 0, 0.2, error="TrainingDiverged: loss is nan")
    assert trial_line(failed, progress(best=None, eta=None)).endswith(
        "validation accuracy -  epochs 0/60  0.2 s  best -  finished 5/24  "
        "ETA after the first trial  "
        "error: TrainingDiverged: loss is nan"
    )


def test_the_lines_and_the_view_name_the_studys_metric() -> None:
    f1 = progress(metric_name=METRIC_NAMES["macro_f1"])
    trial = FinishedTrial(5, "complete", 0.71234, 60, 41.26)
    assert trial_line(trial, f1).startswith("[2:11] trial 5 complete  validation macro-F1 0.7123")
    out = io.StringIO()
    view = RunConsoleView(Console(file=out, width=120, color_system=None, force_terminal=True))
    view.progress(replace(f1, finished=[trial]))
    view.close()
    assert "accuracy" not in out.getvalue() and "acc " not in out.getvalue()
    head = [line.split() for line in out.getvalue().splitlines() if "params" in line]
    assert head and head[0][:5] == ["trial", "worker", "epoch", "validation", "macro-F1"]
    table = io.StringIO()
    Console(file=table, width=120).print(
        summary_table("reg", [BEST], complete=1, metric_name=METRIC_NAMES["macro_f1"])
    )
    assert "validation macro-F1" in table.getvalue() and "acc" not in table.getvalue()


def test_a_status_line_names_the_running_trials_and_no_eta_once_stopped() -> None:
    assert status_line(progress()) == (
        "[2:11] finished 5/24  complete 3  pruned 2  failed 1  running 2  best 0.8606 (trial 0)  "
        "ETA 22:31 ± 0:13  (trial 6 epoch 12/60 0.7123, trial 7 epoch 0/60 -)"
    )
    stopped = status_line(progress(workers_alive=0, running=[]))
    assert stopped.endswith("best 0.8606 (trial 0)")


def test_the_live_view_has_a_row_per_running_trial() -> None:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(live_view(progress()))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "reg  elapsed 2:11  ETA 22:31 ± 0:13" in text
    assert "finished 5/24  complete 3  pruned 2  failed 1  running 2  workers 2" in text
    assert "best 0.8606 (trial 0)  lr=0.00087 dropout=0.0149" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("6 ", "7 "))]
    assert rows == [
        ["6", "w1", "12/60", "0.7123", "lr=0.00123", "dropout=0.25"],
        ["7", "w2", "-/60", "-", "lr=0.002", "dropout=0.1"],
    ]


def test_the_view_follows_the_output() -> None:
    assert isinstance(run_view(Console(file=io.StringIO())), RunLogView)
    assert isinstance(run_view(Console(file=io.StringIO(), force_terminal=True)), RunConsoleView)


def test_the_log_view_says_where_it_stands_when_no_trial_ends_for_a_minute() -> None:
    out = io.StringIO()
    view = RunLogView(Console(file=out, width=40))
    view.progress(progress(elapsed=30.0, finished=[]))
    assert out.getvalue() == ""
    view.progress(progress(elapsed=61.0, finished=[]))
    view.progress(progress(elapsed=62.0, finished=[FinishedTrial(5, "complete", 0.8, 60, 9.0)]))
    view.worker_line("vm-1-w1", "vm-1-w1: 1 trial run; budget spent")
    view.close()
    lines = out.getvalue().splitlines()
    assert [line[:20] for line in lines] == [
        "[1:01] finished 5/24",
        "[1:02] trial 5 compl",
        "vm-1-w1 1 trial run;",
        "[1:02] finished 5/24",
    ]
    assert all(len(line) > 40 for line in lines[:2])  # never wrapped at the console's width


# --- what the launcher reads at each refresh ---------------------------------------------------


def test_the_tracker_reports_each_trial_finished_in_this_run_once() -> None:
    import optuna

    from hpsearch.search._progress import Tracker

    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5))  # before this run
    tracker = Tracker(
        study, budget=4, epochs=10, started=0.0, metric="macro_f1", short_names={"host-1-w1": "w1"}
    )
    running = study.ask({"lr": FloatDistribution(1e-4, 1e-2, log=True)})
    running.set_user_attr("worker", "host-1-w1")
    running.report(0.61, step=1)
    running.report(0.64, step=2)
    first = tracker.poll(workers_alive=1)
    assert first.metric_name == "validation macro-F1"
    assert first.finished == [] and first.eta is None and first.best.value == 0.5  # type: ignore[union-attr]
    assert [(r.number, r.worker, r.epoch, r.value) for r in first.running] == [(1, "w1", 2, 0.64)]
    study.tell(running, state=TrialState.PRUNED)
    second = tracker.poll(workers_alive=1)
    assert [(t.number, t.state, t.value, t.epochs) for t in second.finished] == [
        (1, "pruned", 0.64, 2)
    ]
    assert second.running == [] and second.eta is not None
    assert tracker.poll(workers_alive=1).finished == []
