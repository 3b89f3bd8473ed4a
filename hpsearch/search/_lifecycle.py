"""A study's life in the database: created from its study file (spec stored, first points
enqueued) or resumed against it (interrupted trials queued again), its trials counted, its
best trials read.

The best trial has one definition here: the highest validation score (the study's metric)
among COMPLETE trials; a NaN or infinite value is never best.
"""

from __future__ import annotations

import collections
import contextlib
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
# User attribute of a trial stopped from outside (a stop signal, its worker stopped by `run`):
# it failed without saying anything about its parameters.
INTERRUPTED_ATTR = "interrupted"
# System attribute of the WAITING copy of an interrupted trial: that trial's number.
REQUEUED_FROM = "hpsearch_requeued_from"
# System attributes the copy keeps: the point itself, and the heartbeat retries' history (so
# that their bound still holds).
KEPT_SYSTEM_ATTRS = ("fixed_params", "failed_trial", "retry_history")
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
    _refuse_another_programs_sqlite_study(spec, url)
    storage = storage_mod.open_storage(url, heartbeat=heartbeat)
    try:
        with storage_mod.budget_lock(url, spec.name):
            try:
                study = optuna.load_study(
                    study_name=spec.name,
                    storage=storage,
                    sampler=spec.make_sampler(seed_offset),
                    pruner=spec.make_pruner(),
                )
            except KeyError:
                _check_no_case_twin(spec.name, optuna.get_all_study_names(storage), url)
                return _create(spec, storage, seed_offset)
            _check_no_case_twin(spec.name, [stored_name(study)], url)
            _resume(spec, study, url, force=force)
            _move_the_seed_on(spec, study, seed_offset)
            requeue_interrupted(study)
            return study
    except storage_mod.DB_ERRORS as e:  # a full disk, a server gone: one line
        raise storage_mod.failure(url, e) from None


def stored_name(study: optuna.Study) -> str:
    """The study's name as the database stores it. MySQL and MariaDB compare names without
    case: there, loading ``cased`` finds the study ``Cased``."""
    return study._storage.get_study_name_from_id(study._study_id)


def _check_no_case_twin(name: str, existing: list[str], url: str) -> None:
    """Refuse a study whose name differs only by case from an existing one: such names are
    one study on MySQL and MariaDB and two elsewhere, so a study's identity would depend on
    the database (and on MySQL, resuming one would merge it into the other)."""
    for other in existing:
        if other != name and other.lower() == name.lower():
            raise StudyError(
                f"study {name!r}: {storage_mod.mask_url(url)} has a study {other!r}; study "
                f"names that differ only by case are refused on every database (MySQL cannot "
                f"tell them apart). Use {other!r} to resume it, or another name"
            )


def _create(
    spec: StudySpec, storage: optuna.storages.BaseStorage, seed_offset: int
) -> optuna.Study:
    storage_mod.create_study(storage, spec.name, {SPEC_ATTR: spec.to_dict()})
    study = optuna.load_study(
        study_name=spec.name,
        storage=storage,
        sampler=spec.make_sampler(seed_offset),
        pruner=spec.make_pruner(),
    )
    try:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and stable enough
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAMES[spec.metric]])  # the dashboard's name for it
        for params in spec.enqueue:
            study.enqueue_trial(params, user_attrs={"enqueued": True})
    except BaseException:
        # Created again from the file, the study gets all its first points.
        with contextlib.suppress(*storage_mod.DB_ERRORS):
            optuna.delete_study(study_name=spec.name, storage=storage)
        raise
    return study


def _refuse_another_programs_sqlite_study(spec: StudySpec, url: str) -> None:
    """Refuse another program's study in a SQLite file before opening the file, which
    switches it to WAL mode and makes lock files beside it; a server database is only
    read until ``_resume`` refuses the study."""
    attrs = storage_mod.sqlite_study_attrs(url, spec.name)
    if attrs is not None and SPEC_ATTR not in attrs:
        raise _not_ours(spec, url)


def _not_ours(spec: StudySpec, url: str) -> StudyError:
    return StudyError(
        f"study {spec.name!r} exists in {storage_mod.mask_url(url)} but was not made "
        "by hpsearch; choose another name"
    )


def _resume(spec: StudySpec, study: optuna.Study, url: str, *, force: bool) -> None:
    """Check ``spec`` against the stored one; with ``force``, store it instead."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise _not_ours(spec, url)
    changes = spec.differences(stored)
    if changes and not force:
        raise StudyError(
            f"study {spec.name!r} exists with a different spec: {'; '.join(changes)}. "
            "Use another study name, or --force to resume with the new spec"
        )
    budget = spec.to_dict()["budget"]
    if not changes:
        # A resume may change the budget (``--trials``, ``--timeout``): the stored one is the
        # budget in force, which ``hpsearch studies`` measures the study against.
        if stored.get("budget") != budget:
            study.set_user_attr(SPEC_ATTR, {**stored, "budget": budget})
        return
    _check_resumable(spec, study)
    # Points the edited file adds to enqueue: (queued only when a study is created).
    before = stored.get("enqueue") or []
    for params in spec.enqueue:
        if params not in before:
            study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again, once, the point of every interrupted trial; return how many were queued.

    An interrupted trial fails without counting against the budget, and a sampler would never
    propose its point again: without a copy an enqueued point (the study file's known-good
    configurations) is lost for good. The copy names its original (REQUEUED_FROM), so that a
    trial is queued again at most once however often the study is resumed; the caller holds
    the budget lock, so two launchers resuming at once cannot both queue it. The point goes in
    as an enqueued one (``fixed_params``): a forced resume whose space no longer holds a value
    samples that parameter instead.
    """
    trials = study.get_trials(deepcopy=False)
    copied = {t.system_attrs.get(REQUEUED_FROM) for t in trials}
    # A heartbeat retry's copy too: `run` may mark a trial its dead worker left just as
    # another worker's heartbeat check retries it.
    copied |= {
        t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")
    }
    queued = 0
    for trial in trials:
        if not _interrupted(trial) or trial.number in copied:
            continue
        point = trial.system_attrs.get("fixed_params") or trial.params
        if not point:  # stopped before its first parameter: there is nothing to run again
            continue
        system_attrs = {
            k: trial.system_attrs[k] for k in KEPT_SYSTEM_ATTRS if k in trial.system_attrs
        }
        kept = {
            k: v
            for k, v in trial.user_attrs.items()
            if k in storage_mod.RetryStaleTrial.KEPT_ON_RETRY
        }
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                user_attrs=kept,
                system_attrs=system_attrs | {"fixed_params": point, REQUEUED_FROM: trial.number},
            )
        )
        queued += 1
    return queued


def _interrupted(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(INTERRUPTED_ATTR))


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
