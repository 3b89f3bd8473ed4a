"""Helpers shared by tests/unit/test_faults.py and tests/system/test_faults.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml

from hpsearch import storage

HEARTBEAT, GRACE = 1, 3


def write_study(directory: Path, name: str, *, trials: int, epochs: int, **extra: Any) -> Path:
    """A tiny study (an epoch takes ~0.1 s) searching lr, with fixed seeds and no pruner."""
    data: dict[str, Any] = {
        "name": name,
        "config": {"hidden_dim": 8, "embedding_dim": 8, "batch_size": 256, "threads": 1},
        "space": {"lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": "none",
        "budget": {"trials": trials, "epochs": epochs},
    }
    data["config"] |= extra.pop("config", {})
    data |= extra
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(url: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(
            study_name=name, storage=storage.open_storage(url, heartbeat=False)
        )
    except KeyError:
        return None


def states(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"
