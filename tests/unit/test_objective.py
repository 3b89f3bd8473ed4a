"""The objective in-process: what a trial records, and trials that fail."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpsearch import config as config_mod
from hpsearch.search._objective import Objective
from hpsearch.search._worker import work
from hpsearch.study import StudySpec, parse_study
from hpsearch.study._space import parse_space
from hpsearch.training._datasets import load_dataset
from hpsearch.training._model import RNNClassifier, count_parameters

SMALL = {"pooling": "mean", "regularizer": "none", "embedding_dim": 8, "batch_size": 256}
TINY = SMALL | {"hidden_dim": 8, "device": "cpu"}
# Each value is valid alone, so only the trial can find that 2 heads cannot split 9 units.
CONFLICTING = {
    "config": SMALL | {"pooling": "attention"},
    "space": {"hidden_dim": {"choices": [9]}, "attention_heads": {"choices": [2]}},
}


def _conflicting() -> StudySpec:
    """A study whose trials all draw conflicting params. A file saying so is refused when it
    is loaded (test_studyfile); a space too large to list every combination of is not, and
    its conflicting trials fail alone, as these do."""
    spec = _spec(config=CONFLICTING["config"], space={"lr": {"low": 1.0e-3, "high": 1.0e-2}})
    space = parse_space("test", CONFLICTING["space"], spec.config, spec.epochs)
    return dataclasses.replace(spec, space=space)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    # The objective sets torch's thread count for the whole process; later tests keep theirs.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _spec(**sections: Any) -> StudySpec:
    data = {"name": "obj", "config": TINY, "budget": {"trials": 1, "epochs": 2}} | sections
    return parse_study(data, source="test")


def _one_trial(spec: StudySpec, trec_dir: Path) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize", sampler=spec.make_sampler())
    objective = Objective(spec, worker="w-test", data_dir=trec_dir, threads=1)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    return study.trials[0]


def test_complete_trial_records_everything_needed_to_retrain_it(trec_dir: Path) -> None:
    spec = _spec(space={"lr": {"low": 1.0e-2, "high": 3.0e-2, "log": True}})
    trial = _one_trial(spec, trec_dir)
    assert trial.state == TrialState.COMPLETE
    attrs = trial.user_attrs
    cfg = config_mod.from_mapping(attrs["config"])
    assert cfg == spec.build_config(trial.params).replace(threads=1)  # the threads it ran with
    assert cfg.lr == trial.params["lr"] and cfg.hidden_dim == 8 and cfg.epochs == 2
    assert attrs["seed"] == cfg.seed
    assert attrs["host"] == socket.gethostname()
    assert attrs["worker"] == "w-test"
    assert attrs["epochs_run"] == 2
    assert sorted(trial.intermediate_values) == [1, 2]
    # The value is the best epoch's validation accuracy, and best_epoch names that epoch.
    assert trial.value == max(trial.intermediate_values.values())
    assert trial.intermediate_values[attrs["best_epoch"]] == trial.value
    assert attrs["seconds"] > 0
    dataset = load_dataset(cfg, trec_dir)
    model = RNNClassifier(cfg, len(dataset.vocab), len(dataset.labels))
    assert attrs["num_parameters"] == count_parameters(model)
    assert "error" not in attrs


def test_conflicting_sampled_params_fail_with_the_reason(trec_dir: Path) -> None:
    trial = _one_trial(_conflicting(), trec_dir)
    assert trial.state == TrialState.FAIL
    assert "attention_heads: 2 must divide the encoder output size 9" in trial.user_attrs["error"]


def test_diverging_trial_fails_and_the_worker_goes_on(trec_dir: Path, tmp_path: Path) -> None:
    # SGD at lr 1e6 with an L2 penalty and no clipping multiplies every weight by
    # 1 - 2 * lr * alpha = -1999 per step: float32 overflows within the first epoch.
    spec = _spec(
        config=TINY | {"optimizer": "sgd", "grad_clip": None, "regularizer": "l2", "alpha": 1e-3},
        space={"lr": {"choices": [1.0e6, 3.0e-2]}},
        enqueue=[{"lr": 1.0e6}, {"lr": 3.0e-2}],
    )
    summary = work(
        spec, f"sqlite:///{tmp_path}/w.db", worker="w-test", threads=1, data_dir=trec_dir
    )
    assert summary.trials_run == 2 and summary.reason == "budget spent"
    study = optuna.load_study(study_name="obj", storage=f"sqlite:///{tmp_path}/w.db")
    diverged, good = study.trials
    assert diverged.state == TrialState.FAIL
    assert diverged.params == {"lr": 1.0e6}
    # nan or inf: which comes first depends on the CPU and its kernels (both seen).
    assert re.match(r"loss became (nan|-?inf) at epoch 1,", diverged.user_attrs["error"])
    assert diverged.user_attrs["epochs_run"] == 0
    assert good.state == TrialState.COMPLETE  # the failure did not use up the budget
    assert good.user_attrs["epochs_run"] == 2


def test_a_study_whose_every_trial_fails_still_ends(trec_dir: Path, tmp_path: Path) -> None:
    summary = work(_conflicting(), f"sqlite:///{tmp_path}/w.db", worker="w-test", data_dir=trec_dir)
    assert summary.reason == "stopped after 3 failed trials"
    assert summary.trials_run == 3


def test_a_failing_suggest_is_recorded_as_the_trials_error() -> None:
    # The worker stops after the budget's worth of trials that failed with an `error`; a
    # trial that failed at its first suggest used to carry none, and workers never stopped.
    def spec(choices: list[str]) -> StudySpec:
        return parse_study(
            {"name": "s", "space": {"pooling": {"choices": choices}}, "budget": {"trials": 1}},
            source="test",
        )

    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: float(len(spec(["max", "mean"]).suggest(t))), n_trials=1)
    with pytest.raises(ValueError):
        study.optimize(Objective(spec(["max", "mean", "last"]), worker="w"), n_trials=1)
    failed = study.trials[-1]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"].startswith("ValueError: CategoricalDistribution")
