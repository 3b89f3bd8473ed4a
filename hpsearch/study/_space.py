"""The search space of a study file: one ``ParamSpec`` per searched parameter.

``parse_space`` validates the ``space`` section against ``TrainConfig`` (names, types, ranges,
``when`` conditions) so that a trial can never suggest a value the config would reject. The
field-level checks here (``fail``, ``coerce``, ``check_config``, ``show``) are shared with the
rest of the study file, so every message has the same form: ``<file>: <dotted field>: <problem>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, NoReturn

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hpsearch import config as cfg
from hpsearch.errors import FieldError, did_you_mean, field_error, shown

# Load-time checks list at most this many combinations of searched values (each one a config);
# a space with more leaves its rare conflicting combinations to fail as trials.
COMBINATIONS_LIMIT = 10_000
MAX_STEPS = 1e9  # of a range with a step


class Section(BaseModel):
    """A mapping of a study file: its keys are all known; ``example`` shows one in messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    example: ClassVar[str] = ""


class ParamSection(Section):
    """One ``space`` entry as written; its values are checked against its config field."""

    example = "{low: 0.0, high: 0.5} or {choices: [a, b]}"
    low: Any = None
    high: Any = None
    log: cfg.Bool | None = None
    step: Any = None
    choices: Any = None
    when: Any = None


# --- field-level checks ---------------------------------------------------------------------------


def fail(src: str, where: str, problem: str) -> NoReturn:
    """Raise the one-line error every study-file check reports."""
    raise FieldError(src, where, problem)


def coerce(src: str, where: str, name: str, value: Any) -> Any:
    """``value`` as config field ``name`` takes it; errors name ``where``, not ``name``."""
    try:
        return cfg.coerce(name, value, source=src)
    except FieldError as exc:
        raise exc.at(where) from None


def check_config(src: str, where: str, name: str, values: Mapping[str, Any]) -> None:
    """Check that ``values`` make a valid ``TrainConfig``; an error about ``name`` is shown at
    ``where``, one about another field below it."""
    try:
        cfg.from_mapping(values, source=src)
    except FieldError as exc:
        raise exc.at(where, name=name) from None


def show(value: Any) -> str:
    """A value as the file would write it (JSON), for messages and diffs."""
    return json.dumps(value, default=str)


# --- parameters -----------------------------------------------------------------------------------


# A parameter's ``when``: the earlier params it looks at and the values that activate it.
Condition = dict[str, tuple[Any, ...]] | None


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
            return f"one of {show(list(self.choices))}"
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


class _Space(Section):
    space: Annotated[
        dict[Any, ParamSection] | None, Field(examples=["{lr: {low: 1e-5, high: 1e-3}}"])
    ] = None


def parse_space(src: str, raw: Any, fixed: Mapping[str, Any], epochs: int) -> dict[str, ParamSpec]:
    """The ``space`` section, in file order (``when`` conditions may only look back)."""
    try:
        raw_space = _Space(space=raw).space or {}
    except ValidationError as exc:
        raise field_error(exc, src, _Space) from None
    if not raw_space:
        fail(src, "space", "empty; give at least one parameter to search")
    space: dict[str, ParamSpec] = {}
    for key, param in raw_space.items():
        space[key] = _parse_param(src, str(key), param, fixed, space, list(raw_space), epochs)
    return space


def _numeric_kind(name: str) -> Literal["float", "int"] | None:
    match cfg.field_kind(name):
        case "int":
            return "int"
        case "float":
            return "float"
    return None


def _parse_param(
    src: str,
    name: str,
    raw: ParamSection,
    fixed: Mapping[str, Any],
    earlier: Mapping[str, ParamSpec],
    names: list[str],
    epochs: int,
) -> ParamSpec:
    where = f"space.{name}"
    _check_searchable(src, where, name, fixed)
    when = _parse_when(src, where, raw.when, fixed, earlier, names)
    if raw.choices is not None:
        spec = _parse_choices(src, where, name, raw, when)
        points = [(f"choices[{i}]", v) for i, v in enumerate(spec.choices or ())]
    else:
        spec = _parse_range(src, where, name, raw, bool(raw.log), when)
        points = [("low", spec.low), ("high", spec.high)]
    for label, value in points:  # each end of the range, each choice: a valid configuration
        check_config(src, f"{where}.{label}", name, {**fixed, name: value, "epochs": epochs})
    return spec


def _check_searchable(src: str, where: str, name: str, fixed: Mapping[str, Any]) -> None:
    if name not in cfg.FIELDS:
        fail(src, where, f"unknown parameter (not a config field){did_you_mean(name, cfg.FIELDS)}")
    if name in fixed:
        fail(src, where, f"also fixed in config ({fixed[name]!r}); search it or fix it, not both")
    if name in ("data", "metric"):
        fail(src, where, f"cannot be searched; a study has one: set the top-level {name}:")
    if name == "epochs":
        fail(src, where, "cannot be searched; set budget.epochs (pruners stop weak trials early)")
    if name == "threads":  # speed, not the model: and run sets each worker's count itself
        fail(src, where, "cannot be searched; it sets speed, not the model: fix config.threads")


def _parse_choices(
    src: str, where: str, name: str, raw: ParamSection, when: Condition
) -> ParamSpec:
    choices = raw.choices
    given = {k: getattr(raw, k) for k in ("low", "high", "log", "step")}
    extra = [k for k, v in given.items() if v not in (None, False)]
    extra += [k for k, v in given.items() if k != "log" and v in (0, False)]
    if extra:
        fail(src, where, f"choices cannot be combined with {', '.join(extra)}; give one form")
    if not isinstance(choices, list) or not choices:
        fail(src, f"{where}.choices", f"expected a non-empty list, got {shown(choices)}")
    values = tuple(coerce(src, f"{where}.choices", name, v) for v in choices)
    if len({show(v) for v in values}) < len(values):
        fail(src, f"{where}.choices", f"duplicate values in {show(list(values))}")
    return ParamSpec(name, "categorical", None, None, False, None, values, when)


def _parse_range(
    src: str, where: str, name: str, raw: ParamSection, log: bool, when: Condition
) -> ParamSpec:
    kind = _numeric_kind(name)
    if kind is None:
        allowed = cfg.field_choices(name) or ("true", "false")
        fail(src, where, f"needs choices, e.g. {{choices: [{', '.join(allowed)}]}}")
    for key in ("low", "high"):
        if getattr(raw, key) is None:
            fail(src, where, f"missing {key}; give low and high (or choices)")
    low = coerce(src, f"{where}.low", name, raw.low)
    high = coerce(src, f"{where}.high", name, raw.high)
    for key, value in (("low", low), ("high", high)):
        if not math.isfinite(value):
            fail(src, f"{where}.{key}", f"must be a finite number, got {value}")
    if low >= high:
        fail(src, where, f"low ({low}) must be < high ({high}); use choices for one value")
    if log and low <= 0:
        fail(src, f"{where}.low", f"log scale needs low > 0, got {low}; e.g. low: 1.0e-6")
    step = None
    if raw.step is not None:
        step = _parse_step(src, f"{where}.step", name, raw.step, low, high, log)
    return ParamSpec(name, kind, low, high, log, step, None, when)


def _parse_step(
    src: str, where: str, name: str, raw: Any, low: float, high: float, log: bool
) -> float | int:
    step = coerce(src, where, name, raw)
    if log:
        fail(src, where, f"step ({step}) cannot be combined with log: true")
    if not (math.isfinite(step) and step > 0):
        fail(src, where, f"must be a finite number > 0, got {step}")
    ratio = (high - low) / step
    if not ratio <= MAX_STEPS:  # a tiny step: no such search is meant, and inf cannot round
        fail(
            src,
            where,
            f"{step} divides [{low}, {high}] into over {MAX_STEPS:.0e} steps; "
            "use a larger step, or none",
        )
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
        fail(src, where, f"high - low ({high - low}) is not a multiple of {step}")
    return step


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
        fail(
            src, f"{where}.when", f"expected a mapping such as {{optimizer: sgd}}, got {shown(raw)}"
        )
    out: dict[str, tuple[Any, ...]] = {}
    for dep, wanted in raw.items():
        at = f"{where}.when.{dep}"
        if dep not in earlier:
            if dep in fixed:
                fail(src, at, f"{dep} is fixed in config ({fixed[dep]!r}); drop the condition")
            if dep in names:
                fail(
                    src,
                    at,
                    f"{dep} must come before {where.removeprefix('space.')} (conditions look back)",
                )
            hint = did_you_mean(str(dep), earlier)
            fail(src, at, f"unknown parameter; earlier params: {', '.join(earlier)}{hint}")
        parent = earlier[dep]
        if parent.choices is None:
            fail(src, at, f"{dep} is a {parent.kind} range; conditions need a param with choices")
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values:
            fail(src, at, "empty list; give the value(s) that activate the parameter")
        coerced = tuple(coerce(src, at, dep, v) for v in values)
        for value in coerced:
            if value not in parent.choices:
                fail(
                    src, at, f"{value!r} is not among {dep}'s choices {show(list(parent.choices))}"
                )
        out[dep] = coerced
    return out


def combinations(
    space: Mapping[str, ParamSpec], names: tuple[str, ...], limit: int
) -> list[dict[str, Any]] | None:
    """Every combination of values that the searched ``names`` can take together in one
    trial, with the params their ``when`` conditions look at; None if there are more than
    ``limit`` or a range too long to list (a float range gives its two ends).

    Conditions are honoured as ``StudySpec.suggest`` does (file order, inactive params
    absent), so a combination no trial can draw is never listed.
    """
    wanted = {name for name in names if name in space}
    stack = list(wanted)
    while stack:  # the params the conditions look at, and the ones theirs look at
        for parent in space[stack.pop()].when or {}:
            if parent not in wanted:
                wanted.add(parent)
                stack.append(parent)
    order = [p for p in space.values() if p.name in wanted]
    values: dict[str, list[Any]] = {}
    for p in order:
        if p.choices is not None:
            values[p.name] = list(p.choices)
        elif p.kind == "float":  # no cross-field rule reads a float: its ends suffice
            values[p.name] = [p.low, p.high]
        else:
            low, high = p._bounds()
            step = int(p.step or 1)
            if (int(high) - int(low)) // step >= limit:
                return None
            values[p.name] = list(range(int(low), int(high) + 1, step))
    out: list[dict[str, Any]] = []

    def walk(i: int, chosen: dict[str, Any]) -> bool:
        if i == len(order):
            out.append(dict(chosen))
            return len(out) <= limit
        p = order[i]
        if not p.active(chosen):
            return walk(i + 1, chosen)
        for value in values[p.name]:
            chosen[p.name] = value
            if not walk(i + 1, chosen):
                return False
            del chosen[p.name]
        return True

    return out if walk(0, {}) else None
