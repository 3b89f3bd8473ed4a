"""Final evaluation: retrain the best configuration with several seeds and score the test set.

Scores are the study's metric (accuracy or macro-F1; both are kept per run).

This is the only place the test set is read for a study's result, and only after the search
is over: the best trial is chosen by validation accuracy, each run's best epoch is chosen by
validation accuracy, and the test accuracy of that epoch's weights is only reported.

A dataset without a test file (``data.test`` not given) is scored on validation only, and
every output says there is no test set.

Seeds: the best trial's own seed first (its run reproduces the trial), then seed + 1,
seed + 2, ... Spread is the sample standard deviation (n - 1; 0 for a single seed).

The summary is stored on the study as the user attribute ``hpsearch_evaluation``, so that
``best``, ``export`` and comparisons reuse it without retraining. That write is deliberate:
it is the one write of a results command, and running ``evaluate`` again replaces it.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from hpsearch.config import METRIC_NAMES
from hpsearch.errors import UsageError
from hpsearch.results import _export as export
from hpsearch.results import _reading as reading
from hpsearch.results._export import EVALUATION_ATTR
from hpsearch.training import train_from_config


@dataclass(frozen=True)
class SeedRun:
    seed: int
    valid_acc: float  # at the best epoch, which validation chose
    test_acc: float | None  # of the best epoch's weights; None: the dataset has no test set
    best_epoch: int
    epochs_run: int
    seconds: float
    valid_f1: float | None = None  # macro-F1, beside accuracy
    test_f1: float | None = None

    def score(self, metric: str, part: str) -> float | None:
        """The ``metric`` (a config's) of the ``valid`` or ``test`` part."""
        name = f"{part}_{'f1' if metric == 'macro_f1' else 'acc'}"
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float  # sample standard deviation (n - 1); 0.0 for one value

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(mean=statistics.fmean(values), std=std)


@dataclass(frozen=True)
class Evaluation:
    study: str
    trial: int
    search_value: float  # the trial's value (its study's metric) during the search
    config: dict[str, Any]
    runs: list[SeedRun]
    data: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    evaluated_at: str = ""

    @property
    def metric(self) -> str:
        """What the study maximised: ``valid`` and ``test`` are this score."""
        return str(self.config.get("metric", "accuracy"))

    @property
    def valid(self) -> Stats:
        return self._stats("valid") or Stats(math.nan, math.nan)

    @property
    def test(self) -> Stats | None:
        return self._stats("test")

    def _stats(self, part: str) -> Stats | None:
        values = [r.score(self.metric, part) for r in self.runs]
        scores = [v for v in values if v is not None]
        return Stats.of(scores) if scores else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "trial": self.trial,
            "search_value": self.search_value,
            "metric": METRIC_NAMES.get(self.metric, self.metric),  # of valid and test
            "seeds": [r.seed for r in self.runs],
            "valid": asdict(self.valid),
            "test": asdict(self.test) if self.test else None,  # None: no test set
            "std": "sample (n - 1)",
            "runs": [asdict(r) for r in self.runs],
            "config": self.config,
            "data": self.data,
            "versions": export.package_versions(),
            "evaluated_at": self.evaluated_at,
        }


def evaluate_study(
    study_name: str,
    url: str,
    *,
    seeds: int = 3,
    data_dir: Path | None = None,
    on_result: Callable[[SeedRun], None] | None = None,
) -> Evaluation:
    """Retrain the best trial's configuration ``seeds`` times; store and return the summary."""
    if seeds < 1:
        raise UsageError(f"--seeds: must be >= 1, got {seeds}")
    study = reading.load_study_for_reading(study_name, url)
    best = reading.best_complete_trial(study)
    cfg = reading.trial_config(study_name, best)
    first_seed = int(best.user_attrs.get("seed", cfg.seed))
    runs: list[SeedRun] = []
    fingerprint: dict[str, str] = {}
    for seed in range(first_seed, first_seed + seeds):
        result, dataset = train_from_config(cfg.replace(seed=seed), data_dir, with_test=True)
        run = SeedRun(
            seed=seed,
            valid_acc=float(result.best_valid_acc),
            test_acc=result.test_acc,
            best_epoch=int(result.best_epoch),
            epochs_run=len(result.history),
            seconds=round(float(result.seconds), 3),
            valid_f1=float(result.best_valid_f1),
            test_f1=result.test_f1,
        )
        runs.append(run)
        fingerprint = dict(dataset.fingerprint)
        if on_result is not None:
            on_result(run)
    evaluation = Evaluation(
        study=study.study_name,
        trial=best.number,
        search_value=float(best.value or 0.0),
        config=cfg.to_dict(),
        runs=runs,
        data=fingerprint,
        evaluated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    study.set_user_attr(EVALUATION_ATTR, evaluation.to_dict())
    return evaluation


def render(evaluation: Evaluation) -> Table:
    """Per-seed rows and the mean ± std over seeds."""
    table = Table(
        title=Text(
            f"{evaluation.study}: best trial {evaluation.trial} "
            f"(search {METRIC_NAMES.get(evaluation.metric)} {evaluation.search_value:.4f}), "
            "retrained" + ("" if evaluation.test else "; no test set: validation only")
        )
    )
    short = "F1" if evaluation.metric == "macro_f1" else "acc"
    for column in ("seed", f"valid {short}", f"test {short}", "best epoch", "seconds"):
        table.add_column(column, justify="right")
    for run in evaluation.runs:
        scores = [run.score(evaluation.metric, part) for part in ("valid", "test")]
        table.add_row(
            str(run.seed),
            *("-" if score is None else f"{score:.4f}" for score in scores),
            str(run.best_epoch),
            f"{run.seconds:.1f}",
        )
    valid, test = evaluation.valid, evaluation.test
    table.add_section()
    table.add_row(
        "mean ± std",
        f"{valid.mean:.4f} ± {valid.std:.4f}",
        f"{test.mean:.4f} ± {test.std:.4f}" if test else "no test set",
        "",
        "",
    )
    return table
