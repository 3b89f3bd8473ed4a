"""Study files: the shipped studies load, every mistake is one precise line, specs drive Optuna."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from hpsearch import settings
from hpsearch import study as studyfile
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, StudyError
from hpsearch.files import yaml_load
from hpsearch.study import _samplers as sampling
from hpsearch.study import load_study, parse_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO_STUDIES = studyfile.SHIPPED_STUDIES

BASE: dict[str, Any] = {
    "description": "test study",
    "config": {"optimizer": "adam", "hidden_dim": 32, "batch_size": 16},
    "space": {
        "lr": {"low": 1e-5, "high": 1e-3, "log": True},
        "dropout": {"low": 0.0, "high": 0.5},
    },
    "budget": {"trials": 20, "epochs": 10},
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def changed(**changes: Any) -> dict[str, Any]:
    """BASE with top-level sections replaced (None removes one)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def space(**params: Any) -> dict[str, Any]:
    return {**BASE["space"], **params}


# --- shipped studies -------------------------------------------------------------------------


def test_shipped_studies_load() -> None:
    names = [p.stem for p in studyfile.list_study_files(REPO_STUDIES)]
    assert {"regularization", "configuration"} <= set(names)
    reg = load_study("regularization", REPO_STUDIES)
    raw = yaml_load((REPO_STUDIES / "regularization.yaml").read_text())
    assert reg.name == "regularization"
    assert (reg.epochs, reg.trials) == (raw["budget"]["epochs"], raw["budget"]["trials"])
    assert list(reg.space) == ["lr", "dropout", "alpha", "grad_clip"]
    assert reg.config["regularizer"] == "l2" and reg.config["optimizer"] == "adam"
    assert reg.enqueue[0] == {  # the report's best point is tried first
        "lr": 8.726644867850513e-4,
        "dropout": 0.014878368933965491,
        "alpha": 6.332825849228081e-4,
        "grad_clip": 3.409241906075233,
    }
    best = reg.build_config(reg.enqueue[0])
    assert (best.hidden_dim, best.batch_size, best.epochs) == (200, 32, reg.epochs)
    assert isinstance(reg.make_sampler(), optuna.samplers.TPESampler)

    conf = load_study(REPO_STUDIES / "configuration.yaml")
    grid = conf.grid()
    assert math.prod(len(v) for v in grid.values()) == 300 == conf.trials
    assert grid["optimizer"] == ["sgd", "adam", "adadelta", "adagrad", "rmsprop"]
    assert conf.config["regularizer"] == "none" and conf.config["grad_clip"] is None
    assert isinstance(conf.make_sampler(), optuna.samplers.GridSampler)
    assert isinstance(conf.make_pruner(), optuna.pruners.PercentilePruner)


# --- validation: one line naming file, field and value ----------------------------------------

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("top key", {**BASE, "spase": {}}, ["spase: unknown key", "did you mean 'space'"]),
    ("name", changed(name="my study"), ["name: must be ASCII letters", "got 'my study'"]),
    ("config key", changed(config={"lrr": 0.1}), ["config.lrr: unknown field", "'lr'"]),
    ("config type", changed(config={"hidden_dim": "big"}), ["config.hidden_dim:", "'big'"]),
    (
        "config combination",
        changed(config={"pooling": "attention", "attention_heads": 3, "hidden_dim": 200}),
        ["config.attention_heads:", "3 must divide", "200"],
    ),
    ("space key", changed(space=space(lrr={"low": 1, "high": 2})), ["space.lrr:", "'lr'"]),
    (
        "param key",
        changed(space=space(alpha={"low": 0.1, "hgh": 0.2})),
        ["space.alpha.hgh: unknown key", "did you mean 'high'"],
    ),
    (
        "param type",
        changed(space=space(alpha={"low": "tiny", "high": 0.2})),
        ["space.alpha.low:", "expected a number", "'tiny'"],
    ),
    (
        "int type",
        changed(space=space(num_layers={"low": 1.5, "high": 3})),
        ["space.num_layers.low:", "expected an integer, got 1.5"],
    ),
    (
        "low >= high",
        changed(space=space(lr={"low": 0.1, "high": 0.01})),
        ["space.lr:", "low (0.1) must be < high (0.01)"],
    ),
    (
        "log low <= 0",
        changed(space=space(lr={"low": 0.0, "high": 0.01, "log": True})),
        ["space.lr.low:", "log scale needs low > 0", "0.0"],
    ),
    (
        "step with log",
        changed(space=space(lr={"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4})),
        ["space.lr.step:", "cannot be combined with log"],
    ),
    (
        "step not a multiple",
        changed(space=space(dropout={"low": 0.0, "high": 0.5, "step": 0.2})),
        ["space.dropout.step:", "not a multiple of 0.2"],
    ),
    (
        "empty choices",
        changed(space=space(cell={"choices": []})),
        ["space.cell.choices:", "non-empty list"],
    ),
    (
        "bad choice",
        changed(space=space(cell={"choices": ["rnn", "lstn"]})),
        ["space.cell.choices:", "'lstn'", "did you mean 'lstm'"],
    ),
    (
        "literal needs choices",
        changed(space=space(cell={"low": 0, "high": 1})),
        ["space.cell:", "needs choices", "rnn, gru, lstm"],
    ),
    (
        "outside config validity",
        changed(space=space(dropout={"low": 0.0, "high": 1.5})),
        ["space.dropout.high:", "must be in [0, 1)", "1.5"],
    ),
    (
        "when unknown",
        changed(space=space(momentum={"low": 0.0, "high": 0.9, "when": {"optimiser": "sgd"}})),
        ["space.momentum.when.optimiser: unknown parameter"],
    ),
    (
        "when fixed",
        changed(space=space(momentum={"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}})),
        ["space.momentum.when.optimizer:", "fixed in config ('adam')"],
    ),
    (
        "when value",
        changed(
            config={"hidden_dim": 32},
            space=space(
                optimizer={"choices": ["sgd", "adam"]},
                momentum={"low": 0.0, "high": 0.9, "when": {"optimizer": "rmsprop"}},
            ),
        ),
        ["space.momentum.when.optimizer:", "'rmsprop' is not among optimizer's choices"],
    ),
    (
        "when order",
        changed(
            config={},
            space={
                "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
                "optimizer": {"choices": ["sgd", "adam"]},
            },
        ),
        ["space.momentum.when.optimizer:", "must come before"],
    ),
    ("sampler name", changed(sampler={"name": "tpee"}), ["sampler.name:", "'tpee'", "'tpe'"]),
    (
        "sampler option",
        changed(sampler={"name": "tpe", "options": {"n_startup_trial": 5}}),
        ["sampler.options.n_startup_trial: unknown option", "did you mean 'n_startup_trials'"],
    ),
    (
        "sampler option type",
        changed(sampler={"name": "tpe", "options": {"n_startup_trials": "ten"}}),
        ["sampler.options.n_startup_trials: expected int", "'ten'"],
    ),
    (
        "sampler seed in options",
        changed(sampler={"name": "random", "options": {"seed": 3}}),
        ["sampler.options.seed:", "sampler.seed"],
    ),
    ("pruner name", changed(pruner={"name": "medain"}), ["pruner.name:", "'medain'", "'median'"]),
    (
        "pruner option",
        changed(pruner={"name": "median", "options": {"n_warmup_step": 5}}),
        ["pruner.options.n_warmup_step: unknown option", "did you mean 'n_warmup_steps'"],
    ),
    (
        "pruner option value",
        changed(pruner={"name": "hyperband", "options": {"reduction_factor": 1}}),
        ["pruner.options:", "reduction_factor"],
    ),
    (
        "pruner required option",
        changed(pruner={"name": "percentile"}),
        ["pruner.options.percentile: required"],
    ),
    (
        "pruner resource",
        changed(pruner={"name": "successive_halving", "options": {"min_resource": 50}}),
        ["pruner.options.min_resource:", "50 exceeds budget.epochs (10)"],
    ),
    ("trials", changed(budget={"trials": 0}), ["budget.trials:", "must be in [1, 1000000], got 0"]),
    ("trials type", changed(budget={"trials": "many"}), ["budget.trials:", "'many'"]),
    ("timeout", changed(budget={"timeout": -5}), ["budget.timeout:", "> 0", "-5"]),
    ("epochs", changed(budget={"epochs": 0}), ["budget.epochs:", "must be in [1, 1000000], got 0"]),
    ("budget key", changed(budget={"trial": 3}), ["budget.trial: unknown key", "'trials'"]),
    (
        "grid continuous",
        changed(sampler={"name": "grid"}),
        ["space.lr:", "grid needs choices or step for lr"],
    ),
    (
        "grid conditional",
        changed(
            config={},
            sampler={"name": "grid"},
            space={
                "optimizer": {"choices": ["sgd", "adam"]},
                "momentum": {"choices": [0.0, 0.9], "when": {"optimizer": "sgd"}},
            },
        ),
        ["space.momentum.when:", "grid"],
    ),
    (
        "grid point invalid",
        changed(
            config={"pooling": "attention"},
            sampler={"name": "grid"},
            space={"hidden_dim": {"choices": [8, 6]}, "attention_heads": {"choices": [1, 4]}},
        ),
        ["space: grid point", '"hidden_dim": 6', "attention_heads: 4 must divide", "size 6"],
    ),
    (
        "both fixed and searched",
        changed(space=space(optimizer={"choices": ["sgd", "adam"]})),
        ["space.optimizer:", "also fixed in config ('adam')"],
    ),
    ("epochs searched", changed(space=space(epochs={"low": 1, "high": 5})), ["space.epochs:"]),
    (
        "enqueue key",
        changed(enqueue=[{"lr": 1e-4, "dropot": 0.1}]),
        ["enqueue[0].dropot: not a space parameter", "'dropout'"],
    ),
    (
        "enqueue fixed key",
        changed(enqueue=[{"optimizer": "sgd"}]),
        ["enqueue[0].optimizer:", "fixed in config"],
    ),
    (
        "enqueue outside",
        changed(enqueue=[{"lr": 1e-4}, {"lr": 0.5}]),
        ["enqueue[1].lr: 0.5 is outside the space", "log"],
    ),
    (
        "enqueue inactive",
        changed(
            config={},
            space={
                "optimizer": {"choices": ["sgd", "adam"]},
                "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
            },
            enqueue=[{"optimizer": "adam", "momentum": 0.5}],
        ),
        ["enqueue[0].momentum:", "unused unless optimizer is sgd"],
    ),
    ("empty space", changed(space={}), ["space: empty"]),
    # Found by a hostile-input pass (seventh session): each used to load, then fail trials.
    ("name of dots", changed(name=".."), ["name: must be", "not starting with '.'", "got '..'"]),
    ("name like an option", changed(name="-x"), ["name: must be", "got '-x'"]),
    ("description not text", changed(description=0), ["description: expected a string"]),
    (
        "epochs beyond the range",
        changed(budget={"epochs": 2_000_000}),
        ["budget.epochs: must be in [1, 1000000], got 2000000"],
    ),
    (
        "epochs set twice",
        changed(config={"epochs": 3}, budget={"epochs": 1}),
        ["config.epochs: 3 conflicts with budget.epochs (1)"],
    ),
    (
        "threads searched",
        changed(space=space(threads={"choices": [1, 2]})),
        ["space.threads: cannot be searched"],
    ),
    (
        "heads inside a range that do not divide",
        changed(
            config={"pooling": "attention", "hidden_dim": 16},
            space=space(attention_heads={"low": 1, "high": 16}),
        ),
        ['space: a trial can draw {"attention_heads": 3}', "3 must divide", "16"],
    ),
    (
        "heads conditional on a searched pooling",
        changed(
            config={"hidden_dim": 16},
            space={
                "pooling": {"choices": ["max", "attention"]},
                "attention_heads": {"choices": [2, 3], "when": {"pooling": "attention"}},
            },
        ),
        ['{"pooling": "attention", "attention_heads": 3}', "must divide"],
    ),
    (
        "heads against a searched hidden size",
        changed(
            config={"pooling": "attention"},
            space={
                "hidden_dim": {"low": 12, "high": 36, "step": 12},
                "attention_heads": {"choices": [1, 2, 8]},
            },
        ),
        ['{"hidden_dim": 12, "attention_heads": 8}', "must divide"],
    ),
    (
        "grid with enqueue",
        changed(
            sampler={"name": "grid"},
            space={"num_layers": {"choices": [1, 2]}},
            enqueue=[{"num_layers": 1}],
        ),
        ["enqueue: the grid sampler runs every grid point once"],
    ),
    (
        "tpe candidates zero",
        changed(sampler={"name": "tpe", "options": {"n_ei_candidates": 0}}),
        ["sampler.options.n_ei_candidates: must be a finite number >= 1, got 0"],
    ),
    (
        "tpe prior weight negative",
        changed(sampler={"name": "tpe", "options": {"prior_weight": -1.0}}),
        ["sampler.options.prior_weight: must be a finite number >= 0"],
    ),
    (
        "startup trials negative",
        changed(sampler={"name": "gp", "options": {"n_startup_trials": -1}}),
        ["sampler.options.n_startup_trials: must be a finite number >= 0, got -1"],
    ),
    (
        "options for a sampler that takes none",
        changed(sampler={"name": "random", "options": {"foo": 1}}),
        ["sampler.options.foo: RandomSampler takes no options here"],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_errors(tmp_path: Path, data: dict[str, Any], expected: list[str]) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, (part, message)


# --- issue 16: budget bounds and names, one rule per field ------------------------------------

STUDY: dict[str, Any] = {"space": {"lr": {"low": 1e-4, "high": 1e-2}}}


def one_line(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_trials_past_the_bound_read_the_same_in_both_spellings(tmp_path: Path) -> None:
    # 1e12 was "expected an integer" while 1000000000000 loaded, with a nonsense ETA.
    messages = set()
    path = tmp_path / "s.yaml"
    body = "space: {lr: {low: 1.0e-4, high: 1.0e-2}}\n"
    for text in ("1e12", "1000000000000"):
        path.write_text(f"{body}budget: {{trials: {text}}}\n")
        with pytest.raises(ConfigError) as info:
            load_study(path)
        messages.add(str(info.value))
    assert messages == {f"{path}: budget.trials: must be in [1, 1000000], got 1000000000000"}
    path.write_text(f"{body}budget: {{trials: 1e3}}\n")
    assert load_study(path).trials == 1000


def test_a_timeout_past_a_year_is_refused(tmp_path: Path) -> None:
    data = {**STUDY, "budget": {"timeout": 1e10}}
    assert one_line(tmp_path, data) == (
        "budget.timeout: must be a finite number of seconds > 0, at most 31622400 (366 days), "
        "got 10000000000.0"
    )


def test_a_study_name_says_ascii(tmp_path: Path) -> None:
    # It said "must be letters, digits", which 研 is.
    message = one_line(tmp_path, {**STUDY, "name": "研究"})
    assert message.startswith("name: must be ASCII letters, digits, '_', '.' or '-'")
    assert message.endswith("got '研究'")


def test_a_long_study_name_is_refused_in_a_short_line(tmp_path: Path) -> None:
    # A 300-character name loaded, and broke the live view's layout.
    assert load_study(_written(tmp_path, "a" * 64)).name == "a" * 64
    message = one_line(tmp_path, {**STUDY, "name": "b" * 300})
    assert message.startswith("name: must be ") and "at most 64 characters" in message
    assert len(message) < 250


def _written(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "name": name}))
    return path


def test_a_study_file_that_is_not_utf8_is_named_a_study_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: é\nspace: {lr: {low: 1.0e-4, high: 1.0e-2}}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 6); expected a YAML or JSON study file"


def test_missing_sampler_package_is_reported_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sampling.importlib.util.find_spec
    monkeypatch.setattr(
        sampling.importlib.util, "find_spec", lambda n: None if n == "cmaes" else real(n)
    )
    path = write(tmp_path, changed(sampler={"name": "cmaes"}))
    with pytest.raises(ConfigError, match=r"sampler\.name: cmaes needs .*pip install cmaes"):
        load_study(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nspace:\n  lr: {low: 1, high: 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML at line \d"):
        load_study(path)


def test_unknown_study_name_lists_available(tmp_path: Path) -> None:
    write(tmp_path, BASE, name="regularisation")
    write(tmp_path, BASE, name="configuration")
    with pytest.raises(StudyError) as info:
        load_study("regularization", tmp_path)
    message = str(info.value)
    assert "available: configuration, regularisation" in message
    assert "did you mean 'regularisation'" in message
    with pytest.raises(StudyError, match=r"nope\.yaml: study file not found"):
        load_study(tmp_path / "nope.yaml")


def test_studies_dir_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, BASE, name="mine")
    monkeypatch.chdir(tmp_path)  # no ./studies here
    monkeypatch.delenv(settings.STUDIES_DIR, raising=False)
    assert studyfile.find_studies_dir() == REPO_STUDIES
    monkeypatch.setenv(settings.STUDIES_DIR, str(tmp_path))
    assert studyfile.find_studies_dir() == tmp_path
    spec = load_study("mine")
    assert spec.name == "mine" and spec.path == tmp_path / "mine.yaml"
    assert studyfile.find_studies_dir(REPO_STUDIES) == REPO_STUDIES
    monkeypatch.setenv(settings.STUDIES_DIR, str(tmp_path / "missing"))
    with pytest.raises(StudyError, match="missing: studies directory not found"):
        studyfile.find_studies_dir()
    # The CLI passes the variable's value as --studies-dir; the message still names it.
    env = f"found \\(from {settings.STUDIES_DIR}\\)"
    with pytest.raises(StudyError, match=env):
        studyfile.find_studies_dir(tmp_path / "missing")
    with pytest.raises(StudyError, match="other: studies directory not found \\(from --studies"):
        studyfile.find_studies_dir(tmp_path / "other")
    # A file there was "not found" too.
    with pytest.raises(StudyError, match=r"mine\.yaml: not a directory \(from --studies-dir\)"):
        studyfile.find_studies_dir(tmp_path / "mine.yaml")


# --- behaviour ---------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    spec = load_study(write(tmp_path, changed(budget=None, config={"epochs": 2})))
    assert spec.sampler == {"name": "tpe", "seed": 0, "options": {}}
    assert spec.pruner["name"] == studyfile.DEFAULT_PRUNER["name"]
    assert spec.pruner["options"]["min_resource"] == 2  # capped to the study's epochs
    assert (spec.trials, spec.timeout, spec.epochs) == (studyfile.DEFAULT_TRIALS, None, 2)
    assert isinstance(spec.make_pruner(), optuna.pruners.SuccessiveHalvingPruner)


def test_suggest_honours_when(tmp_path: Path) -> None:
    data = changed(
        config={"hidden_dim": 16},
        space={
            "optimizer": {"choices": ["sgd", "rmsprop", "adam"]},
            "momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": ["sgd", "rmsprop"]}},
            "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        },
    )
    spec = load_study(write(tmp_path, data))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = spec.suggest(trial)
        assert params == trial.params
        assert ("momentum" in params) == (params["optimizer"] in ("sgd", "rmsprop"))
        assert next(iter(params)) == "optimizer"
        config = spec.build_config(params)
        assert config.momentum == params.get("momentum", 0.0)
        seen.add(params["optimizer"])
        study.tell(trial, params["lr"])
    assert seen == {"sgd", "rmsprop", "adam"}


def test_grid_sampler_enumerates_the_grid(tmp_path: Path) -> None:
    data = changed(
        sampler={"name": "grid", "seed": 3},
        space={
            "dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
            "optimizer": {"choices": ["sgd", "adam"]},
            "batch_size": {"low": 16, "high": 32, "step": 16},
        },
        config={"hidden_dim": 8},
    )
    spec = load_study(write(tmp_path, data))
    assert spec.grid()["dropout"] == [0.0, 0.1, 0.2, 0.3]  # no 0.30000000000000004
    study = optuna.create_study(direction="maximize", sampler=spec.make_sampler())
    study.optimize(lambda t: float(len(spec.suggest(t))), n_trials=50)
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(study.trials) == len(points) == 4 * 2 * 2


def test_build_config_maps_params_onto_trainconfig() -> None:
    spec = load_study(REPO_STUDIES / "regularization.yaml")
    params = {"lr": 1e-4, "dropout": 0.25, "alpha": 1e-3, "grad_clip": 5.0}
    config = spec.build_config(params)
    assert isinstance(config, TrainConfig)
    assert (config.lr, config.dropout, config.alpha, config.grad_clip) == (1e-4, 0.25, 1e-3, 5.0)
    assert (config.optimizer, config.regularizer, config.epochs) == ("adam", "l2", spec.epochs)
    with pytest.raises(ConfigError, match="dropout"):
        spec.build_config({**params, "dropout": 1.0})


def test_differences_report_ranges_and_ignore_budget(tmp_path: Path) -> None:
    spec = load_study(write(tmp_path, BASE))
    stored = json.loads(json.dumps(spec.to_dict()))
    assert spec.differences(stored) == []
    assert spec.with_budget(trials=99, timeout=60).differences(stored) == []
    wider = changed(
        space=space(lr={"low": 1e-5, "high": 1e-2, "log": True}),
        budget={"trials": 50, "epochs": 12},
        description="reworded",
    )
    diffs = load_study(write(tmp_path, wider)).differences(stored)
    assert sorted(diffs) == ["budget.epochs: 10 -> 12", "space.lr.high: 0.001 -> 0.01"]
    added = changed(space=space(alpha={"low": 0.0, "high": 0.1}))
    (line,) = load_study(write(tmp_path, added)).differences(stored)
    assert line.startswith("space.alpha: (absent) -> {")


def test_with_budget_validates() -> None:
    spec = load_study(REPO_STUDIES / "regularization.yaml")
    assert (spec.with_budget(trials=5).trials, spec.with_budget(timeout=9).timeout) == (5, 9.0)
    assert spec.with_budget().trials == spec.trials
    with pytest.raises(ConfigError, match=r"--trials: must be in \[1, 1000000\], got 0"):
        spec.with_budget(trials=0)
    with pytest.raises(ConfigError, match="--timeout"):
        spec.with_budget(timeout=-1)


def test_to_dict_is_json_stable_and_round_trips() -> None:
    for path in studyfile.list_study_files(REPO_STUDIES):
        spec = load_study(path)
        data = spec.to_dict()
        text = json.dumps(data)
        assert json.loads(text) == data
        assert json.dumps(load_study(path).to_dict()) == text
        again = parse_study(json.loads(text), source="stored")
        assert again.to_dict() == data
        assert again.space == spec.space and again.enqueue == spec.enqueue
        data["space"]["lr"] = "mutated"  # to_dict hands out a copy
        assert spec.to_dict() != data


@pytest.mark.parametrize("name", ["tpe", "random", "gp", "qmc"])
def test_samplers_build_with_seed(tmp_path: Path, name: str) -> None:
    spec = load_study(write(tmp_path, changed(sampler={"name": name, "seed": 7})))
    sampler = spec.make_sampler()
    assert isinstance(sampler, studyfile.SAMPLERS[name])
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask()
    assert set(spec.suggest(trial)) == {"lr", "dropout"}


def test_pruners_build(tmp_path: Path) -> None:
    hyperband = load_study(write(tmp_path, changed(pruner="hyperband"))).make_pruner()
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 10  # budget.epochs, not "auto"
    patient = load_study(write(tmp_path, changed(pruner={"name": "none", "patience": 10})))
    assert patient.pruner == {"name": "none", "options": {}, "patience": 10}
    pruner = patient.make_pruner()
    assert isinstance(pruner, optuna.pruners.PatientPruner) and pruner._wrapped_pruner is None
    nop = load_study(write(tmp_path, changed(pruner="none"))).make_pruner()
    assert isinstance(nop, optuna.pruners.NopPruner)


def test_seed_offset_shifts_the_sampler_seed(tmp_path: Path) -> None:
    def first_lr(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        return float(study.ask().suggest_float("lr", 1e-5, 1e-3, log=True))

    spec = load_study(write(tmp_path, changed(sampler={"name": "random", "seed": 7})))
    shifted = first_lr(spec.make_sampler(seed_offset=2))
    assert shifted == first_lr(optuna.samplers.RandomSampler(seed=9))
    assert shifted != first_lr(spec.make_sampler())
    unseeded = load_study(write(tmp_path, changed(sampler={"name": "random", "seed": None})))
    assert isinstance(unseeded.make_sampler(seed_offset=3), optuna.samplers.RandomSampler)


def test_grid_workers_share_one_grid_order(tmp_path: Path) -> None:
    # Trial n gets grid point n of the seed-shuffled grid: workers with different offsets must
    # still agree on the order, or points repeat and others are never run.
    data = {
        "name": "g",
        "config": {"epochs": 2},
        "space": {"lr": {"choices": [1e-4, 1e-3, 1e-2]}, "dropout": {"choices": [0.0, 0.1]}},
        "sampler": {"name": "grid", "seed": 3},
    }
    spec = load_study(write(tmp_path, data))
    study = optuna.create_study(direction="maximize", sampler=spec.make_sampler(0))
    other = optuna.load_study(
        study_name=study.study_name, storage=study._storage, sampler=spec.make_sampler(7)
    )
    for i in range(6):
        (study if i % 2 else other).optimize(lambda t: float(len(spec.suggest(t))), n_trials=1)
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(points) == 6


def test_the_largest_sampler_seed_still_takes_a_worker_offset() -> None:
    spec = parse_study(
        {
            "name": "seeded",
            "space": {"lr": {"low": 1.0e-3, "high": 1.0e-2}},
            "sampler": {"name": "random", "seed": 2**32 - 1},
            "budget": {"trials": 2},
        },
        source="test",
    )
    draws = []
    for offset in (0, 1, 2**31):
        study = optuna.create_study(sampler=spec.make_sampler(offset))
        study.optimize(lambda t: spec.suggest(t)["lr"], n_trials=1)
        draws.append(study.trials[0].params["lr"])
    assert len(set(draws)) == 3


def test_a_study_is_found_by_the_name_studies_lists(tmp_path: Path) -> None:
    # `hpsearch studies` lists a file by its `name:`; `run --study NAME` must find it too.
    body = "space:\n  lr: {low: 1.0e-4, high: 1.0e-2}\nbudget: {trials: 2}\n"
    (tmp_path / "filename.yml").write_text("name: wrongname\n" + body)
    assert studyfile.load_study("wrongname", tmp_path).name == "wrongname"
    (tmp_path / "a.yaml").write_text("name: twice\n" + body)
    (tmp_path / "b.yaml").write_text("name: twice\n" + body)
    with pytest.raises(StudyError, match=r"'twice': named so by 2 files in .*: a.yaml, b.yaml"):
        studyfile.load_study("twice", tmp_path)
    with pytest.raises(StudyError, match=r"no nothere.yaml in"):
        studyfile.load_study("nothere", tmp_path)
