"""The training configuration: every option of the model, the data and the optimiser.

One flat (pydantic) dataclass, every default in one place with its bounds and the reason
beside it; input becomes one through ``from_mapping`` or ``load``, whose errors are one line.
Flat on purpose: Optuna parameter names are these field names, so a trial's ``params`` (and
the exported best-configuration JSON) map straight back onto a ``TrainConfig`` with no
renaming.

The defaults reproduce the best plain-RNN configuration of the seed report (section 1.3:
rnn, embedding 100, hidden 200, adam, lr 8.7e-4, batch 32, dropout 0.0149, L2 alpha 6.3e-4,
clip 3.41), so ``hpsearch train`` with no arguments is the report's baseline.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic.types import AllowInfNan
from pydantic_core import PydanticCustomError

from hpsearch import files
from hpsearch.errors import (
    ConfigError,
    FieldError,
    bare_type,
    field_error,
    literal_choices,
    shown,
    unknown_key,
)

Cell = Literal["rnn", "gru", "lstm"]
Pooling = Literal["last", "mean", "max", "attention", "max_mean"]
LrSchedule = Literal["constant", "cosine"]
Optimizer = Literal["sgd", "adam", "adamw", "adadelta", "adagrad", "rmsprop"]
Regularizer = Literal["none", "l1", "l2"]
OovInit = Literal["zero", "random"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Builtin = Literal["trec", "trec-fine"]
DataFormat = Literal["csv", "tsv", "jsonl", "fasttext"]
Tokenizer = Literal["whitespace", "word"]
Metric = Literal["accuracy", "macro_f1"]
METRIC_NAMES = {"accuracy": "validation accuracy", "macro_f1": "validation macro-F1"}
# A file's format from its extension; ``format:`` names it for any other name.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".ft": "fasttext",
    ".fasttext": "fasttext",
    ".txt": "fasttext",
}
DATA_FILES = ("train", "valid", "test")


def _integral(value: Any) -> Any:
    """YAML writes a thousand as ``1e3``, a float: a whole float is the integer it names."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Strict, so that "3" is no number and true no integer; an integer is still a float.
Int = Annotated[int, BeforeValidator(_integral), Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]
# A float rule with one bound would let inf through: these are finite.
Positive = Annotated[Float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[Float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[Float, Field(ge=0, lt=1)]  # dropouts and momentum
# Integer bounds lie far past any useful value; they are there so that a typo (hidden_dim:
# 1e30, threads: 100000) is an error naming the field at load time instead of a failed
# allocation, an overflow or a crash (OpenMP segfaults) epochs later. Seeds: numpy's generator
# (split_seed) takes no negative seed, torch none of 2**63 or more.
Size = Annotated[Int, Field(ge=1, le=65536)]
Seed = Annotated[Int, Field(ge=0, le=2**63 - 1)]
Layers = Annotated[Int, Field(ge=0, le=64)]


def _known_codec(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise PydanticCustomError("encoding", "unknown encoding") from None
    return value


def _name_or_files(value: Any) -> Any:
    """``data: trec-fine`` is short for ``data: {name: trec-fine}``; a section with ``train:``
    names no built-in dataset."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping) and value.get("train") is not None and "name" not in value:
        return {**value, "name": None}
    return value


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DataConfig:
    """Which examples a model learns from and how their texts become tokens. Checked here for
    shape (which keys, which formats); the files themselves are read by the training layer."""

    name: Builtin | None = "trec"  # a built-in dataset; None when train: names your files
    train: Text | None = None  # paths: relative ones resolved where the file that names them is
    valid: Text | None = None  # None: a stratified valid_fraction of train (split_seed)
    test: Text | None = None  # None: evaluate scores validation only
    format: DataFormat | None = None  # None: from each file's extension
    text_field: Text = "text"  # CSV/TSV column or JSON Lines key
    label_field: Text = "label"
    encoding: Annotated[
        Text,
        AfterValidator(_known_codec),
        Field(description="a Python codec name such as utf-8, latin-1 or cp1252"),
    ] = "utf-8"
    # whitespace: the report's (TREC's files are already tokenized); word: words and single
    # punctuation marks, for raw text
    tokenizer: Tokenizer = "whitespace"
    max_length: Annotated[Int | None, Field(ge=1, le=10**6)] = None  # tokens kept per text

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.name is not None and self.train is not None:
            raise _data_error("train", "give name: (a built-in dataset) or train:, not both")
        if self.name is None and self.train is None:
            raise _data_error("train", "missing; give train: (a file) or name: trec")
        if self.train is None:
            for key in ("valid", "test", "format"):
                if getattr(self, key) is not None:
                    raise _data_error(key, f"only with train: (the {self.name} files are fixed)")
        for key, path in self.files().items():
            if self.format is None and Path(path).suffix.lower() not in FORMATS:
                raise _data_error(
                    key,
                    f"cannot tell the format of {path!r} from its extension; set format: csv, "
                    "tsv, jsonl or fasttext",
                )
        return self

    def files(self) -> dict[str, str]:
        """Your files by role (train, valid, test); empty for a built-in dataset."""
        return {k: getattr(self, k) for k in DATA_FILES if getattr(self, k) is not None}

    def format_of(self, path: str) -> str:
        return self.format or FORMATS[Path(path).suffix.lower()]


def _data_error(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("data", "{problem}", {"field": field, "problem": message})


def resolve_data_paths(value: Any, base: Path) -> Any:
    """A ``data`` value as written, its relative file paths made relative to ``base`` (the
    directory of the file that names them), so that they mean the same file from anywhere."""
    if not isinstance(value, Mapping):
        return value
    out = dict(value)
    for key in DATA_FILES:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = os.path.normpath((base / Path(out[key]).expanduser()).absolute())
    return out


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainConfig:
    # --- data -----------------------------------------------------------------------------
    data: Annotated[DataConfig, BeforeValidator(_name_or_files)] = Field(
        default_factory=DataConfig, examples=["{train: train.csv}"]
    )
    lowercase: Bool = False  # TREC is cased and word2vec is cased; GloVe lookup lowers anyway
    # TREC is small (5.5k questions): dropping rare words loses real signal
    min_freq: Annotated[Int, Field(ge=1, le=10**9)] = 1
    # no cap: the training vocabulary is only ~8k words; at least <pad>, <unk> and one word
    max_vocab: Annotated[Int | None, Field(ge=3, le=10**9)] = None
    valid_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2  # the report's 80/20 split
    split_seed: Seed = 0  # fixed per study, so every trial is scored on the same validation set
    # The validation score that picks the best epoch (and that a study maximises): macro-F1
    # weighs every class alike, for data where a few classes hold most examples.
    metric: Metric = "accuracy"

    # --- input embeddings ----------------------------------------------------------------
    embedding_dim: Size = 100  # the report's size for random init; must equal pretrained dim
    # None: random init. Else "glove-6b-50d" (offline package), a gensim-data name such as
    # "word2vec-google-news-300", or a path to a word2vec (.bin/.txt) or GloVe (.txt) file.
    embeddings: Text | None = None
    freeze_embeddings: Bool = False  # fine-tuning helped in the report; freezing is faster
    oov_init: OovInit = "zero"  # the report zeroed words missing from word2vec
    # Chance that a training token is read as <unk>: teaches the model the unknown word it
    # meets on new text; 0 keeps every word (the report).
    word_dropout: Fraction = 0.0

    # --- encoder -------------------------------------------------------------------------
    cell: Cell = "rnn"  # the report's baseline is the plain Elman RNN
    hidden_dim: Size = 200  # best of {50, 100, 200, 400} in the report's grid (section 1.2)
    num_layers: Annotated[Int, Field(ge=1, le=64)] = 1
    bidirectional: Bool = False
    rnn_dropout: Fraction = 0.0  # between stacked layers only; has no effect with 1 layer
    packed: Bool = True  # packing skips pad steps, so the last hidden state is the real one

    # --- sentence embedding and head --------------------------------------------------------
    # the report's baseline: the final hidden state; max_mean concatenates max and mean
    pooling: Pooling = "last"
    attention_heads: Size = 1  # must divide the encoder output size (hidden x directions)
    dropout: Fraction = 0.0149  # on word embeddings and sentence embedding (report, 1.3)
    head_layers: Layers = 0  # 0: a single linear layer, as in the report's sections 1-4
    head_hidden_dim: Size = 128  # width of each FC layer when head_layers > 0 (section 5)
    head_batchnorm: Bool = False  # batch norm in the FC head (report 1.3.5); never in the RNN
    head_dropout: Fraction = 0.0  # dropout between FC layers of the head

    # --- optimisation -----------------------------------------------------------------------
    optimizer: Optimizer = "adam"  # Adam dominated the report's grid (Figure 1)
    lr: Positive = 8.7e-4  # report 1.3 best (8.7266e-4)
    momentum: Fraction = 0.0  # sgd and rmsprop only; 0 keeps the report's plain sgd
    weight_decay: NonNegative = 0.0  # the optimiser's own decay (decoupled for adamw)
    batch_size: Annotated[Int, Field(ge=1, le=2**20)] = 32  # smaller batches won the grid
    regularizer: Regularizer = "l2"  # L2 beat L1 in the report's sweeps
    alpha: NonNegative = 6.3e-4  # penalty weight: alpha * sum(w^2) (L2) or alpha * sum|w| (L1)
    # max gradient norm (report 1.3 best); None disables clipping
    grad_clip: Annotated[Float | None, Field(gt=0, allow_inf_nan=False)] = 3.41
    # cosine: lr decays per step from lr to 0 over all the epochs; constant: the report's
    lr_schedule: LrSchedule = "constant"
    # Share of the target mass spread over the other classes; 0 is plain cross-entropy (the
    # report's), a little softens over-confident fits on small data.
    label_smoothing: Fraction = 0.0
    # upper bound; pruners (not patience) stop hopeless trials earlier
    epochs: Annotated[Int, Field(ge=1, le=10**6)] = 40
    seed: Seed = 0  # initialisation, batch order and dropout

    # --- runtime ---------------------------------------------------------------------------
    device: Device = "auto"  # cuda, then mps, then cpu
    threads: Annotated[Int | None, Field(ge=1, le=1024)] = None  # None: torch's default

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> TrainConfig:
        width = self.hidden_dim * (2 if self.bidirectional else 1)
        if self.pooling == "attention" and width % self.attention_heads:
            raise PydanticCustomError(
                "heads",
                "{heads} must divide the encoder output size {width} (hidden_dim x "
                "directions); try 1",
                {"field": "attention_heads", "heads": self.attention_heads, "width": width},
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return from_mapping({**self.to_dict(), **changes}, source="config")


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The fields the cross-field rule reads (attention heads must divide the encoder's output):
# a study that searches any of them has every combination its trials can draw checked when
# the file is loaded (``hpsearch.study``), not one failed trial at a time.
CROSS_FIELDS = ("pooling", "hidden_dim", "bidirectional", "attention_heads")
_RANGE = (
    annotated_types.Ge,
    annotated_types.Gt,
    annotated_types.Le,
    annotated_types.Lt,
    AllowInfNan,
)
_CONFIG = TypeAdapter(TrainConfig)
# Keys an export writes beside ``config`` that share a field's name: the data files'
# fingerprint and the metric's description.
_EXPORT_METADATA = frozenset({"data", "metric"})
_DECLARED: dict[str, FieldInfo] = TrainConfig.__pydantic_fields__  # type: ignore[attr-defined]


@functools.cache
def _type_of(name: str) -> TypeAdapter[Any]:
    """Field ``name``'s type with its rules but not its range (``ge``, ``lt``, finite): a study
    checks a value's type where it reads it and the range where the value meets a whole
    configuration (a log range's ``low: 0`` says more than "lr must be > 0")."""
    info = _DECLARED[name]
    kept = [m for m in info.metadata if not isinstance(m, _RANGE)]
    hint: Any = Annotated[(info.annotation, *kept)] if kept else info.annotation
    return TypeAdapter(hint)


def field_kind(name: str) -> str:
    """``int``, ``float``, ``bool``, ``str`` or ``choice`` (a Literal field)."""
    if field_choices(name) is not None:
        return "choice"
    return str(bare_type(_DECLARED[name].annotation).__name__)


def field_choices(name: str) -> tuple[str, ...] | None:
    """The allowed strings of a Literal field, or None for other fields."""
    return literal_choices(_DECLARED[name]) or None


def coerce(name: str, value: Any, *, source: str = "config") -> Any:
    """Check ``value`` against the type of field ``name`` (not its range); return it in
    canonical form (a whole float as an int for an integer field, an int as a float)."""
    if name not in _DECLARED:
        raise FieldError(source, name, unknown_key(name, list(_DECLARED)))
    try:
        return _type_of(name).validate_python(value)
    except ValidationError as exc:
        raise field_error(exc, source, TrainConfig, loc=(name,)) from None


def from_mapping(data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
    """Build a config from a mapping of field names; unknown keys and bad values are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config fields, got {shown(data)}")
    try:
        return _CONFIG.validate_python(dict(data))
    except ValidationError as exc:
        raise field_error(exc, source, TrainConfig) from None


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
                if key in FIELDS and key not in _EXPORT_METADATA:
                    raise ConfigError(
                        f"{path}: {key}: a config field beside config:, where it would be "
                        f"ignored; move it under config: (or use --set {key}=...)"
                    )
            data = data["config"]
            source = f"{path}: config"
        values.update(data)
        if "data" in values:
            values["data"] = resolve_data_paths(values["data"], path.parent)
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("data."):  # one key of the data section: --set data.train=x.csv
            section = _name_or_files(values.get("data", {}))
            value = resolve_data_paths({**section, key[5:]: value}, Path())
            key = "data"
        coerce(key, value, source="--set")
        values[key] = value
    return from_mapping(values, source=source)
