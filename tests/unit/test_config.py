"""The training configuration: YAML as YAML 1.2 reads it, ``--set`` parsing, field ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpsearch import config, files
from hpsearch.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),  # YAML 1.1: octal 8
        ("1:30", "1:30"),  # YAML 1.1: base 60, 90
        ("NO", "NO"),  # YAML 1.1: false (the Norway problem)
        ("yes", "yes"),
        ("off", "off"),
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("1e-3", 1.0e-3),  # YAML 1.1: a string
        ("1.0e-3", 1.0e-3),
        ("-12", -12),
        ("+3", 3),
        ("1_000", 1000),
        ("0x1F", 31),
        ("0o17", 15),
        ("true", True),
        ("False", False),
        ("~", None),
        (".inf", float("inf")),
    ],
)
def test_plain_scalars_read_as_yaml_1_2(text: str, value: Any) -> None:
    assert files.yaml_load(f"v: {text}") == {"v": value}


def test_a_repeated_key_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("space:\n  lr: {low: 1, high: 2}\nname: x\nspace:\n  dropout: {}\n")
    with pytest.raises(ConfigError) as exc:
        files.read_mapping(path)
    assert str(exc.value) == (
        f"{path}: invalid YAML at line 4: found duplicate key 'space' (first at line 1)"
    )
    nested = tmp_path / "y.yaml"
    nested.write_text("config: {hidden_dim: 16, hidden_dim: 32}\n")
    with pytest.raises(ConfigError, match="duplicate key 'hidden_dim'"):
        files.read_mapping(nested)


def test_merge_keys_still_merge() -> None:
    text = "base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  b: 3\n"
    assert files.yaml_load(text)["other"] == {"a": 1, "b": 3}


@pytest.mark.parametrize("value", ["{", "[1", "'a", "!!python/object:os.system"])
def test_set_with_a_value_that_is_not_yaml(value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse_override(f"lr={value}")
    message = str(exc.value)
    assert message.startswith(f"--set {'lr=' + value!r}: the value is not valid YAML (")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split_seed=-5", "split_seed: must be in [0, 2**63 - 1], got -5"),
        ("seed=18446744073709551616", "seed: must be in [0, 2**63 - 1], got 1844674"),
        ("hidden_dim=1e30", "hidden_dim: must be in [1, 65536], got 1000000000000000019"),
        ("threads=100000", "threads: must be in [1, 1024] or null, got 100000"),
        ("epochs=0", "epochs: must be in [1, 1000000], got 0"),
        ("head_layers=-1", "head_layers: must be in [0, 64], got -1"),
        ("max_vocab=2", "max_vocab: must be in [3, 1000000000] or null, got 2"),
        ("lr=1:2", "lr: expected a number, got '1:2'"),
    ],
)
def test_out_of_range_values_fail_when_loaded(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(overrides=[override])
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    ("override", "value"), [("epochs=1e3", 1000), ("hidden_dim=64.0", 64), ("lr=1", 1.0)]
)
def test_whole_floats_are_integers_and_integers_floats(override: str, value: Any) -> None:
    key = override.partition("=")[0]
    got = getattr(config.load(overrides=[override]), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epochs=2.5", "--set: epochs: expected an integer, got 2.5"),
        ('epochs="3"', "--set: epochs: expected an integer, got '3'"),
        ("epochs=true", "--set: epochs: expected an integer, got True"),
        ('lr="0.1"', "--set: lr: expected a number, got '0.1'"),
        ("lr=false", "--set: lr: expected a number, got False"),
        ("packed=1", "--set: packed: expected true or false, got 1"),
        ("lr=.inf", "config: lr: must be a finite number > 0, got inf"),
        ("grad_clip=.nan", "config: grad_clip: must be a finite number > 0 or null, got nan"),
        ("lr=1e400", "config: lr: must be a finite number > 0, got inf"),
        ("lr=" + "9" * 400, "--set: lr: expected a number, got 9999999"),  # was OverflowError
    ],
)
def test_types_are_strict(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides=[override])
    assert str(info.value).startswith(expected)
    assert len(str(info.value)) < 200


def test_a_huge_value_is_shown_bounded(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cell: [" + ", ".join(["x" * 1000] * 1000) + "]\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cell: ") and len(message) < 400


def test_the_range_bounds_themselves_are_allowed() -> None:
    cfg = config.load(overrides=["seed=9223372036854775807", "threads=1024", "head_layers=0"])
    assert (cfg.seed, cfg.threads, cfg.head_layers) == (2**63 - 1, 1024, 0)
    assert config.load(overrides=["hidden_dim=010"]).hidden_dim == 10


def test_a_checkpoint_reads_as_the_config_it_was_trained_with(tmp_path: Path) -> None:
    import torch

    from hpsearch.training import RNNClassifier, load_config, save_checkpoint
    from hpsearch.training._data import Vocab

    cfg = config.load(overrides=["hidden_dim=12", "embedding_dim=8", "lr=0.002"])
    vocab = Vocab(itos=["<pad>", "<unk>", "what"], stoi={"<pad>": 0, "<unk>": 1, "what": 2})
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, RNNClassifier(cfg, len(vocab.itos), 6), cfg, vocab)
    assert load_config(path) == cfg
    assert load_config(path, ["epochs=2"]).epochs == 2
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes([0, 255, 254]) + b" binary")
    with pytest.raises(ConfigError, match=r"junk.bin: not UTF-8 text \(byte 1\); expected"):
        load_config(junk)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    from hpsearch.training import load_config

    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"PK\x03\x04junk")  # a zip's signature, not a checkpoint
    control = tmp_path / "control.yaml"
    control.write_bytes(b'a: "\x01"\n')
    for path, start in (
        (fake, f"{fake}: not a readable hpsearch checkpoint: "),
        (control, f"{control}: invalid YAML: unacceptable character #x0001"),
    ):
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert str(exc.value).startswith(start) and "\n" not in str(exc.value)


# --- config files (train --config) --------------------------------------------------------------


def test_a_json_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 1, "lr": 0.001, "lr": 0.5}')
    with pytest.raises(ConfigError, match=r"c\.json: invalid JSON: duplicate key 'lr'"):
        config.load(path)
    path.write_text('{"config": {"lr": 0.001, "lr": 0.5}}')  # inside an export, too
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        config.load(path)


@pytest.mark.parametrize("text", ["", "null\n", "# nothing\n"])
def test_an_empty_config_file_is_an_error_not_the_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml: the file is empty"):
        config.load(path, ["epochs=1"])


def test_an_export_with_config_fields_beside_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "best.yaml"
    path.write_text("config: {epochs: 1, hidden_dim: 16}\nlr: 0.5\n")
    with pytest.raises(ConfigError, match=r"best\.yaml: lr: a config field beside config:"):
        config.load(path)
    path.write_text('{"format": 1, "config": null}')
    with pytest.raises(ConfigError, match="config: expected a mapping of config fields, got None"):
        config.load(path)
    # an export's own keys beside config are its metadata, not configuration
    path.write_text("format: 1\nstudy: s\nparams: {lr: 0.5}\nconfig: {epochs: 1, lr: 0.002}\n")
    assert config.load(path).lr == 0.002


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    # A valid file whose description was a 9-level, 9-way alias bomb took seconds and GBs to
    # expand into its error message; an alias is now an error where it stands.
    levels = ["&a [" + ", ".join(['"lol"'] * 9) + "]"]
    for name, prev in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"&{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(f"description: [{', '.join(levels)}]\nspace: {{lr: {{low: 0.1, high: 1}}}}\n")
    with pytest.raises(ConfigError) as info:
        files.read_mapping(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line 1: aliases (*name) are allowed only")
    assert len(message) < 300 and "\n" not in message
    with pytest.raises(ConfigError, match=r"--set .*aliases \(\*name\) are allowed only as"):
        config.parse_override("lr=[&x 1, *x]")


def test_a_key_in_the_wrong_case_is_suggested_in_the_right_one() -> None:
    # "unknown key 'LR'" came without a suggestion: no letter of 'LR' matches 'lr'.
    with pytest.raises(ConfigError) as info:
        config.load(overrides=["LR=0.1"])
    assert str(info.value) == (
        "--set: LR: unknown field (did you mean 'lr'?); docs/configuration.md lists the fields"
    )
