"""A study's trials read for its figures: scores (pruned trials at their best epoch), the
parameter axes, and the mean score per pair of parameter values (the seed report's Figure 1).

Figure 1 counts PRUNED trials too, with the best validation accuracy they reached before they
were stopped. Leaving them out would hide exactly the regions the pruner found bad and make
every cell look as good as its survivors; their score is a slight underestimate (fewer epochs),
which errs the same way the pruner did.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from hpsearch.results import _reading as reading
from hpsearch.search import SPEC_ATTR

METRIC = "validation accuracy"
BINS = 5  # per continuous parameter: enough to see a trend, few enough to fill with ~30 trials
MAX_DISCRETE = 8  # an int/stepped parameter with at most this many values keeps one cell each
MAX_PAIR_PARAMS = 6  # 15 heatmaps; beyond that, only the most important parameters


# --- Figure 1: aggregation ------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """How one parameter's values map to heatmap cells: one per value, or numeric bins."""

    name: str
    labels: tuple[str, ...]
    values: tuple[Any, ...] = ()  # one cell per value when ``edges`` is None
    edges: tuple[float, ...] | None = None  # bin edges (len(labels) + 1)

    def cell(self, value: Any) -> int:
        if self.edges is None:
            return self.values.index(value)
        # Clipped: a value outside the range (a spec edited with --force) joins the edge bin.
        inner = np.asarray(self.edges[1:-1])
        return int(np.searchsorted(inner, float(value), side="right"))


def _num(x: float, digits: int = 2) -> str:
    """Short tick text: 0.25, 0.0025, 290, 6.3e-5 (``digits`` significant digits)."""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.0f}" if abs(x) >= 10**digits else f"{x:.{digits}g}"
    mantissa, exp = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def _labels(values: Sequence[float]) -> tuple[str, ...]:
    """Tick texts for distinct values, with as many digits as it takes to tell them apart
    (0.2087 and 0.2096 are not both "0.21")."""
    for digits in range(2, 17):
        labels = tuple(_num(v, digits) for v in values)
        if len(set(labels)) == len(labels):
            return labels
    return tuple(repr(v) for v in values)


def make_axis(
    name: str, distribution: BaseDistribution, observed: Sequence[Any], *, bins: int = BINS
) -> Axis:
    """Categorical and few-valued parameters: one cell per value seen; others: ``bins`` bins
    of equal width (log-spaced for log-scale parameters) across the searched range."""
    if isinstance(distribution, CategoricalDistribution):
        values = tuple(c for c in distribution.choices if c in observed)
        return Axis(name, tuple(str(v) for v in values), values=values)
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    seen = sorted(set(observed))
    step = distribution.step
    spread = (float(distribution.high) - float(distribution.low)) / step if step else math.inf
    if spread + 1 <= MAX_DISCRETE or len(seen) <= bins:
        return Axis(name, _labels(seen), values=tuple(seen))
    # Across the searched range and every value tried: a range narrowed on a forced resume
    # must not put the earlier trials in bins whose labels exclude them.
    low = min(float(distribution.low), float(seen[0]))
    high = max(float(distribution.high), float(seen[-1]))
    if distribution.log:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high, bins + 1)
    labels = tuple(f"{_num(a)}–{_num(b)}" for a, b in itertools.pairwise(edges))
    return Axis(name, labels, edges=tuple(float(e) for e in edges))


def trial_score(trial: FrozenTrial) -> float | None:
    """COMPLETE: its value; PRUNED: the best validation accuracy it reached; else None.
    Values that are no accuracy (NaN, infinite: written by hand, not by hpsearch) count as
    missing."""
    if trial.state == TrialState.COMPLETE:
        value = trial.value
        return value if value is not None and math.isfinite(value) else None
    if trial.state == TrialState.PRUNED:
        reached = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        return max(reached) if reached else None
    return None


def aggregate(
    points: Sequence[tuple[dict[str, Any], float]], axes: Sequence[Axis]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and trial count per cell, shape ``[len(a.labels) for a in axes]``; the mean
    is NaN where no trial fell. Points missing one of the parameters are skipped."""
    shape = tuple(len(a.labels) for a in axes)
    total, count = np.zeros(shape), np.zeros(shape, dtype=int)
    for params, score in points:
        if all(a.name in params for a in axes):
            index = tuple(a.cell(params[a.name]) for a in axes)
            total[index] += score
            count[index] += 1
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def searched_params(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameters with more than one possible value, in study-file order where known."""
    spec = study.user_attrs.get(SPEC_ATTR)
    order = list(spec.get("space", {})) if isinstance(spec, dict) else []
    for t in trials:
        order += [p for p in t.params if p not in order]
    present = {p: d for t in trials for p, d in t.distributions.items()}
    return [p for p in order if p in present and not present[p].single()]


def study_axes(
    trials: Sequence[FrozenTrial], params: Sequence[str], *, bins: int = BINS
) -> list[Axis]:
    axes = []
    for name in params:
        having = [t for t in trials if name in t.params]
        dist = having[-1].distributions[name]  # the latest, in case the spec was edited
        axes.append(make_axis(name, dist, [t.params[name] for t in having], bins=bins))
    return axes


# --- the study's numbers ----------------------------------------------------------------------


@dataclass
class StudyData:
    """A study loaded for its report: trials, best trial and what the figures need."""

    study: optuna.Study
    trials: list[FrozenTrial]
    best: FrozenTrial
    n_complete: int
    params: list[str]  # searched
    importances: dict[str, float] | None
    pair_axes: list[Axis]  # Figure 1's parameters
    notes: list[str]
    scored: optuna.Study | None = None  # every scored trial as complete: for importances
    importance_basis: str | None = None  # which trials the importances rank on, and why

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def metric(self) -> str:
        """What the study maximised, as its figures name it (studies made before the metric
        was named maximised validation accuracy)."""
        return (self.study.metric_names or [METRIC])[0]

    @property
    def points(self) -> list[tuple[dict[str, Any], float]]:
        scored = ((t.params, trial_score(t)) for t in self.trials)
        return [(p, s) for p, s in scored if s is not None]

    @property
    def complete_params(self) -> list[str]:
        return plottable_params(self.params, self.trials)

    def pairs(self) -> list[tuple[Axis, Axis, np.ndarray, np.ndarray]]:
        points = self.points
        return [
            (x, y, *aggregate(points, (x, y))) for x, y in itertools.combinations(self.pair_axes, 2)
        ]


def plottable_params(params: Sequence[str], trials: Sequence[FrozenTrial]) -> list[str]:
    """The searched parameters some COMPLETE trial has: Optuna's importances and parallel
    coordinates raise on any other (a conditional branch, e.g. ``rnn_dropout`` only when
    ``num_layers: 2``, whose trials were all pruned)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return [p for p in params if any(p in t.params for t in complete)]


def scored_study(trials: Sequence[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding every trial with a ``trial_score`` as a complete trial."""
    scored = optuna.create_study(direction="maximize")
    for t in trials:
        score = trial_score(t)
        if score is not None:
            scored.add_trial(
                optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, value=score
                )
            )
    return scored


def load(study_name: str, url: str, *, bins: int = BINS) -> StudyData:
    study = reading.load_study_for_reading(study_name, url)
    best = reading.best_complete_trial(study)  # StudyError when nothing completed
    trials = study.get_trials(deepcopy=False)
    params = searched_params(study, trials)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    notes = []
    importances = None
    basis = None
    plottable = plottable_params(params, trials)
    if unplottable := [p for p in params if p not in plottable]:
        notes.append(
            f"importances and parallel coordinates leave out {', '.join(unplottable)}: "
            "no complete trial has it"
        )
    # Importances over every scored trial, pruned ones at their best epoch (as Figure 1
    # scores them): under pruning the complete trials are a few survivors that all look
    # alike, and importances computed on them alone rank the decisive parameters last.
    scored = scored_study(trials)
    scored_params = [p for p in params if any(p in t.params for t in scored.trials)]
    if len(scored.trials) > 1 and len(scored_params) > 1:
        with warnings.catch_warnings():  # PED-ANOVA on few trials: "regimes with < 2 trials"
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(scored, params=scored_params)
        basis = importance_note(trials, len(scored.trials))
        notes.append(basis)
    else:
        notes.append(
            "parameter importances skipped: they need 2 or more scored trials and searched "
            f"parameters ({len(scored.trials)} and {len(scored_params)} here)"
        )
    if n_complete < 2:
        notes.append("parallel coordinates skipped: one complete trial")
    pair_params = params
    if len(params) > MAX_PAIR_PARAMS:
        top = list(importances or params)[:MAX_PAIR_PARAMS]
        pair_params = [p for p in params if p in top]
        notes.append(f"Figure 1 shows only the {MAX_PAIR_PARAMS} most important parameters")
    if not params:
        notes.append("Figure 1 (pairs) skipped: no searched parameters")
    axes = study_axes(trials, pair_params, bins=bins)
    return StudyData(
        study, trials, best, n_complete, params, importances, axes, notes, scored, basis
    )


def importance_note(trials: Sequence[FrozenTrial], n_scored: int) -> str:
    """Which trials the importances rank on and why, and why optuna-dashboard's differ."""
    pruned = sum(t.state == TrialState.PRUNED and trial_score(t) is not None for t in trials)
    return (
        f"importances (PED-ANOVA) from {n_scored} trials: {n_scored - pruned} complete ones "
        f"by their value and {pruned} pruned ones by the best validation accuracy they reached, "
        "as Figure 1 scores them (the complete trials alone are the pruner's survivors, which "
        "all look alike); optuna-dashboard ranks on the complete trials only, so its order "
        "can differ"
    )


def counts_by_state(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    counts = {state_name(s): 0 for s in TrialState}
    for t in trials:
        counts[state_name(t.state)] += 1
    return counts


def state_name(state: TrialState) -> str:
    return "failed" if state == TrialState.FAIL else state.name.lower()


def total(trials: Sequence[FrozenTrial], attr: str) -> float:
    return sum(float(t.user_attrs.get(attr) or 0) for t in trials)


# --- the report -------------------------------------------------------------------------------
