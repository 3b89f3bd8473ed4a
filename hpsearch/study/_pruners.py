"""A study file's pruner: the Optuna pruners a file may name, their options checked at load
time, building one, and the epochs at which it can act, so that the objective asks it only then.

Every ``trial.should_prune()`` reads the database: successive halving and Hyperband read
the trial's rungs (its system attributes, a full trial load through Optuna's cache), the
median and percentile pruners every finished trial. At most epochs the answer cannot be
"prune" and nothing is written: successive halving and Hyperband act only at their rungs
(``min_resource * reduction_factor ** k``: every bracket's rungs are among them), the median
and percentile pruners only from ``n_warmup_steps`` on, every ``interval_steps`` (and at
epoch 1). The objective reports every epoch, so no rung or interval step is ever passed
over, and asking only at these epochs gives the same decisions with a fraction of the reads
(tests/test_pruning.py compares the two; benchmarks/storage_overhead.py, the reads).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import optuna
from pydantic import Field

from hpsearch.config import Int
from hpsearch.study._samplers import parse_options
from hpsearch.study._space import Section, fail

# Rungs at epochs 3, 9 and 27: by epoch 3 TREC learning curves have separated enough to drop
# hopeless learning rates, and factor 3 keeps a third of the trials at each rung.
# min_resource is lowered to budget.epochs for shorter studies.
DEFAULT_PRUNER: dict[str, Any] = {
    "name": "successive_halving",
    "options": {"min_resource": 3, "reduction_factor": 3},
}

PrunerName = Literal["median", "percentile", "successive_halving", "hyperband", "none"]
PRUNERS: dict[PrunerName, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


class PrunerSection(Section):
    """``pruner:`` as written (a bare name is ``{name: NAME}``)."""

    example = "{name: median, options: {n_warmup_steps: 5}}"
    name: PrunerName = DEFAULT_PRUNER["name"]
    options: Annotated[dict[Any, Any] | None, Field(examples=["{n_warmup_steps: 5}"])] = None
    # epochs without improvement; the bound is budget.epochs' own
    patience: Annotated[Int | None, Field(ge=0, le=10**6)] = None


def parse_pruner(src: str, raw: PrunerSection | None, epochs: int) -> dict[str, Any]:
    if raw is None:
        options = dict(DEFAULT_PRUNER["options"])
        options["min_resource"] = min(options["min_resource"], epochs)
        return {"name": DEFAULT_PRUNER["name"], "options": options, "patience": None}
    name = raw.name
    options = parse_options(src, "pruner.options", PRUNERS[name], raw.options, {})
    for key in ("min_resource", "max_resource"):
        value = options.get(key)
        if isinstance(value, int) and value > epochs:
            fail(src, f"pruner.options.{key}", f"{value} exceeds budget.epochs ({epochs})")
    low, high = options.get("min_resource"), options.get("max_resource")
    if isinstance(low, int) and isinstance(high, int) and low >= high:
        fail(src, "pruner.options.min_resource", f"{low} must be < max_resource ({high})")
    pruner = {"name": name, "options": options, "patience": raw.patience}
    try:
        build_pruner(pruner, epochs)
        if name == "hyperband":  # it builds its successive-halving brackets at the first prune
            keys = ("min_resource", "reduction_factor", "bootstrap_count")
            optuna.pruners.SuccessiveHalvingPruner(**{k: options[k] for k in keys if k in options})
    except (TypeError, ValueError) as exc:
        fail(src, "pruner.options", " ".join(str(exc).split()))
    return pruner


def build_pruner(pruner: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
    options = dict(pruner["options"])
    if pruner["name"] == "hyperband":
        options.setdefault("max_resource", epochs)  # "auto" would guess it from early trials
    base: optuna.pruners.BasePruner | None = PRUNERS[pruner["name"]](**options)
    if pruner["patience"] is None:
        assert base is not None
        return base
    if pruner["name"] == "none":
        base = None  # PatientPruner alone is plain early stopping, as in the report (1.3.4)
    with warnings.catch_warnings():  # experimental since Optuna 2.8; the file asked for it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(base, patience=pruner["patience"])


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
