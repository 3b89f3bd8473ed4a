"""Helpers shared by tests/unit/test_export.py and tests/system/test_export.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hpsearch import search
from hpsearch import study as studyfile

STUDY_YAML = """\
name: {name}
description: a tiny study for export tests
config: {{hidden_dim: 8, embedding_dim: 8, batch_size: 256}}
space:
  lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}
  cell: {{choices: [rnn, gru]}}
sampler: {{name: random}}
pruner: {{name: none}}
budget: {{trials: 6, epochs: 1}}
"""

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "cell": CategoricalDistribution(["rnn", "gru"]),
}

# (state, value, params); trial 1 is the best.
TRIALS: list[tuple[TrialState, float | None, dict[str, Any]]] = [
    (TrialState.COMPLETE, 0.71, {"lr": 1e-3, "cell": "rnn"}),
    (TrialState.COMPLETE, 0.83, {"lr": 3e-3, "cell": "gru"}),
    (TrialState.PRUNED, 0.40, {"lr": 5e-2, "cell": "rnn"}),
    (TrialState.FAIL, None, {"lr": 9e-2, "cell": "gru"}),
]


def write_spec(directory: Path, name: str = "tiny") -> studyfile.StudySpec:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(STUDY_YAML.format(name=name), encoding="utf-8")
    return studyfile.load_study(path)


def build_study(spec: studyfile.StudySpec, url: str, *, error: str = "boom") -> optuna.Study:
    """A study as workers leave it: spec attr, and trials carrying their full config."""
    study = search.open_study(spec, url, heartbeat=False)
    for i, (state, value, params) in enumerate(TRIALS):
        cfg = spec.build_config(params).replace(seed=i)
        if i == 1:  # runtime fields as a worker may have recorded them: reset on export
            cfg = cfg.replace(device="cpu", threads=2)
        attrs: dict[str, Any] = {"config": cfg.to_dict(), "seed": i, "worker": f"w{i}"}
        if state == TrialState.COMPLETE:
            attrs |= {"best_epoch": 1, "epochs_run": 1, "seconds": 0.5, "num_parameters": 99}
        if state == TrialState.FAIL:
            attrs["error"] = error
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value if state != TrialState.FAIL else None,
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values={1: value} if value is not None else None,
            )
        )
    return study
