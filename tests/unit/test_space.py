"""The search space on its own: ``parse_space`` and ``ParamSpec``, without a study file."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from hpsearch import study as studyfile
from hpsearch.errors import ConfigError
from hpsearch.study import _space as space
from hpsearch.study._space import ParamSpec, parse_space

FIXED = {"hidden_dim": 16}


def parse(raw: dict[str, Any], fixed: dict[str, Any] | None = None) -> dict[str, ParamSpec]:
    return parse_space("s.yaml", raw, FIXED if fixed is None else fixed, 10)


def test_studyfile_still_exports_paramspec() -> None:
    assert studyfile.ParamSpec is space.ParamSpec


def test_kinds_follow_trainconfig_field_types() -> None:
    parsed = parse(
        {
            "lr": {"low": 1e-4, "high": 1e-1, "log": True},
            "num_layers": {"low": 1, "high": 3},
            "dropout": {"low": 0.0, "high": 0.5, "step": 0.25},
            "optimizer": {"choices": ["sgd", "adam"]},
        }
    )
    assert list(parsed) == ["lr", "num_layers", "dropout", "optimizer"]
    lr, layers, dropout, optimizer = parsed.values()
    assert (lr.kind, layers.kind, dropout.kind, optimizer.kind) == (
        "float",
        "int",
        "float",
        "categorical",
    )
    assert lr.distribution() == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert layers.distribution() == optuna.distributions.IntDistribution(1, 3)
    assert dropout.grid_values() == [0.0, 0.25, 0.5]
    assert lr.grid_values() is None  # continuous: no grid
    assert optimizer.describe() == 'one of ["sgd", "adam"]'
    assert dropout.describe() == "float in [0.0, 0.5], step 0.25"


@pytest.mark.parametrize(
    ("value", "inside"),
    [(0.25, True), (0.5, True), (0.3, False), (0.75, False), (True, False), ("0.25", False)],
)
def test_contains_respects_range_and_step(value: Any, inside: bool) -> None:
    (dropout,) = parse({"dropout": {"low": 0.0, "high": 0.5, "step": 0.25}}).values()
    assert dropout.contains(value) is inside


def test_when_activates_on_earlier_choices_only() -> None:
    parsed = parse(
        {
            "optimizer": {"choices": ["sgd", "adam"]},
            "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        }
    )
    momentum = parsed["momentum"]
    assert momentum.when == {"optimizer": ("sgd",)}  # a single value becomes a tuple
    assert momentum.active({"optimizer": "sgd"})
    assert not momentum.active({"optimizer": "adam"})
    assert not momentum.active({})
    assert momentum.to_dict()["when"] == {"optimizer": ["sgd"]}


@pytest.mark.parametrize(
    ("raw", "fixed", "expected"),
    [
        ({}, None, "s.yaml: space: empty"),
        (["lr"], None, "s.yaml: space: expected a mapping such as"),
        ({"hidden_dim": {"low": 8, "high": 32}}, None, "space.hidden_dim: also fixed in config"),
        ({"epochs": {"low": 1, "high": 3}}, {}, "space.epochs: cannot be searched"),
        ({"optimizer": {"low": 1, "high": 2}}, None, "space.optimizer: needs choices, e.g."),
        (
            {"dropout": {"low": 0.0, "high": 0.5, "step": 0.2}},
            None,
            "space.dropout.step: high - low (0.5) is not a multiple of 0.2",
        ),
        (
            {"momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}}},
            None,
            "space.momentum.when.optimizer: unknown parameter; earlier params: ",
        ),
        (
            {
                "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
                "optimizer": {"choices": ["sgd", "adam"]},
            },
            None,
            "space.momentum.when.optimizer: optimizer must come before momentum",
        ),
        (
            {
                "optimizer": {"choices": ["sgd", "adam"]},
                "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "adadelta"}},
            },
            None,
            "space.momentum.when.optimizer: 'adadelta' is not among optimizer's choices",
        ),
        (
            {"dropout": {"low": 0.0, "high": 1.0}},
            None,
            "space.dropout.high: must be in [0, 1), got 1.0",  # TrainConfig's check, re-addressed
        ),
    ],
)
def test_errors_name_the_field(raw: Any, fixed: dict[str, Any] | None, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(raw, fixed)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


# --- combinations: what one trial can draw together ------------------------------------------


def test_combinations_honour_conditions_and_list_int_ranges() -> None:
    parsed = parse(
        {
            "pooling": {"choices": ["max", "attention"]},
            "attention_heads": {"low": 1, "high": 3, "when": {"pooling": "attention"}},
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        }
    )
    points = space.combinations(parsed, ("attention_heads",), 100)
    # heads only with attention (a trial never draws them with max pooling); lr not asked for
    assert points == [
        {"pooling": "max"},
        {"pooling": "attention", "attention_heads": 1},
        {"pooling": "attention", "attention_heads": 2},
        {"pooling": "attention", "attention_heads": 3},
    ]
    assert space.combinations(parsed, ("lr",), 100) == [{"lr": 1e-4}, {"lr": 1e-2}]
    assert space.combinations(parsed, ("hidden_dim",), 100) == [{}]  # not searched


def test_combinations_give_up_beyond_the_limit() -> None:
    parsed = parse({"hidden_dim": {"low": 1, "high": 10_000}}, {})
    assert space.combinations(parsed, ("hidden_dim",), 1000) is None
    ranges = {"hidden_dim": {"low": 8, "high": 64, "step": 8}, "seed": {"low": 0, "high": 3}}
    parsed = parse(ranges, {})
    assert space.combinations(parsed, ("hidden_dim", "seed"), 100) is not None
    assert space.combinations(parsed, ("hidden_dim", "seed"), 20) is None  # 8 x 4 points
