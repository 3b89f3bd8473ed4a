"""The training configuration: every option of the model, the data and the optimiser.

One flat dataclass, every default in one place with the reason beside it. Flat on purpose:
Optuna parameter names are these field names, so a trial's ``params`` (and the exported
best-configuration JSON) map straight back onto a ``TrainConfig`` with no renaming.

The defaults reproduce the best plain-RNN configuration of the seed report (section 1.3:
rnn, embedding 100, hidden 200, adam, lr 8.7e-4, batch 32, dropout 0.0149, L2 alpha 6.3e-4,
clip 3.41), so ``hpsearch train`` with no arguments is the report's baseline.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from hpsearch import files
from hpsearch.errors import ConfigError, did_you_mean

Cell = Literal["rnn", "gru", "lstm"]
Pooling = Literal["last", "mean", "max", "attention"]
Optimizer = Literal["sgd", "adam", "adamw", "adadelta", "adagrad", "rmsprop"]
Regularizer = Literal["none", "l1", "l2"]
OovInit = Literal["zero", "random"]
Device = Literal["auto", "cpu", "cuda", "mps"]


@dataclass(frozen=True)
class TrainConfig:
    # --- data -----------------------------------------------------------------------------
    lowercase: bool = False  # TREC is cased and word2vec is cased; GloVe lookup lowers anyway
    min_freq: int = 1  # TREC is small (5.5k questions): dropping rare words loses real signal
    max_vocab: int | None = None  # no cap: the training vocabulary is only ~8k words
    valid_fraction: float = 0.2  # the report's 80/20 train/validation split
    split_seed: int = 0  # fixed per study, so every trial is scored on the same validation set

    # --- input embeddings ----------------------------------------------------------------
    embedding_dim: int = 100  # the report's size for random init; must equal pretrained dim
    # None: random init. Else "glove-6b-50d" (offline package), a gensim-data name such as
    # "word2vec-google-news-300", or a path to a word2vec (.bin/.txt) or GloVe (.txt) file.
    embeddings: str | None = None
    freeze_embeddings: bool = False  # fine-tuning helped in the report; freezing is faster
    oov_init: OovInit = "zero"  # the report zeroed words missing from word2vec

    # --- encoder -------------------------------------------------------------------------
    cell: Cell = "rnn"  # the report's baseline is the plain Elman RNN
    hidden_dim: int = 200  # best of {50, 100, 200, 400} in the report's grid (section 1.2)
    num_layers: int = 1
    bidirectional: bool = False
    rnn_dropout: float = 0.0  # between stacked layers only; has no effect with 1 layer
    packed: bool = True  # packing skips pad steps, so the last hidden state is the real one

    # --- sentence embedding and head --------------------------------------------------------
    pooling: Pooling = "last"  # the report's baseline: the final hidden state
    attention_heads: int = 1  # must divide the encoder output size (hidden x directions)
    dropout: float = 0.0149  # on word embeddings and sentence embedding (report, 1.3)
    head_layers: int = 0  # 0: a single linear layer, as in the report's sections 1-4
    head_hidden_dim: int = 128  # width of each FC layer when head_layers > 0 (section 5)
    head_batchnorm: bool = False  # batch norm in the FC head (report 1.3.5); never in the RNN
    head_dropout: float = 0.0  # dropout between FC layers of the head

    # --- optimisation -----------------------------------------------------------------------
    optimizer: Optimizer = "adam"  # Adam dominated the report's grid (Figure 1)
    lr: float = 8.7e-4  # report 1.3 best (8.7266e-4)
    momentum: float = 0.0  # sgd and rmsprop only; 0 keeps the report's plain sgd
    weight_decay: float = 0.0  # the optimiser's own decay (decoupled for adamw)
    batch_size: int = 32  # smaller batches won in the report's grid
    regularizer: Regularizer = "l2"  # L2 beat L1 in the report's sweeps
    alpha: float = 6.3e-4  # penalty weight: alpha * sum(w^2) (L2) or alpha * sum|w| (L1)
    grad_clip: float | None = 3.41  # max gradient norm (report 1.3 best); None disables
    epochs: int = 40  # upper bound; pruners (not patience) stop hopeless trials earlier
    seed: int = 0  # initialisation, batch order and dropout

    # --- runtime ---------------------------------------------------------------------------
    device: Device = "auto"  # cuda, then mps, then cpu
    threads: int | None = None  # torch intra-op threads; None: torch's default

    def __post_init__(self) -> None:
        _check_values(self, source="config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return from_mapping({**self.to_dict(), **changes}, source="config")


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS: dict[str, Any] = typing.get_type_hints(TrainConfig)


def field_choices(name: str) -> tuple[str, ...] | None:
    """The allowed strings of a Literal field, or None for other fields."""
    for arg in _flatten(_HINTS[name]):
        if get_origin(arg) is Literal:
            return tuple(get_args(arg))
    return None


def _flatten(hint: Any) -> list[Any]:
    if get_origin(hint) in (typing.Union, types.UnionType):
        return [a for arg in get_args(hint) for a in _flatten(arg)]
    return [hint]


def coerce(name: str, value: Any, *, source: str = "config") -> Any:
    """Check ``value`` against the type of field ``name``; return it in canonical form."""
    if name not in FIELDS:
        raise ConfigError(f"{source}: unknown key {name!r}{did_you_mean(name, FIELDS)}")
    allowed = _flatten(_HINTS[name])
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {name}: null is not allowed; give a value")
    choices = field_choices(name)
    if choices is not None:
        if isinstance(value, str) and value in choices:
            return value
        raise ConfigError(
            f"{source}: {name}: {value!r} is not one of {', '.join(choices)}"
            f"{did_you_mean(str(value), choices)}"
        )
    if bool in allowed:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {name}: expected true or false, got {value!r}")
    if int in allowed:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: {name}: expected an integer, got {value!r}")
    if float in allowed:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {name}: expected a number, got {value!r}")
    if str in allowed:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(f"{source}: {name}: expected a non-empty string, got {value!r}")
    raise AssertionError(f"unhandled type for {name}: {_HINTS[name]}")  # pragma: no cover


# Integer fields' ranges. The upper bounds lie far past any useful value; they are there so
# that a typo (hidden_dim: 1e30, threads: 100000) is an error naming the field at load time
# instead of a failed allocation, an overflow or a crash (OpenMP segfaults) epochs later.
# Seeds: numpy's generator (split_seed) takes no negative seed, torch none of 2**63 or more.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "min_freq": (1, 10**9),
    "max_vocab": (3, 10**9),  # room for <pad>, <unk> and one word
    "split_seed": (0, 2**63 - 1),
    "embedding_dim": (1, 65536),
    "hidden_dim": (1, 65536),
    "num_layers": (1, 64),
    "attention_heads": (1, 65536),
    "head_layers": (0, 64),
    "head_hidden_dim": (1, 65536),
    "batch_size": (1, 2**20),
    "epochs": (1, 10**6),
    "seed": (0, 2**63 - 1),
    "threads": (1, 1024),
}
_NULLABLE = frozenset({"max_vocab", "threads"})


# The fields _check_values checks together (attention heads must divide the encoder's output):
# a study that searches any of them has every combination its trials can draw checked when
# the file is loaded (``hpsearch.study``), not one failed trial at a time.
CROSS_FIELDS = ("pooling", "hidden_dim", "bidirectional", "attention_heads")


def _check_values(cfg: TrainConfig, *, source: str) -> None:
    """Range and cross-field checks; each message names the field, the value and the rule."""

    def fail(name: str, rule: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {name}: {rule}, got {getattr(cfg, name)!r}")

    for name, (low, high) in _INT_RANGES.items():
        value = getattr(cfg, name)
        if value is not None and not low <= value <= high:
            shown = "2**63 - 1" if high == 2**63 - 1 else str(high)
            fail(name, f"must be in [{low}, {shown}]" + (" or null" if name in _NULLABLE else ""))
    if not 0.0 < cfg.valid_fraction < 1.0:
        fail("valid_fraction", "must be between 0 and 1 (exclusive)")
    for name in ("dropout", "rnn_dropout", "head_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            fail(name, "must be in [0, 1)")
    for name in ("lr",):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            fail(name, "must be a finite number > 0")
    for name in ("momentum", "weight_decay", "alpha"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            fail(name, "must be a finite number >= 0")
    if cfg.momentum >= 1.0:
        fail("momentum", "must be < 1")
    if cfg.grad_clip is not None and not (math.isfinite(cfg.grad_clip) and cfg.grad_clip > 0):
        fail("grad_clip", "must be > 0 (or null to disable clipping)")
    if cfg.pooling == "attention":
        width = cfg.hidden_dim * (2 if cfg.bidirectional else 1)
        if width % cfg.attention_heads:
            raise ConfigError(
                f"{source}: attention_heads: {cfg.attention_heads} must divide the encoder "
                f"output size {width} (hidden_dim x directions); try 1"
            )


def from_mapping(data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
    """Build a config from a mapping of field names; unknown keys and bad types are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config fields, got {data!r}")
    values = {str(k): coerce(str(k), v, source=source) for k, v in data.items()}
    cfg = TrainConfig.__new__(TrainConfig)
    defaults = {name: f.default for name, f in FIELDS.items()}
    for name, value in {**defaults, **values}.items():
        object.__setattr__(cfg, name, value)
    _check_values(cfg, source=source)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` from ``--set``; the value is read as YAML (``1e-3``, ``true``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set lr=0.001")
    if not raw.strip():
        return key, None
    try:
        return key, files.yaml_load(raw)
    except yaml.YAMLError as exc:
        problem = files.yaml_problem(exc)
        raise ConfigError(
            f"--set {text!r}: the value is not valid YAML ({problem}); "
            f"quote a string: --set '{key}=\"...\"'"
        ) from None


def load(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    *,
    reader: Callable[[Path], dict[str, Any]] = files.read_mapping,
) -> TrainConfig:
    """Defaults, then a YAML/JSON file, then ``--set key=value`` overrides.

    The file may be a flat mapping of fields or an ``hpsearch export`` JSON, whose training
    configuration sits under ``config`` (exported best parameters train as they are).
    ``reader`` reads the file (the training layer's also reads checkpoints).
    """
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        data = reader(path)
        source = str(path)
        if not data:  # an empty or truncated file would silently train the defaults
            raise ConfigError(
                f"{path}: the file is empty; expected config fields (e.g. lr: 0.001), an "
                "hpsearch export or a train --save checkpoint"
            )
        if "config" in data:  # an export: its metadata beside `config` is not configuration
            if not isinstance(data["config"], dict):
                raise ConfigError(
                    f"{path}: config: expected a mapping of config fields, got {data['config']!r}"
                )
            for key in data:
                if key in FIELDS:
                    raise ConfigError(
                        f"{path}: {key}: a config field beside config:, where it would be "
                        f"ignored; move it under config: (or use --set {key}=...)"
                    )
            data = data["config"]
            source = f"{path}: config"
        values.update(data)
    for text in overrides:
        key, value = parse_override(text)
        coerce(key, value, source="--set")
        values[key] = value
    return from_mapping(values, source=source)
