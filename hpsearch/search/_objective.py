"""The Optuna objective: suggest, build, train, report, prune.

Pruning takes the place of the report's patience: after every epoch the validation score the
study maximises (its ``metric``: accuracy or macro-F1) is reported to the trial and the
study's pruner decides whether the trial is worth another epoch, comparing it with the other
trials at the same epoch rather than with its own past.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from hpsearch.artifacts import ModelStore
from hpsearch.config import METRIC_NAMES, TrainConfig
from hpsearch.errors import ConfigError, UsageError
from hpsearch.storage import set_user_attrs
from hpsearch.study import StudySpec, acts_at
from hpsearch.training import (
    Dataset,
    EpochStats,
    TrainingDiverged,
    TrainResult,
    save_best,
    train_from_config,
)

logger = logging.getLogger(__name__)


class Objective:
    """Callable objective for one worker process; returns the best validation score."""

    def __init__(
        self,
        spec: StudySpec,
        *,
        worker: str,
        data_dir: Path | None = None,
        threads: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        models: ModelStore | None = None,
        keep_models: int = 0,
    ) -> None:
        self.spec = spec
        self.models = models  # where the best trials' models go; None: nowhere
        self.keep_models = keep_models
        self.worker = worker
        self.data_dir = data_dir
        self.threads = threads
        self.should_stop = should_stop
        self.host = socket.gethostname()
        # Asking the pruner reads the database; it is asked only when it can act.
        self.pruner_acts_at = acts_at(spec.pruner)

    def __call__(self, trial: optuna.Trial) -> float:
        # Who runs the trial is recorded before the sampler works (that can take a while on a
        # long study), so that every RUNNING trial names its worker: `run` fails the trials of
        # the workers it had to kill by that name.
        set_user_attrs(trial, {"host": self.host, "worker": self.worker})
        try:
            params = self.spec.suggest(trial)
        except Exception as exc:
            # Recorded like a crash in training, so that a worker whose every trial fails
            # here (a forced resume Optuna refuses) stops after the budget's worth of them.
            _record_crash(trial, exc)
            raise
        # The worker's thread count goes in with the params: the config is validated once.
        values = params if self.threads is None else {**params, "threads": self.threads}
        try:
            cfg = self.spec.build_config(values)
        except ConfigError as exc:
            # Sampled params that conflict (each valid alone): say why, as for any failure.
            trial.set_user_attr("error", str(exc))
            raise
        # The complete configuration is recorded first, so that every trial (even one that
        # dies) can be retrained exactly: `hpsearch export` writes this, `train` reads it.
        # It includes the thread count: on CPU the summation order, and so the weights after
        # a few epochs, depend on it.
        set_user_attrs(trial, {"config": cfg.to_dict(), "seed": cfg.seed})
        epochs_run = 0
        started = time.perf_counter()
        # Both scores of every epoch, whichever the study maximises: stored with the trial.
        curves: dict[str, list[float]] = {"valid_acc": [], "valid_macro_f1": []}

        def on_epoch(stats: EpochStats) -> None:
            nonlocal epochs_run
            epochs_run = stats.epoch
            curves["valid_acc"].append(stats.valid_acc)
            curves["valid_macro_f1"].append(stats.valid_f1)
            if self.should_stop is not None and self.should_stop():
                # Asked to stop, but the KeyboardInterrupt was lost (Python drops one raised
                # inside a finalizer, which torch runs constantly): stop here instead.
                raise KeyboardInterrupt
            score = stats.score(cfg.metric)
            trial.report(score, step=stats.epoch)
            # After the last epoch there is nothing left to save: a trial that trained in
            # full is a result, even if a pruner's rung falls on its final epoch.
            if (
                stats.epoch < cfg.epochs
                and self.pruner_acts_at(stats.epoch)
                and trial.should_prune()
            ):
                seconds = round(time.perf_counter() - started, 3)
                set_user_attrs(trial, {"epochs_run": epochs_run, "seconds": seconds, **curves})
                raise optuna.TrialPruned(
                    f"pruned at epoch {stats.epoch} with {METRIC_NAMES[cfg.metric]} {score:.4f}"
                )

        try:
            # The search's preflight has said which classes the split leaves empty, once.
            result, dataset = train_from_config(cfg, self.data_dir, on_epoch=on_epoch, warn=False)
        except TrainingDiverged as exc:
            # A diverged run is a property of its parameters, not a crash: record why, so the
            # dashboard shows it, and let Optuna mark the trial FAIL.
            set_user_attrs(trial, {"error": str(exc), "epochs_run": epochs_run})
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            _record_crash(trial, exc)
            raise
        set_user_attrs(
            trial,
            {
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "seconds": round(result.seconds, 3),
                "num_parameters": result.num_parameters,
                **curves,
            },
        )
        self._store_model(trial, result, cfg, dataset)
        return float(result.best_score)

    def _store_model(
        self, trial: optuna.Trial, result: TrainResult, cfg: TrainConfig, dataset: Dataset
    ) -> None:
        """Keep the best epoch's model if the trial ranks among the best few. A store that
        fails (a full disk) costs the model, not the trial's result."""
        if self.models is None:
            return
        try:
            self.models.keep_if_best(
                trial,
                float(result.best_score),
                lambda path: save_best(path, result, cfg, dataset),
                keep=self.keep_models,
            )
        except (OSError, UsageError) as exc:
            logger.warning("trial %d: its model was not stored: %s", trial.number, exc)


def _record_crash(trial: optuna.Trial, exc: Exception) -> None:
    """Why a trial crashed, as its ``error`` (the dashboard shows it; workers count it)."""
    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
