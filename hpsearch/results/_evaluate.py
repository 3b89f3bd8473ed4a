"""Final evaluation: retrain the best configuration with several seeds and score the test set.

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
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

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
    search_value: float  # the trial's validation accuracy during the search
    config: dict[str, Any]
    runs: list[SeedRun]
    data: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    evaluated_at: str = ""

    @property
    def valid(self) -> Stats:
        return Stats.of([r.valid_acc for r in self.runs])

    @property
    def test(self) -> Stats | None:
        scores = [r.test_acc for r in self.runs if r.test_acc is not None]
        return Stats.of(scores) if scores else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "trial": self.trial,
            "search_value": self.search_value,
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
            test_acc=None if result.test_acc is None else float(result.test_acc),
            best_epoch=int(result.best_epoch),
            epochs_run=len(result.history),
            seconds=round(float(result.seconds), 3),
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
        title=f"{evaluation.study}: best trial {evaluation.trial} "
        f"(search valid acc {evaluation.search_value:.4f}), retrained"
        + ("" if evaluation.test else "; no test set: validation only")
    )
    for column in ("seed", "valid acc", "test acc", "best epoch", "seconds"):
        table.add_column(column, justify="right")
    for run in evaluation.runs:
        table.add_row(
            str(run.seed),
            f"{run.valid_acc:.4f}",
            "-" if run.test_acc is None else f"{run.test_acc:.4f}",
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
