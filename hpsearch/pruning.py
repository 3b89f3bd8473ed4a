"""The epochs at which a study's pruner can act, so that the objective asks it only then.

Every ``trial.should_prune()`` reads the database: successive halving and Hyperband read
the trial's rungs (its system attributes, a full trial load through Optuna's cache), the
median and percentile pruners every finished trial. At most epochs the answer cannot be
"prune" and nothing is written: successive halving and Hyperband act only at their rungs
(``min_resource * reduction_factor ** k``: every bracket's rungs are among them), the median
and percentile pruners only from ``n_warmup_steps`` on, every ``interval_steps`` (and at
epoch 1). The objective reports every epoch, so no rung or interval step is ever passed
over, and asking only at these epochs gives the same decisions with a fraction of the reads
(tests/test_pruning.py compares the two; benchmarks/README.md, storage_overhead.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hpsearch.studyfile import PRUNERS


def acts_at(pruner: Mapping[str, Any]) -> Callable[[int], bool]:
    """For a study file's pruner (``StudySpec.pruner``): whether it can act after ``epoch``.

    When in doubt (options chosen at run time, like ``min_resource: auto``, or a pruner that
    looks at every step, like ``patience``), every epoch.
    """
    name, options = pruner["name"], pruner.get("options") or {}
    if pruner.get("patience") is not None:  # PatientPruner tracks every step
        return _every_epoch
    if name == "none":
        return _never
    cls = PRUNERS.get(name)
    if cls is None:  # a pruner this version does not know: ask it every epoch
        return _every_epoch
    if name in ("successive_halving", "hyperband"):
        low = _option(cls, options, "min_resource")
        factor = _option(cls, options, "reduction_factor")
        if not isinstance(low, int) or not isinstance(factor, int) or low < 1 or factor < 2:
            return _every_epoch
        return lambda epoch: _is_rung(epoch, low, factor)
    if name in ("median", "percentile"):
        warmup = _option(cls, options, "n_warmup_steps")
        interval = _option(cls, options, "interval_steps")
        if not isinstance(warmup, int) or not isinstance(interval, int) or interval < 1:
            return _every_epoch
        # Optuna counts the intervals from the first step at or past the warm-up, and the
        # first report (epoch 1) has no earlier step: it always counts as an interval's first.
        return lambda epoch: epoch >= warmup and (epoch == 1 or (epoch - warmup) % interval == 0)
    return _every_epoch


def _is_rung(epoch: int, low: int, factor: int) -> bool:
    """``epoch == low * factor ** k`` for some k >= 0."""
    if epoch < low or epoch % low:
        return False
    q = epoch // low
    while q % factor == 0:
        q //= factor
    return q == 1


def _option(cls: type, options: Mapping[str, Any], key: str) -> Any:
    """The option's value in the file, else the pruner's own default (read from Optuna, so
    that a changed default is followed)."""
    if key in options:
        return options[key]
    return inspect.signature(cls).parameters[key].default


def _every_epoch(epoch: int) -> bool:
    return True


def _never(epoch: int) -> bool:
    return False
