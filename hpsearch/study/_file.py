"""Study files: the YAML definition of an Optuna study, validated completely at load time.

A study file fixes part of the training configuration (``config``) and searches the rest
(``space``, keyed by ``TrainConfig`` field names, so trial params map straight back onto a
config). It also names the sampler, the pruner and the budget. Every mistake is reported when
the file is loaded, as one line naming the file, the dotted field and the value -- never three
epochs into a trial on a remote worker. The direction is always maximize (the validation
score ``metric:`` names: accuracy, the default, or macro-F1).
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
from typing import Annotated, Any

import optuna
from pydantic import BeforeValidator, Field, StrictStr, ValidationError

from hpsearch import config as cfg
from hpsearch import files
from hpsearch.config import DataConfig, Float, Int, TrainConfig
from hpsearch.errors import (
    ConfigError,
    FieldError,
    UsageError,
    did_you_mean,
    field_error,
    shown,
)
from hpsearch.study._pruners import PrunerSection, build_pruner, parse_pruner
from hpsearch.study._samplers import SamplerSection, build_sampler, parse_sampler
from hpsearch.study._space import (
    COMBINATIONS_LIMIT,
    ParamSpec,
    Section,
    check_config,
    coerce,
    combinations,
    fail,
    parse_space,
    show,
)

DEFAULT_TRIALS = 20
# ASCII, not starting with '.' or '-': a name is also a directory (reports/<name>), part of
# the SQLite lock file's name and an argument. 64 characters keep those, and the live view's
# title, within bounds; Optuna's own column takes 512.
_NAME_RULE = (
    "ASCII letters, digits, '_', '.' or '-', not starting with '.' or '-', at most 64 characters"
)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Far past any real study (a trial is a training run of seconds to hours), and the one rule
# for 1e12 and 1000000000000 alike: a count no budget can spend would show a nonsense ETA.
MAX_TRIALS = 10**6
MAX_TIMEOUT = 366 * 24 * 3600  # a year, in seconds


class Budget(Section):
    example = "{trials: 50, epochs: 30}"
    trials: Annotated[Int, Field(ge=1, le=MAX_TRIALS)] = DEFAULT_TRIALS
    timeout: Annotated[
        Float | None,
        Field(
            gt=0,
            le=MAX_TIMEOUT,
            allow_inf_nan=False,
            description=f"a finite number of seconds > 0, at most {MAX_TIMEOUT} (366 days)",
        ),
    ] = None
    epochs: Int | None = None  # the range is TrainConfig.epochs'


def _by_name(value: Any) -> Any:
    """``sampler: tpe`` is short for ``sampler: {name: tpe}``."""
    return {"name": value} if isinstance(value, str) else value


class StudyFile(Section):
    """A study file's sections as written: every key known, every plain value of its type.
    What depends on the config fields (space, enqueue) is checked by ``parse_study``."""

    name: Annotated[
        StrictStr | None, Field(pattern=rf"^{_NAME.pattern}$", description=_NAME_RULE)
    ] = None
    description: StrictStr | None = None
    config: Annotated[dict[Any, Any] | None, Field(examples=["{optimizer: adam}"])] = None
    space: Any = None  # parse_space's
    sampler: Annotated[SamplerSection | None, BeforeValidator(_by_name)] = None
    pruner: Annotated[PrunerSection | None, BeforeValidator(_by_name)] = None
    budget: Budget | None = None
    enqueue: Annotated[list[dict[Any, Any]] | None, Field(examples=["[{lr: 1.0e-3}]"])] = None
    data: Any = None  # the config's data field (DataConfig), checked there
    metric: Any = None  # the config's metric field, checked there
    data_files: Any = None  # written by hpsearch (to_dict): recomputed from the files


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
    # Size and sha256 of each data file (none for a built-in dataset): stored with the spec,
    # so that resuming against edited files is refused as an edited study file is.
    data_files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def metric(self) -> str:
        """What the study maximises: ``accuracy`` or ``macro_f1`` on validation."""
        return str(self.config.get("metric", cfg.FIELDS["metric"].default))

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
        given = {"trials": trials, "timeout": timeout}
        try:
            Budget.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            error = field_error(exc, "", Budget)
            raise ConfigError(f"--{error.field}: {error.problem}") from None
        return dataclasses.replace(
            self,
            trials=self.trials if trials is None else trials,
            timeout=self.timeout if timeout is None else float(timeout),
        )

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form; ``parse_study(spec.to_dict())`` gives the spec back."""
        out = {
            "name": self.name,
            "description": self.description,
            "config": self.config,
            "space": {name: p.to_dict() for name, p in self.space.items()},
            "sampler": self.sampler,
            "pruner": self.pruner,
            "budget": {"trials": self.trials, "timeout": self.timeout, "epochs": self.epochs},
            "enqueue": self.enqueue,
        }
        if self.data_files:  # absent for TREC, so that studies stored before it still match
            out["data_files"] = self.data_files
        return copy.deepcopy(out)

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
    if data.get("name") is None and default_name is not None:
        data = {**data, "name": default_name}
    try:
        raw = StudyFile.model_validate(dict(data))
    except ValidationError as exc:
        raise field_error(exc, src, StudyFile) from None
    if raw.name is None:
        fail(src, "name", f"missing; give a name of {_NAME_RULE}")
    name, description = raw.name, raw.description or ""

    written = {str(k): v for k, v in (raw.config or {}).items()}
    base = path.parent if path is not None else Path()
    dataset = _parse_data(src, raw.data, written.pop("data", None), base)
    fixed = {k: coerce(src, f"config.{k}", k, v) for k, v in written.items()}
    if dataset != DataConfig():  # the default written out is no change
        fixed["data"] = dataclasses.asdict(dataset)
    if raw.metric is not None:
        if "metric" in fixed:
            fail(src, "config.metric", "the metric is given twice; keep the top-level metric:")
        fixed["metric"] = coerce(src, "metric", "metric", raw.metric)
    if fixed.get("metric") == cfg.FIELDS["metric"].default:  # the default: no change
        del fixed["metric"]
    try:
        cfg.from_mapping(fixed, source=src)
    except FieldError as exc:
        raise exc.at(f"config.{exc.field}") from None

    budget = raw.budget or Budget()
    trials, timeout = budget.trials, budget.timeout
    epochs = (
        fixed.get("epochs", cfg.FIELDS["epochs"].default)
        if budget.epochs is None
        else budget.epochs
    )
    check_config(src, "budget.epochs", "epochs", {"epochs": epochs})
    if "epochs" in fixed and budget.epochs is not None and fixed["epochs"] != epochs:
        fail(
            src,
            "config.epochs",
            f"{fixed['epochs']} conflicts with budget.epochs ({epochs}); a trial's epochs are "
            "budget.epochs: drop config.epochs",
        )

    space = parse_space(src, raw.space, fixed, epochs)
    sampler = parse_sampler(src, raw.sampler or SamplerSection(), space)
    pruner = parse_pruner(src, raw.pruner, epochs)
    enqueue = _parse_enqueue(src, raw.enqueue or [], fixed, space, epochs)
    spec = StudySpec(
        name,
        description,
        path,
        fixed,
        space,
        sampler,
        pruner,
        trials,
        timeout,
        epochs,
        enqueue,
        _fingerprint(src, dataset),
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


def _parse_data(src: str, section: Any, in_config: Any, base: Path) -> DataConfig:
    """The ``data`` section (or ``config.data``), its relative paths taken from the study
    file's directory, so that every worker reads the same files whatever its directory."""
    if section is not None and in_config is not None:
        fail(src, "config.data", "the data is given twice; keep the top-level data: section")
    where = "data" if in_config is None else "config.data"
    try:
        value = cfg.coerce("data", cfg.resolve_data_paths(section or in_config or {}, base))
    except FieldError as exc:
        raise FieldError(src, where + exc.field.removeprefix("data"), exc.problem) from None
    assert isinstance(value, DataConfig), value
    return value


def _fingerprint(src: str, data: DataConfig) -> dict[str, dict[str, Any]]:
    out = {}
    for role, path in data.files().items():
        try:
            out[path] = files.fingerprint(Path(path))
        except UsageError as exc:
            fail(src, f"data.{role}", str(exc))
    return out


def _parse_enqueue(
    src: str,
    raw: list[dict[Any, Any]],
    fixed: Mapping[str, Any],
    space: Mapping[str, ParamSpec],
    epochs: int,
) -> list[dict[str, Any]]:
    out = []
    for i, entry in enumerate(raw):
        where = f"enqueue[{i}]"
        params: dict[str, Any] = {}
        for key, value in entry.items():
            at = f"{where}.{key}"
            if key not in space:
                fixed_hint = " (it is fixed in config)" if key in fixed else ""
                hint = did_you_mean(str(key), space)
                fail(src, at, f"not a space parameter{fixed_hint}; space: {', '.join(space)}{hint}")
            params[key] = coerce(src, at, key, value)
            if not space[key].contains(params[key]):
                fail(
                    src, at, f"{shown(params[key])} is outside the space ({space[key].describe()})"
                )
        for key in params:
            for dep, values in (space[key].when or {}).items():
                if dep in params and params[dep] not in values:
                    listed = " or ".join(map(str, values))
                    fail(src, f"{where}.{key}", f"unused unless {dep} is {listed}; drop {key}")
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
        except FieldError as exc:
            return point, exc.detail
    return None
