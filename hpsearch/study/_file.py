"""Study files: the YAML definition of an Optuna study, validated completely at load time.

A study file fixes part of the training configuration (``config``) and searches the rest
(``space``, keyed by ``TrainConfig`` field names, so trial params map straight back onto a
config). It also names the sampler, the pruner and the budget. Every mistake is reported when
the file is loaded, as one line naming the file, the dotted field and the value -- never three
epochs into a trial on a remote worker. The direction is always maximize (validation accuracy).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpsearch import config as cfg
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, did_you_mean
from hpsearch.study._pruners import build_pruner, parse_pruner
from hpsearch.study._samplers import build_sampler, parse_sampler
from hpsearch.study._space import (
    COMBINATIONS_LIMIT,
    ParamSpec,
    as_int,
    as_mapping,
    check_config,
    check_keys,
    coerce,
    combinations,
    fail,
    parse_space,
    show,
)

DEFAULT_TRIALS = 20
_TOP_KEYS = ("name", "description", "config", "space", "sampler", "pruner", "budget", "enqueue")
# Not starting with '.' or '-': a name is also a directory (reports/<name>) and an argument.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_GRID_CHECK_LIMIT = 10_000  # every grid point is validated up to this size
# Extending a study by running it again with a larger --trials/--timeout is the normal way to
# use it, and neither changes what a trial means; the description is prose. Everything else
# (space, fixed config, epochs, sampler, pruner, enqueue) changes the search, so it blocks resuming.
_RESUMABLE = frozenset({"budget.trials", "budget.timeout", "description"})


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is a study name a file may have (and so safe as a file name)."""
    return bool(_NAME.fullmatch(name))


@dataclass(frozen=True)
class StudySpec:
    """A validated study file; ``to_dict`` is stored with the study to detect edits."""

    name: str
    description: str
    path: Path | None
    config: dict[str, Any]
    space: dict[str, ParamSpec]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    trials: int
    timeout: float | None
    epochs: int
    enqueue: list[dict[str, Any]]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter in file order; inactive ones keep the config value."""
        params: dict[str, Any] = {}
        for p in self.space.values():
            if p.active(params):
                params[p.name] = p.suggest(trial)
        return params

    def build_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """Fixed config + params + budget epochs.

        Raises ConfigError for combinations the load-time checks cannot rule out (two searched
        params that conflict, e.g. attention_heads not dividing a sampled hidden_dim).
        """
        values = {**self.config, **params, "epochs": self.epochs}
        return cfg.from_mapping(values, source=f"study {self.name}: trial params")

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (choices, or low..high by step)."""
        out = {}
        for p in self.space.values():
            values = p.grid_values()
            if values is None:
                raise ConfigError(f"study {self.name}: grid needs choices or step for {p.name}")
            out[p.name] = values
        return out

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """The study's sampler; parallel workers pass distinct offsets so that they do not
        all draw the same "random" startup points from the same seed.

        Not for the grid: Optuna shuffles the grid with the seed and gives trial n grid point
        n, so every worker must shuffle it the same way or points repeat and others are lost.
        """
        grid = self.grid() if self.sampler["name"] == "grid" else None
        sampler = dict(self.sampler)
        if sampler.get("seed") is not None and grid is None:
            # Wrapped into numpy's seed range (sampling.py allows seeds up to 2**32 - 1).
            sampler["seed"] = (sampler["seed"] + seed_offset) % 2**32
        return build_sampler(sampler, grid)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return build_pruner(self.pruner, self.epochs)

    def with_budget(self, trials: int | None = None, timeout: float | None = None) -> StudySpec:
        """Override the budget (CLI --trials/--timeout); None keeps the file's value."""
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)):
            raise ConfigError(f"--trials: expected an integer, got {trials!r}")
        if trials is not None and trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {trials}")
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"--timeout: must be a finite number of seconds > 0, got {timeout!r}")
        return dataclasses.replace(
            self,
            trials=self.trials if trials is None else trials,
            timeout=self.timeout if timeout is None else float(timeout),
        )

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form; ``parse_study(spec.to_dict())`` gives the spec back."""
        return copy.deepcopy(
            {
                "name": self.name,
                "description": self.description,
                "config": self.config,
                "space": {name: p.to_dict() for name, p in self.space.items()},
                "sampler": self.sampler,
                "pruner": self.pruner,
                "budget": {"trials": self.trials, "timeout": self.timeout, "epochs": self.epochs},
                "enqueue": self.enqueue,
            }
        )

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """Changes from a stored ``to_dict()`` to this spec, as ``field: old -> new`` lines.

        ``budget.trials``/``budget.timeout`` (and the description) are ignored: resuming with
        a bigger budget is the normal way to extend a study.
        """
        out: list[str] = []
        old = json.loads(json.dumps(dict(stored), default=str))
        _diff(old, self.to_dict(), "", out)
        return out


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        if old != new:
            out.append(f"{path}: {show(old)} -> {show(new)}")
        return
    for key in [*old, *(k for k in new if k not in old)]:
        sub = f"{path}.{key}" if path else str(key)
        if sub in _RESUMABLE:
            continue
        if key not in new:
            out.append(f"{sub}: {show(old[key])} -> (absent)")
        elif key not in old:
            out.append(f"{sub}: (absent) -> {show(new[key])}")
        else:
            _diff(old[key], new[key], sub, out)


# --- parsing ----------------------------------------------------------------------------------


def parse_study(
    data: Mapping[str, Any],
    *,
    source: str = "study",
    path: Path | None = None,
    default_name: str | None = None,
) -> StudySpec:
    """Validate a study mapping (a parsed file, or a stored ``to_dict()``)."""
    src = source
    check_keys(src, "", data, _TOP_KEYS)
    name = data.get("name", default_name)
    if name is None:
        fail(src, "name", "missing; give a name of letters, digits, '_', '.' or '-'")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail(
            src,
            "name",
            f"{name!r} must be letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )
    description = data.get("description")
    description = "" if description is None else description
    if not isinstance(description, str):
        fail(src, "description", f"expected a string, got {description!r}")

    fixed: dict[str, Any] = {}
    for key, value in as_mapping(src, "config", data.get("config"), "{optimizer: adam}").items():
        if key not in cfg.FIELDS:
            fail(src, f"config.{key}", f"unknown field{did_you_mean(str(key), cfg.FIELDS)}")
        fixed[key] = coerce(src, f"config.{key}", key, value)
    try:
        cfg.from_mapping(fixed, source=src)
    except ConfigError as exc:
        raise ConfigError(f"{src}: config.{str(exc).removeprefix(f'{src}: ')}") from None

    budget = as_mapping(src, "budget", data.get("budget"), "{trials: 50, epochs: 30}")
    check_keys(src, "budget", budget, ("trials", "timeout", "epochs"))
    trials = as_int(src, "budget.trials", budget.get("trials", DEFAULT_TRIALS), 1)
    timeout = budget.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            fail(src, "budget.timeout", f"expected seconds or null, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            fail(
                src,
                "budget.timeout",
                f"must be a finite number of seconds > 0 (or null), got {timeout}",
            )
        timeout = float(timeout)
    default_epochs = fixed.get("epochs", cfg.FIELDS["epochs"].default)
    epochs = as_int(src, "budget.epochs", budget.get("epochs", default_epochs), 1)
    check_config(src, "budget.epochs", "epochs", {"epochs": epochs})
    if "epochs" in fixed and "epochs" in budget and fixed["epochs"] != epochs:
        fail(
            src,
            "config.epochs",
            f"{fixed['epochs']} conflicts with budget.epochs ({epochs}); a trial's epochs are "
            "budget.epochs: drop config.epochs",
        )

    space = parse_space(src, data.get("space"), fixed, epochs)

    sampler = parse_sampler(src, data.get("sampler"), space)
    pruner = parse_pruner(src, data.get("pruner"), epochs)
    enqueue = _parse_enqueue(src, data.get("enqueue"), fixed, space, epochs)
    spec = StudySpec(
        name, description, path, fixed, space, sampler, pruner, trials, timeout, epochs, enqueue
    )
    if sampler["name"] == "grid":
        if enqueue:
            fail(
                src,
                "enqueue",
                "the grid sampler runs every grid point once; an enqueued point would run "
                "twice and leave another grid point out. Drop enqueue (or use tpe/random)",
            )
        _check_grid(src, spec)
    else:
        _check_combinations(src, spec)
    return spec


def _parse_enqueue(
    src: str, raw: Any, fixed: Mapping[str, Any], space: Mapping[str, ParamSpec], epochs: int
) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        fail(src, "enqueue", f"expected a list of {{param: value}} mappings, got {raw!r}")
    out = []
    for i, entry in enumerate(raw):
        where = f"enqueue[{i}]"
        entry = as_mapping(src, where, entry, "{lr: 1e-3}")
        params: dict[str, Any] = {}
        for key, value in entry.items():
            at = f"{where}.{key}"
            if key not in space:
                fixed_hint = " (it is fixed in config)" if key in fixed else ""
                hint = did_you_mean(str(key), space)
                fail(src, at, f"not a space parameter{fixed_hint}; space: {', '.join(space)}{hint}")
            params[key] = coerce(src, at, key, value)
            if not space[key].contains(params[key]):
                fail(src, at, f"{params[key]!r} is outside the space ({space[key].describe()})")
        for key in params:
            for dep, values in (space[key].when or {}).items():
                if dep in params and params[dep] not in values:
                    shown = " or ".join(map(str, values))
                    fail(src, f"{where}.{key}", f"unused unless {dep} is {shown}; drop {key}")
        check_config(src, where, "", {**fixed, **params, "epochs": epochs})
        out.append(params)
    return out


def _check_grid(src: str, spec: StudySpec) -> None:
    grid = spec.grid()
    if math.prod(len(v) for v in grid.values()) > _GRID_CHECK_LIMIT:
        return
    points = (dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values()))
    if invalid := _first_invalid(src, spec, points):
        point, problem = invalid
        fail(src, "space", f"grid point {show(point)} is invalid: {problem}")


def _check_combinations(src: str, spec: StudySpec) -> None:
    """Fail on a combination of searched values that breaks a cross-field rule (such as
    attention heads that do not divide the encoder's width), which each value's own check
    cannot see. Too many combinations to list: left to the trials, which then fail alone."""
    if not any(name in spec.space for name in cfg.CROSS_FIELDS):
        return
    points = combinations(spec.space, cfg.CROSS_FIELDS, COMBINATIONS_LIMIT) or []
    if invalid := _first_invalid(src, spec, points):
        point, problem = invalid
        fail(
            src,
            "space",
            f"a trial can draw {show(point)}, which is invalid: {problem}; narrow the "
            "values, or add a when: condition",
        )


def _first_invalid(
    src: str, spec: StudySpec, points: Iterable[dict[str, Any]]
) -> tuple[dict[str, Any], str] | None:
    """The first of ``points`` (searched values) that makes an invalid config with the
    study's fixed one, and why; None if every one is valid."""
    for point in points:
        try:
            cfg.from_mapping({**spec.config, **point, "epochs": spec.epochs}, source=src)
        except ConfigError as exc:
            return point, str(exc).removeprefix(f"{src}: ")
    return None
