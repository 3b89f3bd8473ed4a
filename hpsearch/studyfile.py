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
import importlib.util
import inspect
import itertools
import json
import math
import os
import re
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import optuna

import hpsearch
from hpsearch import config as cfg
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, StudyError, did_you_mean

STUDIES_DIR_ENV = "HPSEARCH_STUDIES_DIR"
DEFAULT_TRIALS = 20
DEFAULT_SAMPLER: dict[str, Any] = {"name": "tpe", "seed": 0, "options": {}}
# Rungs at epochs 3, 9 and 27: by epoch 3 TREC learning curves have separated enough to drop
# hopeless learning rates, and factor 3 keeps a third of the trials at each rung.
# min_resource is lowered to budget.epochs for shorter studies.
DEFAULT_PRUNER: dict[str, Any] = {
    "name": "successive_halving",
    "options": {"min_resource": 3, "reduction_factor": 3},
}

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
}
# Optuna imports these lazily, so a missing one would only surface at the first trial.
_SAMPLER_PACKAGES = {"cmaes": ("cmaes",), "gp": ("torch", "scipy"), "qmc": ("scipy",)}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}

_TOP_KEYS = ("name", "description", "config", "space", "sampler", "pruner", "budget", "enqueue")
_PARAM_KEYS = ("low", "high", "log", "step", "choices", "when")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_GRID_CHECK_LIMIT = 10_000  # every grid point is validated up to this size (~1 ms each)
# Extending a study by running it again with a larger --trials/--timeout is the normal way to
# use it, and neither changes what a trial means; the description is prose. Everything else
# (space, fixed config, epochs, sampler, pruner, enqueue) changes the search, so it blocks resuming.
_RESUMABLE = frozenset({"budget.trials", "budget.timeout", "description"})


def _fail(src: str, where: str, problem: str) -> NoReturn:
    raise ConfigError(f"{src}: {where}: {problem}")


def _relocate(exc: ConfigError, src: str, name: str, where: str) -> ConfigError:
    """Re-address a config.py message (``src: name: problem``) to the study file's field."""
    rest = str(exc).removeprefix(f"{src}: ").removeprefix(f"{name}: ")
    return ConfigError(f"{src}: {where}: {rest}")


def _coerce(src: str, where: str, name: str, value: Any) -> Any:
    try:
        return cfg.coerce(name, value, source=src)
    except ConfigError as exc:
        raise _relocate(exc, src, name, where) from None


def _check_config(src: str, where: str, name: str, values: Mapping[str, Any]) -> None:
    try:
        cfg.from_mapping(values, source=src)
    except ConfigError as exc:
        raise _relocate(exc, src, name, where) from None


def _numeric_kind(name: str) -> Literal["float", "int"] | None:
    hint = typing.get_type_hints(TrainConfig)[name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = set(typing.get_args(hint) if union else (hint,))
    if cfg.field_choices(name) is not None or bool in args:
        return None
    return "int" if int in args else "float" if float in args else None


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter; ``when`` maps earlier params to the values that activate it."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | int | None
    high: float | int | None
    log: bool
    step: float | int | None
    choices: tuple[Any, ...] | None
    when: dict[str, tuple[Any, ...]] | None

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(self.choices)
        low, high = self._bounds()
        if self.kind == "int":
            step = int(self.step or 1)
            return optuna.distributions.IntDistribution(
                int(low), int(high), log=self.log, step=step
            )
        return optuna.distributions.FloatDistribution(low, high, log=self.log, step=self.step)

    def active(self, params: Mapping[str, Any]) -> bool:
        """Whether the conditions hold for the (earlier) params chosen so far."""
        conditions = (self.when or {}).items()
        return all(dep in params and params[dep] in values for dep, values in conditions)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        low, high = self._bounds()
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not low <= value <= high:
            return False
        ratio = 0.0 if self.step is None else (value - low) / self.step
        return abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self._bounds()
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(low), int(high), step=step, log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def _bounds(self) -> tuple[float | int, float | int]:
        assert self.low is not None and self.high is not None, self
        return self.low, self.high

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {_show(list(self.choices))}"
        extra = ", log" if self.log else f", step {self.step}" if self.step is not None else ""
        return f"{self.kind} in [{self.low}, {self.high}]{extra}"

    def grid_values(self) -> list[Any] | None:
        """The values a grid sampler visits, or None for a continuous parameter."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None or self.low is None or self.high is None:
            return None
        count = round((self.high - self.low) / self.step)
        values = [self.low + i * self.step for i in range(count + 1)]
        # 12 significant digits drop the 0.30000000000000004 noise of repeated float steps.
        return values if self.kind == "int" else [float(f"{v:.12g}") for v in values]

    def to_dict(self) -> dict[str, Any]:
        when = {k: list(v) for k, v in self.when.items()} if self.when else None
        if self.choices is not None:
            return {"choices": list(self.choices), "when": when}
        return {
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "when": when,
        }


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
        all draw the same "random" startup points from the same seed."""
        grid = self.grid() if self.sampler["name"] == "grid" else None
        sampler = dict(self.sampler)
        if sampler.get("seed") is not None:
            sampler["seed"] = sampler["seed"] + seed_offset
        return _build_sampler(sampler, grid)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return _build_pruner(self.pruner, self.epochs)

    def with_budget(self, trials: int | None = None, timeout: float | None = None) -> StudySpec:
        """Override the budget (CLI --trials/--timeout); None keeps the file's value."""
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)):
            raise ConfigError(f"--trials: expected an integer, got {trials!r}")
        if trials is not None and trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {trials}")
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"--timeout: must be > 0 seconds, got {timeout!r}")
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
            out.append(f"{path}: {_show(old)} -> {_show(new)}")
        return
    for key in [*old, *(k for k in new if k not in old)]:
        sub = f"{path}.{key}" if path else str(key)
        if sub in _RESUMABLE:
            continue
        if key not in new:
            out.append(f"{sub}: {_show(old[key])} -> (absent)")
        elif key not in old:
            out.append(f"{sub}: (absent) -> {_show(new[key])}")
        else:
            _diff(old[key], new[key], sub, out)


# --- parsing ----------------------------------------------------------------------------------


def _mapping(src: str, where: str, value: Any, example: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail(src, where, f"expected a mapping such as {example}, got {value!r}")
    return value


def _int(src: str, where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(src, where, f"expected an integer, got {value!r}")
    if value < minimum:
        _fail(src, where, f"must be >= {minimum}, got {value}")
    return value


def _check_keys(src: str, where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            hint = did_you_mean(str(key), allowed)
            _fail(src, path, f"unknown key; allowed: {', '.join(allowed)}{hint}")


def parse_study(
    data: Mapping[str, Any],
    *,
    source: str = "study",
    path: Path | None = None,
    default_name: str | None = None,
) -> StudySpec:
    """Validate a study mapping (a parsed file, or a stored ``to_dict()``)."""
    src = source
    _check_keys(src, "", data, _TOP_KEYS)
    name = data.get("name", default_name)
    if name is None:
        _fail(src, "name", "missing; give a name of letters, digits, '_', '.' or '-'")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        _fail(src, "name", f"{name!r} must be letters, digits, '_', '.' or '-'")
    description = data.get("description") or ""
    if not isinstance(description, str):
        _fail(src, "description", f"expected a string, got {description!r}")

    fixed: dict[str, Any] = {}
    for key, value in _mapping(src, "config", data.get("config"), "{optimizer: adam}").items():
        if key not in cfg.FIELDS:
            _fail(src, f"config.{key}", f"unknown field{did_you_mean(str(key), cfg.FIELDS)}")
        fixed[key] = _coerce(src, f"config.{key}", key, value)
    try:
        cfg.from_mapping(fixed, source=src)
    except ConfigError as exc:
        raise ConfigError(f"{src}: config.{str(exc).removeprefix(f'{src}: ')}") from None

    budget = _mapping(src, "budget", data.get("budget"), "{trials: 50, epochs: 30}")
    _check_keys(src, "budget", budget, ("trials", "timeout", "epochs"))
    trials = _int(src, "budget.trials", budget.get("trials", DEFAULT_TRIALS), 1)
    timeout = budget.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            _fail(src, "budget.timeout", f"expected seconds or null, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            _fail(src, "budget.timeout", f"must be > 0 seconds (or null), got {timeout}")
        timeout = float(timeout)
    default_epochs = fixed.get("epochs", cfg.FIELDS["epochs"].default)
    epochs = _int(src, "budget.epochs", budget.get("epochs", default_epochs), 1)

    raw_space = _mapping(src, "space", data.get("space"), "{lr: {low: 1e-5, high: 1e-3}}")
    if not raw_space:
        _fail(src, "space", "empty; give at least one parameter to search")
    space: dict[str, ParamSpec] = {}
    for key, raw in raw_space.items():
        space[key] = _parse_param(src, str(key), raw, fixed, space, list(raw_space), epochs)

    sampler = _parse_sampler(src, data.get("sampler"), space)
    pruner = _parse_pruner(src, data.get("pruner"), epochs)
    enqueue = _parse_enqueue(src, data.get("enqueue"), fixed, space, epochs)
    spec = StudySpec(
        name, description, path, fixed, space, sampler, pruner, trials, timeout, epochs, enqueue
    )
    if sampler["name"] == "grid":
        _check_grid(src, spec)
    return spec


def _parse_param(
    src: str,
    name: str,
    raw: Any,
    fixed: Mapping[str, Any],
    earlier: Mapping[str, ParamSpec],
    names: list[str],
    epochs: int,
) -> ParamSpec:
    where = f"space.{name}"
    if name not in cfg.FIELDS:
        _fail(src, where, f"unknown parameter (not a config field){did_you_mean(name, cfg.FIELDS)}")
    if name in fixed:
        _fail(src, where, f"also fixed in config ({fixed[name]!r}); search it or fix it, not both")
    if name == "epochs":
        _fail(src, where, "cannot be searched; set budget.epochs (pruners stop weak trials early)")
    raw = _mapping(src, where, raw, "{low: 0.0, high: 0.5} or {choices: [a, b]}")
    _check_keys(src, where, raw, _PARAM_KEYS)
    when = _parse_when(src, where, raw.get("when"), fixed, earlier, names)
    low = high = step = None
    choices = raw.get("choices")
    log = False if raw.get("log") is None else raw["log"]
    if not isinstance(log, bool):
        _fail(src, f"{where}.log", f"expected true or false, got {log!r}")
    if choices is not None:
        extra = [k for k in ("low", "high", "log", "step") if raw.get(k) not in (None, False)]
        extra += [k for k in ("low", "high", "step") if raw.get(k) in (0, False)]
        if extra:
            _fail(src, where, f"choices cannot be combined with {', '.join(extra)}; give one form")
        if not isinstance(choices, list) or not choices:
            _fail(src, f"{where}.choices", f"expected a non-empty list, got {choices!r}")
        values = tuple(_coerce(src, f"{where}.choices", name, v) for v in choices)
        if len({_show(v) for v in values}) < len(values):
            _fail(src, f"{where}.choices", f"duplicate values in {_show(list(values))}")
        spec = ParamSpec(name, "categorical", None, None, False, None, values, when)
    else:
        kind = _numeric_kind(name)
        if kind is None:
            allowed = cfg.field_choices(name) or ("true", "false")
            _fail(src, where, f"needs choices, e.g. {{choices: [{', '.join(allowed)}]}}")
        for key in ("low", "high"):
            if raw.get(key) is None:
                _fail(src, where, f"missing {key}; give low and high (or choices)")
        low = _coerce(src, f"{where}.low", name, raw["low"])
        high = _coerce(src, f"{where}.high", name, raw["high"])
        for key, value in (("low", low), ("high", high)):
            if not math.isfinite(value):
                _fail(src, f"{where}.{key}", f"must be a finite number, got {value}")
        if low >= high:
            _fail(src, where, f"low ({low}) must be < high ({high}); use choices for one value")
        if log and low <= 0:
            _fail(src, f"{where}.low", f"log scale needs low > 0, got {low}; e.g. low: 1.0e-6")
        if raw.get("step") is not None:
            step = _coerce(src, f"{where}.step", name, raw["step"])
            if log:
                _fail(src, f"{where}.step", f"step ({step}) cannot be combined with log: true")
            if not (math.isfinite(step) and step > 0):
                _fail(src, f"{where}.step", f"must be > 0, got {step}")
            ratio = (high - low) / step
            if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
                _fail(
                    src, f"{where}.step", f"high - low ({high - low}) is not a multiple of {step}"
                )
        spec = ParamSpec(name, kind, low, high, log, step, None, when)
    points = (
        [(f"choices[{i}]", v) for i, v in enumerate(spec.choices)]
        if spec.choices is not None
        else [("low", low), ("high", high)]
    )
    for label, value in points:
        _check_config(src, f"{where}.{label}", name, {**fixed, name: value, "epochs": epochs})
    return spec


def _parse_when(
    src: str,
    where: str,
    raw: Any,
    fixed: Mapping[str, Any],
    earlier: Mapping[str, ParamSpec],
    names: list[str],
) -> dict[str, tuple[Any, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        _fail(src, f"{where}.when", f"expected a mapping such as {{optimizer: sgd}}, got {raw!r}")
    out: dict[str, tuple[Any, ...]] = {}
    for dep, wanted in raw.items():
        at = f"{where}.when.{dep}"
        if dep not in earlier:
            if dep in fixed:
                _fail(src, at, f"{dep} is fixed in config ({fixed[dep]!r}); drop the condition")
            if dep in names:
                _fail(
                    src,
                    at,
                    f"{dep} must come before {where.removeprefix('space.')} (conditions look back)",
                )
            hint = did_you_mean(str(dep), earlier)
            _fail(src, at, f"unknown parameter; earlier params: {', '.join(earlier)}{hint}")
        parent = earlier[dep]
        if parent.choices is None:
            _fail(src, at, f"{dep} is a {parent.kind} range; conditions need a param with choices")
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values:
            _fail(src, at, "empty list; give the value(s) that activate the parameter")
        coerced = tuple(_coerce(src, at, dep, v) for v in values)
        for value in coerced:
            if value not in parent.choices:
                _fail(
                    src, at, f"{value!r} is not among {dep}'s choices {_show(list(parent.choices))}"
                )
        out[dep] = coerced
    return out


def _annotation_types(param: inspect.Parameter) -> list[str] | None:
    """The plain YAML types an option takes, or None if it cannot come from a file."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return ["any"]
    tokens = [t.strip() for t in (ann.__name__ if isinstance(ann, type) else str(ann)).split("|")]
    plain = {"bool", "int", "float", "str", "None"}
    return tokens if all(t in plain or t.startswith("dict[str") for t in tokens) else None


def _type_ok(tokens: list[str], value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "any": True,
        "None": value is None,
        "bool": isinstance(value, bool),
        "int": number and isinstance(value, int),
        "float": number,
        "str": isinstance(value, str),
    }
    return any(checks.get(t, t.startswith("dict[") and isinstance(value, dict)) for t in tokens)


def _parse_options(
    src: str, where: str, cls: type, raw: Any, reserved: Mapping[str, str]
) -> dict[str, Any]:
    options = dict(_mapping(src, where, raw, "{n_startup_trials: 10}"))
    params = inspect.signature(cls).parameters
    settable = {
        n: t for n, p in params.items() if (t := _annotation_types(p)) and n not in reserved
    }
    for key, value in options.items():
        at = f"{where}.{key}"
        if key in reserved:
            _fail(src, at, reserved[key])
        if key not in settable:
            hint = did_you_mean(str(key), settable)
            _fail(
                src, at, f"unknown option of {cls.__name__}; allowed: {', '.join(settable)}{hint}"
            )
        if not _type_ok(settable[key], value):
            _fail(src, at, f"expected {' | '.join(settable[key])}, got {value!r}")
    for key, p in params.items():
        if p.default is inspect.Parameter.empty and key not in options and key not in reserved:
            _fail(src, f"{where}.{key}", f"required by {cls.__name__}; give a value")
    return options


def _parse_sampler(src: str, raw: Any, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    raw = {"name": raw} if isinstance(raw, str) else _mapping(src, "sampler", raw, "{name: tpe}")
    _check_keys(src, "sampler", raw, ("name", "seed", "options"))
    name = raw.get("name", DEFAULT_SAMPLER["name"])
    if name not in SAMPLERS:
        hint = did_you_mean(str(name), SAMPLERS)
        _fail(
            src, "sampler.name", f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}{hint}"
        )
    for package in _SAMPLER_PACKAGES.get(name, ()):
        if importlib.util.find_spec(package) is None:
            _fail(
                src, "sampler.name", f"{name} needs the {package!r} package: pip install {package}"
            )
    seed = raw.get("seed", DEFAULT_SAMPLER["seed"])
    if seed is not None:
        seed = _int(src, "sampler.seed", seed, 0)
    reserved = {
        "seed": "give the seed as sampler.seed",
        "search_space": "the grid comes from space (choices or step)",
    }
    options = _parse_options(src, "sampler.options", SAMPLERS[name], raw.get("options"), reserved)
    sampler = {"name": name, "seed": seed, "options": options}
    if name == "grid":
        for p in space.values():
            if p.grid_values() is None:
                _fail(src, f"space.{p.name}", f"grid needs choices or step for {p.name}")
            if p.when:
                # A grid point fixes every param, so a conditional one would repeat whole trials.
                _fail(
                    src,
                    f"space.{p.name}.when",
                    "grid points set every param, so none can be conditional; use tpe or random",
                )
        return sampler
    try:
        _build_sampler(sampler, None)
    except (TypeError, ValueError) as exc:
        _fail(src, "sampler.options", " ".join(str(exc).split()))
    return sampler


def _build_sampler(
    sampler: Mapping[str, Any], grid: Mapping[str, list[Any]] | None
) -> optuna.samplers.BaseSampler:
    cls = SAMPLERS[sampler["name"]]
    options = copy.deepcopy(sampler["options"])
    with warnings.catch_warnings():  # qmc is experimental; the file asked for it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if grid is not None:
            return optuna.samplers.GridSampler(dict(grid), seed=sampler["seed"])
        return cls(seed=sampler["seed"], **options)  # type: ignore[call-arg]


def _parse_pruner(src: str, raw: Any, epochs: int) -> dict[str, Any]:
    if raw is None:
        options = dict(DEFAULT_PRUNER["options"])
        options["min_resource"] = min(options["min_resource"], epochs)
        return {"name": DEFAULT_PRUNER["name"], "options": options, "patience": None}
    raw = {"name": raw} if isinstance(raw, str) else _mapping(src, "pruner", raw, "{name: median}")
    _check_keys(src, "pruner", raw, ("name", "options", "patience"))
    name = raw.get("name", DEFAULT_PRUNER["name"])
    if name not in PRUNERS:
        hint = did_you_mean(str(name), PRUNERS)
        _fail(src, "pruner.name", f"unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}{hint}")
    options = _parse_options(src, "pruner.options", PRUNERS[name], raw.get("options"), {})
    for key in ("min_resource", "max_resource"):
        value = options.get(key)
        if isinstance(value, int) and value > epochs:
            _fail(src, f"pruner.options.{key}", f"{value} exceeds budget.epochs ({epochs})")
    low, high = options.get("min_resource"), options.get("max_resource")
    if isinstance(low, int) and isinstance(high, int) and low >= high:
        _fail(src, "pruner.options.min_resource", f"{low} must be < max_resource ({high})")
    patience = raw.get("patience")
    if patience is not None:
        patience = _int(src, "pruner.patience", patience, 0)
    pruner = {"name": name, "options": options, "patience": patience}
    try:
        _build_pruner(pruner, epochs)
        if name == "hyperband":  # it builds its successive-halving brackets at the first prune
            keys = ("min_resource", "reduction_factor", "bootstrap_count")
            optuna.pruners.SuccessiveHalvingPruner(**{k: options[k] for k in keys if k in options})
    except (TypeError, ValueError) as exc:
        _fail(src, "pruner.options", " ".join(str(exc).split()))
    return pruner


def _build_pruner(pruner: Mapping[str, Any], epochs: int) -> optuna.pruners.BasePruner:
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


def _parse_enqueue(
    src: str, raw: Any, fixed: Mapping[str, Any], space: Mapping[str, ParamSpec], epochs: int
) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        _fail(src, "enqueue", f"expected a list of {{param: value}} mappings, got {raw!r}")
    out = []
    for i, entry in enumerate(raw):
        where = f"enqueue[{i}]"
        entry = _mapping(src, where, entry, "{lr: 1e-3}")
        params: dict[str, Any] = {}
        for key, value in entry.items():
            at = f"{where}.{key}"
            if key not in space:
                fixed_hint = " (it is fixed in config)" if key in fixed else ""
                hint = did_you_mean(str(key), space)
                _fail(
                    src, at, f"not a space parameter{fixed_hint}; space: {', '.join(space)}{hint}"
                )
            params[key] = _coerce(src, at, key, value)
            if not space[key].contains(params[key]):
                _fail(src, at, f"{params[key]!r} is outside the space ({space[key].describe()})")
        for key in params:
            for dep, values in (space[key].when or {}).items():
                if dep in params and params[dep] not in values:
                    shown = " or ".join(map(str, values))
                    _fail(src, f"{where}.{key}", f"unused unless {dep} is {shown}; drop {key}")
        _check_config(src, where, "", {**fixed, **params, "epochs": epochs})
        out.append(params)
    return out


def _check_grid(src: str, spec: StudySpec) -> None:
    grid = spec.grid()
    if math.prod(len(v) for v in grid.values()) > _GRID_CHECK_LIMIT:
        return
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        try:
            cfg.from_mapping({**spec.config, **point, "epochs": spec.epochs}, source=src)
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"{src}: ")
            _fail(src, "space", f"grid point {_show(point)} is invalid: {problem}")


# --- finding files ----------------------------------------------------------------------------


def find_studies_dir(studies_dir: Path | None = None) -> Path:
    """The argument, then $HPSEARCH_STUDIES_DIR, then ./studies, then the repo's studies/."""
    for given, how in ((studies_dir, "given"), (os.environ.get(STUDIES_DIR_ENV), STUDIES_DIR_ENV)):
        if given:
            if not Path(given).is_dir():
                raise StudyError(f"{given}: studies directory not found (from {how})")
            return Path(given)
    if Path("studies").is_dir():
        return Path("studies")
    return Path(hpsearch.__file__).resolve().parents[1] / "studies"


def list_study_files(studies_dir: Path | None = None) -> list[Path]:
    directory = find_studies_dir(studies_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def load_study(name_or_path: str | Path, studies_dir: Path | None = None) -> StudySpec:
    """Load ``<dir>/<name>.yaml`` (or .yml) for a bare name, else the file at the path."""
    text = str(name_or_path)
    if (
        isinstance(name_or_path, Path)
        or "/" in text
        or os.sep in text
        or text.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(name_or_path)
        if not path.is_file():
            raise StudyError(f"{path}: study file not found")
    else:
        directory = find_studies_dir(studies_dir)
        found = [directory / f"{text}{s}" for s in (".yaml", ".yml")]
        found = [p for p in found if p.is_file()]
        if not found:
            names = [p.stem for p in list_study_files(directory)]
            raise StudyError(
                f"study {text!r}: no {text}.yaml in {directory}; "
                f"available: {', '.join(names) or 'none'}{did_you_mean(text, names)}"
            )
        path = found[0]
    return parse_study(
        cfg.read_mapping(path), source=_display(path), path=path, default_name=path.stem
    )
