"""A study file's sampler: the Optuna samplers a file may name, their options checked at load
time against the sampler's own signature, and building one for a worker.

``parse_options`` is shared with the pruners (``_pruners``): an option the class does not
take, or a value of the wrong type, is an error naming the file and the dotted field, not a
``TypeError`` when the first worker builds the sampler.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import optuna
from pydantic import Field

from hpsearch.config import Int
from hpsearch.errors import did_you_mean, shown
from hpsearch.study._space import ParamSpec, Section, fail

DEFAULT_SAMPLER: dict[str, Any] = {"name": "tpe", "seed": 0, "options": {}}

SamplerName = Literal["tpe", "random", "grid", "cmaes", "gp", "qmc"]
SAMPLERS: dict[SamplerName, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
}


class SamplerSection(Section):
    """``sampler:`` as written (a bare name is ``{name: NAME}``)."""

    example = "{name: tpe, seed: 0}"
    name: SamplerName = DEFAULT_SAMPLER["name"]
    # numpy's RandomState, which Optuna's samplers seed, takes 32 bits; null: a random seed
    seed: Annotated[Int | None, Field(ge=0, le=2**32 - 1)] = DEFAULT_SAMPLER["seed"]
    options: Annotated[dict[Any, Any] | None, Field(examples=["{n_startup_trials: 10}"])] = None


# Numeric options Optuna checks only when it first uses them (TPE's after its start-up
# trials, hours into a study): the least each may be, and whether that least is allowed.
_OPTION_MINIMUM: dict[str, tuple[float, bool]] = {
    "n_startup_trials": (0, True),
    "n_ei_candidates": (1, True),
    "prior_weight": (0.0, True),
    "sigma0": (0.0, False),
    "popsize": (1, True),
}
# Optuna imports these lazily, so a missing one would only surface at the first trial.
_SAMPLER_PACKAGES = {"cmaes": ("cmaes",), "gp": ("torch", "scipy"), "qmc": ("scipy",)}


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


def parse_options(
    src: str, where: str, cls: type, raw: Mapping[Any, Any] | None, reserved: Mapping[str, str]
) -> dict[str, Any]:
    options = dict(raw or {})
    params = inspect.signature(cls).parameters
    settable = {
        n: t for n, p in params.items() if (t := _annotation_types(p)) and n not in reserved
    }
    for key, value in options.items():
        at = f"{where}.{key}"
        if key in reserved:
            fail(src, at, reserved[key])
        if key not in settable:
            if not settable:
                fail(src, at, f"{cls.__name__} takes no options here; drop {where}")
            hint = did_you_mean(str(key), settable)
            fail(src, at, f"unknown option of {cls.__name__}; allowed: {', '.join(settable)}{hint}")
        if not _type_ok(settable[key], value):
            fail(src, at, f"expected {' | '.join(settable[key])}, got {shown(value)}")
    for key, p in params.items():
        if p.default is inspect.Parameter.empty and key not in options and key not in reserved:
            fail(src, f"{where}.{key}", f"required by {cls.__name__}; give a value")
    return options


def parse_sampler(src: str, raw: SamplerSection, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    name, seed = raw.name, raw.seed
    for package in _SAMPLER_PACKAGES.get(name, ()):
        if importlib.util.find_spec(package) is None:
            fail(
                src, "sampler.name", f"{name} needs the {package!r} package: pip install {package}"
            )
    reserved = {
        "seed": "give the seed as sampler.seed",
        "search_space": "the grid comes from space (choices or step)",
    }
    options = parse_options(src, "sampler.options", SAMPLERS[name], raw.options, reserved)
    for key, value in options.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _OPTION_MINIMUM and number:
            least, inclusive = _OPTION_MINIMUM[key]
            if not (math.isfinite(value) and (value >= least if inclusive else value > least)):
                rule = f"{'>=' if inclusive else '>'} {least}"
                fail(src, f"sampler.options.{key}", f"must be a finite number {rule}, got {value}")
    sampler = {"name": name, "seed": seed, "options": options}
    if name == "grid":
        for p in space.values():
            if p.grid_values() is None:
                fail(src, f"space.{p.name}", f"grid needs choices or step for {p.name}")
            if p.when:
                # A grid point fixes every param, so a conditional one would repeat whole trials.
                fail(
                    src,
                    f"space.{p.name}.when",
                    "grid points set every param, so none can be conditional; use tpe or random",
                )
        return sampler
    try:
        build_sampler(sampler, None)
    except (TypeError, ValueError) as exc:
        fail(src, "sampler.options", " ".join(str(exc).split()))
    return sampler


def build_sampler(
    sampler: Mapping[str, Any], grid: Mapping[str, list[Any]] | None
) -> optuna.samplers.BaseSampler:
    cls = SAMPLERS[sampler["name"]]
    options = copy.deepcopy(sampler["options"])
    with warnings.catch_warnings():  # qmc is experimental; the file asked for it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if grid is not None:
            return optuna.samplers.GridSampler(dict(grid), seed=sampler["seed"])
        return cls(seed=sampler["seed"], **options)  # type: ignore[call-arg]
