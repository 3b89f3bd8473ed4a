"""hpsearch.pruning: the pruner is asked only at epochs where it can act, with the same
decisions as asking it at every epoch."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest

from hpsearch.study import StudySpec, parse_study
from hpsearch.study._pruners import acts_at

EPOCHS = 30


def spec(pruner: Any) -> StudySpec:
    data: dict[str, Any] = {"name": "p", "budget": {"trials": 10, "epochs": EPOCHS}}
    data["space"] = {"lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True}}
    if pruner is not None:
        data["pruner"] = pruner
    return parse_study(data)


@pytest.mark.parametrize(
    ("pruner", "epochs"),
    [
        (None, [3, 9, 27]),  # the default: successive halving from 3, factor 3
        ({"name": "successive_halving", "options": {"min_resource": 2}}, [2, 8]),  # factor 4
        ({"name": "hyperband", "options": {"min_resource": 1}}, [1, 3, 9, 27]),
        ({"name": "median", "options": {"n_warmup_steps": 10}}, list(range(10, 31))),
        ({"name": "percentile", "options": {"percentile": 25.0, "n_warmup_steps": 5,
          "interval_steps": 3}}, [5, 8, 11, 14, 17, 20, 23, 26, 29]),
        ({"name": "percentile", "options": {"percentile": 25.0, "interval_steps": 4}},
         [0, 1, 4, 8, 12, 16, 20, 24, 28]),  # epoch 1: the first report starts an interval
        ("median", list(range(0, 31))),
        ({"name": "successive_halving", "options": {"min_resource": "auto"}}, list(range(31))),
        ({"name": "median", "patience": 3}, list(range(31))),  # PatientPruner: every step
        ("none", []),
    ],
    ids=["default", "sh-2-4", "hyperband", "median-warmup", "percentile", "percentile-interval",
         "median", "sh-auto",
         "patience", "none"],
)  # fmt: skip
def test_epochs_at_which_the_pruner_is_asked(pruner: Any, epochs: list[int]) -> None:
    assert [e for e in range(EPOCHS + 1) if acts_at(spec(pruner).pruner)(e)] == epochs


def _curve(rng: random.Random) -> list[float]:
    """A made-up learning curve: a rate, a ceiling and noise, as TREC's curves look."""
    rate, ceiling = rng.uniform(0.05, 0.5), rng.uniform(0.5, 0.9)
    return [ceiling * (1 - (1 - rate) ** e) + rng.gauss(0, 0.01) for e in range(1, EPOCHS + 1)]


def _run(pruner: Any, curves: list[list[float]], gated: bool) -> tuple[list[int], set[int]]:
    """Each curve as a trial; the epoch it stopped at and the epochs a prune happened at."""
    s = spec(pruner)
    # Named: Hyperband puts a trial in a bracket by a hash of the study name and its number.
    study = optuna.create_study(study_name="p", direction="maximize", pruner=s.make_pruner())
    asks = acts_at(s.pruner)
    stopped, pruned_at = [], set()
    for curve in curves:
        trial = study.ask()
        epoch = 0
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            if epoch < EPOCHS and (not gated or asks(epoch)) and trial.should_prune():
                pruned_at.add(epoch)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, max(curve))
        stopped.append(epoch)
    return stopped, pruned_at


@pytest.mark.parametrize(
    "pruner",
    [
        None,
        {"name": "successive_halving", "options": {"min_resource": 2, "reduction_factor": 2}},
        {"name": "hyperband", "options": {"min_resource": 1, "reduction_factor": 3}},
        {"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 4}},
        {"name": "percentile", "options": {"percentile": 40.0, "interval_steps": 4}},
    ],
    ids=["default", "sh-2-2", "hyperband", "median", "percentile"],
)
def test_asking_only_then_gives_the_same_decisions(pruner: Any) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    curves = [_curve(rng) for _ in range(40)]
    every, pruned_every = _run(pruner, curves, gated=False)
    gated, _ = _run(pruner, curves, gated=True)
    assert gated == every
    assert pruned_every, "the curves must get some trials pruned, or this shows nothing"
    assert all(acts_at(spec(pruner).pruner)(e) for e in pruned_every)
