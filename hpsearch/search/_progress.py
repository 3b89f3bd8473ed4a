"""What ``hpsearch run`` knows about its study at each refresh: the counts, the running trials
and their epochs, the trials finished since the last refresh, the best trial, and an ETA.

The launcher reads it from the database (the objective reports every epoch's validation score
as an intermediate value), so the view needs no channel from the workers.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.config import METRIC_NAMES
from hpsearch.search._lifecycle import Counts, best_trial, count_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_STATE_WORDS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}


@dataclass(frozen=True)
class RunningTrial:
    number: int
    worker: str
    epoch: int  # the last epoch reported; 0 before the first
    value: float | None  # its validation score
    params: Mapping[str, Any]


@dataclass(frozen=True)
class FinishedTrial:
    number: int
    state: str  # complete, pruned or failed
    value: float | None  # the trial's score; a pruned trial's best reported one
    epochs: int
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Eta:
    """Time left, with one standard deviation of it, from ``based_on`` finished trials."""

    seconds: float
    spread: float
    based_on: int
    capped: bool = False  # the study's time budget ends the run before the trials would


@dataclass(frozen=True)
class Progress:
    """What the live view shows at each refresh."""

    study_name: str
    metric_name: str  # what the scores are: the study's metric, as METRIC_NAMES names it
    counts: Counts
    budget: int
    epochs: int  # each trial's epochs at most
    elapsed: float
    workers_alive: int
    running: Sequence[RunningTrial] = ()
    finished: Sequence[FinishedTrial] = ()  # since the last refresh, in order
    best: FrozenTrial | None = None
    eta: Eta | None = None


def estimate_eta(
    durations: Sequence[float],
    *,
    left: int,
    running_ages: Sequence[float],
    workers: int,
    time_left: float | None = None,
) -> Eta | None:
    """Time until ``left`` more trials finish, ``running_ages`` of them already started, on
    ``workers`` workers; None before the first finished trial.

    Each trial is taken to last the mean of ``durations``. A running trial still needs what its
    age leaves of that mean; a trial not yet started, all of it; the work left is shared by the
    workers. The spread is that of a sum of the trials left, each as uncertain as the durations
    vary, plus the mean's own uncertainty. A few durations say little about the rest (the first
    trials may all run in full, later ones be pruned early), so the durations are taken to vary
    by at least their mean over the first four trials, and by 2 mean / sqrt(n) after. As the
    running trials age the ETA counts down; when a trial ends it moves within the spread it
    showed.
    """
    if not durations:
        return None
    if left <= 0:
        return Eta(0.0, 0.0, len(durations))
    n = len(durations)
    mean = statistics.fmean(durations)
    sd = max(statistics.stdev(durations) if n >= 2 else 0.0, mean * min(1.0, 2 / math.sqrt(n)))
    started = list(running_ages)[:left]
    work = sum(max(mean - age, 0.0) for age in started) + (left - len(started)) * mean
    share = max(1, min(workers, left))
    seconds = work / share
    spread = math.sqrt(left * sd**2 + (left * sd) ** 2 / n) / share
    if time_left is not None and time_left < seconds:
        return Eta(max(time_left, 0.0), 0.0, n, capped=True)
    return Eta(seconds, spread, n)


class Tracker:
    """Reads a study's progress at each refresh of ``hpsearch run``.

    Trials finished before this run are known at the start and never reported as new; the
    ETA rests on the durations of the trials finished in this run only (another session's
    trials may have run on other machines or with other thread counts).
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        budget: int,
        epochs: int,
        started: float,
        deadline: float | None = None,
        metric: str,
        short_names: Mapping[str, str] | None = None,
    ) -> None:
        self.study = study
        self.metric_name = METRIC_NAMES[metric]
        self.budget, self.epochs = budget, epochs
        self.started, self.deadline = started, deadline
        self.short_names = dict(short_names or {})
        self._seen = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
        self._durations: list[float] = []
        self._finished_count = len(self._seen)
        self._best: FrozenTrial | None = best_trial(study)

    def poll(self, workers_alive: int) -> Progress:
        counts = count_trials(self.study)
        finished = self._new_finished(counts)
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        now = time.time()
        ages = [now - t.datetime_start.timestamp() for t in running if t.datetime_start]
        eta = estimate_eta(
            self._durations,
            left=self.budget - counts.done,
            running_ages=sorted(ages, reverse=True),
            workers=workers_alive,
            time_left=None if self.deadline is None else self.deadline - now,
        )
        return Progress(
            study_name=self.study.study_name,
            metric_name=self.metric_name,
            counts=counts,
            budget=self.budget,
            epochs=self.epochs,
            elapsed=now - self.started,
            workers_alive=workers_alive,
            running=[self._running(t) for t in sorted(running, key=lambda t: t.number)],
            finished=finished,
            best=self._best,
            eta=eta,
        )

    def _new_finished(self, counts: Counts) -> list[FinishedTrial]:
        """The trials finished since the last poll; read only when the counts moved."""
        if counts.done + counts.failed == self._finished_count:
            return []
        # Every read before any change: a database lost midway leaves the next poll to retry.
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        new = sorted((t for t in trials if t.number not in self._seen), key=_finish_time)
        if any(t.state == TrialState.COMPLETE for t in new):
            self._best = best_trial(self.study)
        self._finished_count = counts.done + counts.failed
        self._seen.update(t.number for t in new)
        for t in new:
            if t.state != TrialState.FAIL and t.duration is not None:
                self._durations.append(t.duration.total_seconds())
        return [finished_trial(t) for t in new]

    def _running(self, trial: FrozenTrial) -> RunningTrial:
        steps = trial.intermediate_values
        last = max(steps) if steps else 0
        worker = str(trial.user_attrs.get("worker", "-"))
        return RunningTrial(
            number=trial.number,
            worker=self.short_names.get(worker, worker),
            epoch=last,
            value=steps.get(last),
            params=trial.params,
        )


def _finish_time(trial: FrozenTrial) -> float:
    moment = trial.datetime_complete or trial.datetime_start
    return moment.timestamp() if moment is not None else 0.0


def finished_trial(trial: FrozenTrial) -> FinishedTrial:
    """What a log line says about a finished trial."""
    steps = trial.intermediate_values
    finite = [v for v in steps.values() if math.isfinite(v)]
    best_reported = max(finite) if finite else None
    value = trial.value if trial.state == TrialState.COMPLETE else best_reported
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.duration is not None:
        seconds = trial.duration.total_seconds()
    return FinishedTrial(
        number=trial.number,
        state=_STATE_WORDS.get(trial.state, "failed"),
        value=value,
        epochs=int(trial.user_attrs.get("epochs_run", max(steps) if steps else 0)),
        seconds=float(seconds or 0.0),
        error=str(trial.user_attrs.get("error", "")),
    )
