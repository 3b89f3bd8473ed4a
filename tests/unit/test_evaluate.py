"""Final evaluation: really retrains a tiny best configuration on the real TREC files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from rich.console import Console

from hpsearch import config, search
from hpsearch import study as studyfile
from hpsearch.errors import StudyError, UsageError
from hpsearch.results import _evaluate as evaluate
from hpsearch.results import _export as export
from hpsearch.results import _reading as reading

STUDY_YAML = """\
name: tiny_eval
config: {hidden_dim: 8, embedding_dim: 8, batch_size: 256}
space:
  lr: {low: 1.0e-3, high: 1.0e-2, log: true}
sampler: {name: random}
pruner: {name: none}
budget: {trials: 2, epochs: 1}
"""
TRIAL_SEED = 5


def build_study(tmp_path: Path) -> tuple[str, config.TrainConfig]:
    """A study whose best trial (number 1, seed 5) has a tiny one-epoch configuration."""
    path = tmp_path / "tiny_eval.yaml"
    path.write_text(STUDY_YAML, encoding="utf-8")
    spec = studyfile.load_study(path)
    url = f"sqlite:///{tmp_path / 'eval.db'}"
    study = search.open_study(spec, url, heartbeat=False)
    best = None
    for number, (lr, value) in enumerate([(2e-3, 0.5), (5e-3, 0.6)]):
        cfg = spec.build_config({"lr": lr}).replace(seed=TRIAL_SEED + number - 1)
        best = cfg
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"lr": lr},
                distributions={"lr": FloatDistribution(1e-3, 1e-2, log=True)},
                user_attrs={"config": cfg.to_dict(), "seed": cfg.seed},
            )
        )
    assert best is not None and best.seed == TRIAL_SEED
    return url, best


def test_evaluate_retrains_the_best_trial_with_consecutive_seeds(
    tmp_path: Path, trec_dir: Path
) -> None:
    url, best_cfg = build_study(tmp_path)
    seen: list[evaluate.SeedRun] = []
    result = evaluate.evaluate_study(
        "tiny_eval", url, seeds=2, data_dir=trec_dir, on_result=seen.append
    )

    assert result.trial == 1 and result.search_value == pytest.approx(0.6)
    assert [r.seed for r in result.runs] == [TRIAL_SEED, TRIAL_SEED + 1]
    assert seen == result.runs
    assert result.config == best_cfg.to_dict()
    for run in result.runs:
        assert 0.0 < run.test_acc < 1.0
        assert 0.0 < run.valid_acc < 1.0
        assert run.best_epoch == 1 and run.epochs_run == 1
    tests = [r.test_acc for r in result.runs]
    valids = [r.valid_acc for r in result.runs]
    assert result.test.mean == pytest.approx(sum(tests) / 2)
    assert result.test.std == pytest.approx(abs(tests[0] - tests[1]) / 2**0.5)  # n - 1
    assert result.valid.mean == pytest.approx(statistics.fmean(valids))
    assert result.valid.std == pytest.approx(statistics.stdev(valids))
    assert set(result.data) == {"train_5500.label", "TREC_10.label"}

    # Stored on the study, JSON-clean, and surfaced by `best`/`export`.
    stored = reading.load_study_for_reading("tiny_eval", url).user_attrs[evaluate.EVALUATION_ATTR]
    assert stored == json.loads(json.dumps(result.to_dict()))
    assert stored["seeds"] == [TRIAL_SEED, TRIAL_SEED + 1]
    assert stored["test"] == {"mean": result.test.mean, "std": result.test.std}
    assert export.best_export("tiny_eval", url)["evaluation"]["test"] == stored["test"]

    console = Console(record=True, width=200)
    console.print(evaluate.render(result))
    text = console.export_text()
    assert f"{result.test.mean:.4f} ± {result.test.std:.4f}" in text


def test_one_seed_has_zero_spread() -> None:
    assert evaluate.Stats.of([0.8]) == evaluate.Stats(mean=0.8, std=0.0)


def test_bad_requests_fail_before_training(tmp_path: Path) -> None:
    url, _ = build_study(tmp_path)
    with pytest.raises(UsageError, match="--seeds: must be >= 1, got 0"):
        evaluate.evaluate_study("tiny_eval", url, seeds=0)
    with pytest.raises(StudyError, match="did you mean 'tiny_eval'"):
        evaluate.evaluate_study("tiny_evl", url, seeds=1)
