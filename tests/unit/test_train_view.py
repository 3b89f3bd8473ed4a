"""``hpsearch train``'s output names the configured metric."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from hpsearch.cli._views import TrainView
from hpsearch.config import TrainConfig
from hpsearch.training import EpochStats, TrainResult


def _shown(metric: str) -> str:
    out = io.StringIO()
    view = TrainView(TrainConfig().replace(metric=metric, epochs=1), Console(file=out, width=200))
    stats = EpochStats(1, 0.5, 0.8, 0.6, 0.75, 1.0, valid_f1=0.625)
    view.epoch(stats)
    result: Any = TrainResult(
        history=[stats],
        best_valid_acc=0.75,
        best_epoch=1,
        best_state={},
        model=None,
        num_parameters=10,
        seconds=1.0,
        test_acc=0.5,
        best_valid_f1=0.625,
        test_f1=0.4,
    )
    view.result(result, None)
    Console(file=out, width=200).print(view.table)
    return out.getvalue()


def test_an_accuracy_run_shows_accuracy_only() -> None:
    text = _shown("accuracy")
    assert "best valid acc 0.7500 at epoch 1" in text
    assert "F1" not in text


def test_a_macro_f1_run_names_it_in_the_table_and_the_result() -> None:
    text = _shown("macro_f1")
    assert "best validation macro-F1 0.6250 (valid acc 0.7500) at epoch 1" in text
    assert "test acc 0.5000, test macro-F1 0.4000" in text
    assert "valid F1" in text and "0.6250" in text
