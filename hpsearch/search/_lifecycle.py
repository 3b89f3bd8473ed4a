"""A study's life in the database: created from its study file (spec stored, first points
enqueued) or resumed against it, its trials counted, its best trials read.

The best trial has one definition here: the highest validation score (the study's metric)
among COMPLETE trials; a NaN or infinite value is never best.
"""

from __future__ import annotations

import collections
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from hpsearch import storage as storage_mod
from hpsearch.config import METRIC_NAMES
from hpsearch.errors import StudyError
from hpsearch.study import StudySpec, show

SPEC_ATTR = "hpsearch_spec"
# Larger than any worker count, so (offset, trials so far) pairs give distinct seeds.
RESUME_SEED_STRIDE = 1_000_003


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        return self.complete + self.pruned


def count_trials(study: optuna.Study) -> Counts:
    states: Mapping[TrialState, int] | None = storage_mod.count_states(study)  # one query
    if states is None:
        states = collections.Counter(t.state for t in study.get_trials(deepcopy=False))
    return Counts(
        complete=states.get(TrialState.COMPLETE, 0),
        pruned=states.get(TrialState.PRUNED, 0),
        failed=states.get(TrialState.FAIL, 0),
        running=states.get(TrialState.RUNNING, 0),
        waiting=states.get(TrialState.WAITING, 0),
    )


def best_trials(study: optuna.Study, *, top: int | None = None) -> list[FrozenTrial]:
    """The COMPLETE trials with a finite value, best first (``top`` of them)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    scored = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    scored.sort(key=lambda t: t.value, reverse=True)  # type: ignore[arg-type, return-value]
    return scored if top is None else scored[:top]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best trial, or None before its first COMPLETE trial with a finite value."""
    best = best_trials(study, top=1)
    return best[0] if best else None


def open_study(
    spec: StudySpec,
    url: str,
    *,
    force: bool = False,
    heartbeat: bool = True,
    seed_offset: int = 0,
) -> optuna.Study:
    """Create the study (storing its spec, enqueuing its first configurations) or resume it.

    Resuming with a spec that differs from the stored one is refused unless ``force``: trials
    run under another search space or pruner would be silently mixed with the new ones.
    """
    storage = storage_mod.open_storage(url, heartbeat=heartbeat)
    with storage_mod.budget_lock(url, spec.name):
        try:
            study = optuna.load_study(
                study_name=spec.name,
                storage=storage,
                sampler=spec.make_sampler(seed_offset),
                pruner=spec.make_pruner(),
            )
        except KeyError:
            return _create(spec, storage, seed_offset)
        _resume(spec, study, url, force=force)
        _move_the_seed_on(spec, study, seed_offset)
        return study


def _create(
    spec: StudySpec, storage: optuna.storages.BaseStorage, seed_offset: int
) -> optuna.Study:
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=spec.make_sampler(seed_offset),
        pruner=spec.make_pruner(),
        direction="maximize",
    )
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and stable enough
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAMES[spec.metric]])  # the dashboard's name for it
    for params in spec.enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": True})
    return study


def _resume(spec: StudySpec, study: optuna.Study, url: str, *, force: bool) -> None:
    """Check ``spec`` against the stored one; with ``force``, store it instead."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise StudyError(
            f"study {spec.name!r} exists in {storage_mod.mask_url(url)} but was not made "
            "by hpsearch; choose another name"
        )
    changes = spec.differences(stored)
    if changes and not force:
        raise StudyError(
            f"study {spec.name!r} exists with a different spec: {'; '.join(changes)}. "
            "Use another study name, or --force to resume with the new spec"
        )
    if changes:
        _check_resumable(spec, study)
        # Points the edited file adds to enqueue: (queued only when a study is created).
        before = stored.get("enqueue") or []
        for params in spec.enqueue:
            if params not in before:
                study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)
        study.set_user_attr(SPEC_ATTR, spec.to_dict())


def _move_the_seed_on(spec: StudySpec, study: optuna.Study, seed_offset: int) -> None:
    """Resuming must not replay an earlier session's draws: with the same seed, a random
    sampler (or TPE's start-up phase) proposes the same points again, and those trials, seeded
    alike, repeat their results exactly. The trials begun so far move the seed on (enqueued
    ones are not draws, so one worker on a new study keeps the file's seed)."""
    begun = [s for s in TrialState if s != TrialState.WAITING]
    so_far = len(study.get_trials(deepcopy=False, states=begun))
    if so_far:
        offset = (seed_offset + RESUME_SEED_STRIDE * so_far) % 2**31
        study.sampler = spec.make_sampler(offset)


def _check_resumable(spec: StudySpec, study: optuna.Study) -> None:
    """Refuse a forced resume that Optuna cannot run: a parameter whose kind changed, or a
    categorical one whose choices changed, would fail every new trial at its first suggest
    (Optuna keeps one distribution per parameter name for the whole study)."""
    used: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            used.setdefault(name, distribution)
    for name, param in spec.space.items():
        if name not in used:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(used[name], param.distribution())
        except ValueError:
            raise StudyError(
                f"study {spec.name!r}: space.{name}: its trials used {_describe(used[name])}, "
                f"the file now says {param.describe()}; Optuna cannot change a parameter's "
                f"choices, kind or log scale within a study. Use another study name, or keep "
                f"space.{name} as it was"
            ) from None


def _describe(distribution: optuna.distributions.BaseDistribution) -> str:
    """As ``ParamSpec.describe`` words a parameter, so that the two read side by side."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"one of {show(list(distribution.choices))}"
    assert isinstance(distribution, IntDistribution | FloatDistribution), distribution
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    step = distribution.step
    plain = step is None or (kind == "int" and step == 1)  # ParamSpec shows no default step
    extra = ", log" if distribution.log else "" if plain else f", step {step}"
    return f"{kind} in [{distribution.low}, {distribution.high}]{extra}"
