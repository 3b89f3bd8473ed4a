"""Datasets: the labelled texts a configuration's ``data`` section names (a built-in TREC
variant or your files), read, checked, split, tokenized and encoded; cached per process.

The class names are the training file's labels in sorted order, so a label's index (the
model's output) is the same for every file and every run; TREC's six coarse classes sort to
the order hpsearch has always used.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpsearch import files
from hpsearch.errors import DataError, shown
from hpsearch.training._data import (
    ENCODING,
    SHA256,
    TEST_FILE,
    TRAIN_FILE,
    Split,
    Vocab,
    build_vocab,
    encode_split,
    ensure_data,
    resolve_data_dir,
    stratified_split,
)
from hpsearch.training._readers import Example, Fields, read_examples

if TYPE_CHECKING:
    from hpsearch.config import DataConfig, TrainConfig

logger = logging.getLogger(__name__)

# The labels of checkpoints written before labels were stored: all were TREC's coarse classes.
TREC_COARSE: tuple[str, ...] = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
_WORD = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation mark


@dataclass(frozen=True)
class Texts:
    """A dataset's examples as read, before tokenization; valid and test may be absent."""

    labels: tuple[str, ...]
    train: list[Example]
    valid: list[Example] | None
    test: list[Example] | None
    fingerprint: dict[str, str]  # file -> sha256
    source: str  # the training file, for messages


@dataclass(frozen=True)
class Dataset:
    vocab: Vocab
    train: Split
    valid: Split
    test: Split | None  # only when asked for and the dataset has one
    fingerprint: dict[str, str]  # file -> sha256, for exports
    labels: tuple[str, ...] = TREC_COARSE  # class names; a Split's labels index into these


def tokenize(text: str, data: DataConfig, *, lowercase: bool = False) -> list[str]:
    """The tokens of ``text`` as ``data`` (tokenizer, max_length) and ``lowercase`` say."""
    tokens = text.split() if data.tokenizer == "whitespace" else _WORD.findall(text)
    if lowercase:
        tokens = [token.lower() for token in tokens]
    return tokens[: data.max_length] if data.max_length is not None else tokens


def read_texts(
    data: DataConfig, data_dir: Path | None = None, *, with_test: bool, download: bool = True
) -> Texts:
    """Read and check the files ``data`` names; DataError (one line) on any problem."""
    if data.name is not None:
        return _builtin(data.name, data_dir, with_test=with_test, download=download)
    assert data.train is not None, "DataConfig requires train: or name:"
    fields = Fields(data.text_field, data.label_field)

    def read(path: str) -> list[Example]:
        return read_examples(
            Path(path), data.format_of(path), encoding=data.encoding, fields=fields
        )

    train = read(data.train)
    valid = (data.valid, read(data.valid)) if data.valid is not None else None
    test = (data.test, read(data.test)) if with_test and data.test is not None else None
    used = [data.train, *(part[0] for part in (valid, test) if part is not None)]
    fingerprint = {p: str(files.fingerprint(Path(p))["sha256"]) for p in used}
    return _checked(data.train, train, valid, test, fingerprint)


def _builtin(name: str, data_dir: Path | None, *, with_test: bool, download: bool) -> Texts:
    directory = ensure_data(data_dir, download=download)
    train = read_examples(directory / TRAIN_FILE, "trec", encoding=ENCODING)
    test = read_examples(directory / TEST_FILE, "trec", encoding=ENCODING) if with_test else None
    if name == "trec":  # the coarse class: the tag's part before ':'
        train = [dataclasses.replace(e, label=e.label.partition(":")[0]) for e in train]
        if test is not None:
            test = [dataclasses.replace(e, label=e.label.partition(":")[0]) for e in test]
    tested = (str(directory / TEST_FILE), test) if test is not None else None
    return _checked(str(directory / TRAIN_FILE), train, None, tested, dict(SHA256))


def _checked(
    train_path: str,
    train: list[Example],
    valid: tuple[str, list[Example]] | None,
    test: tuple[str, list[Example]] | None,
    fingerprint: dict[str, str],
) -> Texts:
    """Texts whose labels make a classification task: two classes at least in the training
    file, and no label in validation or test that training never shows."""
    labels = tuple(sorted({e.label for e in train}))
    if len(labels) < 2:
        raise DataError(
            f"{train_path}: every example has the label {labels[0]!r}; a classifier needs at "
            "least two classes"
        )
    known = set(labels)
    for path, examples in (part for part in (valid, test) if part is not None):
        for example in examples:
            if example.label not in known:
                raise DataError(
                    f"{path}:{example.line}: label {example.label!r} is not in the training "
                    f"file {train_path} (its labels: {shown(list(labels))})"
                )
    return Texts(
        labels,
        train,
        valid[1] if valid else None,
        test[1] if test else None,
        fingerprint,
        train_path,
    )


def split_warnings(
    labels: Sequence[str], indices: Sequence[int], valid_fraction: float
) -> list[str]:
    """One line per class that the stratified split leaves out of validation or training."""
    out = []
    for index, count in sorted(Counter(indices).items()):
        n_valid = int(np.floor(count * valid_fraction + 0.5))
        if n_valid == 0 or n_valid == count:
            part = "validation" if n_valid == 0 else "training"
            out.append(
                f"class {labels[index]!r} has {count} example{'s' * (count != 1)}: "
                f"valid_fraction {valid_fraction} leaves it none in {part}"
            )
    return out


def check_data(
    data: DataConfig, data_dir: Path | None = None, *, valid_fractions: Sequence[float] = ()
) -> Texts:
    """Read and check every file a study's trials will read, the test file included, and
    warn about the classes a stratified split with any of ``valid_fractions`` leaves empty:
    run before a study is created, so that a bad file is one error with nothing written, and
    the warning is said once for the whole search (its workers load the data silently)."""
    texts = read_texts(data, data_dir, with_test=True)
    if texts.valid is None:
        index = {name: i for i, name in enumerate(texts.labels)}
        labels = [index[e.label] for e in texts.train]
        for fraction in valid_fractions:
            _warn_small_classes(texts, labels, fraction)
    return texts


def _warn_small_classes(texts: Texts, indices: Sequence[int], valid_fraction: float) -> None:
    for line in split_warnings(texts.labels, indices, valid_fraction):
        logger.warning("%s: %s", texts.source, line)


_CacheKey = tuple[str, "DataConfig", bool, int, int | None, float, int, bool]
_CACHE: dict[_CacheKey, Dataset] = {}
_CACHE_LOCK = threading.Lock()  # Optuna may run trials in threads; parse and download once


def load_dataset(
    cfg: TrainConfig,
    data_dir: Path | None = None,
    *,
    with_test: bool = False,
    download: bool = True,
    warn: bool = True,
) -> Dataset:
    """``cfg``'s data read, split, tokenized and encoded; cached per process. ``warn``: say
    which classes the split leaves empty (a search's workers do not: its preflight has)."""
    directory = resolve_data_dir(data_dir)
    key: _CacheKey = (
        str(directory.absolute()),
        cfg.data,
        cfg.lowercase,
        cfg.min_freq,
        cfg.max_vocab,
        cfg.valid_fraction,
        cfg.split_seed,
        with_test,
    )
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _CACHE[key] = _build(
                cfg, directory, with_test=with_test, download=download, warn=warn
            )
        return cached


def _build(
    cfg: TrainConfig, directory: Path, *, with_test: bool, download: bool, warn: bool
) -> Dataset:
    texts = read_texts(cfg.data, directory, with_test=with_test, download=download)
    index = {name: i for i, name in enumerate(texts.labels)}

    def encoded(examples: Sequence[Example]) -> list[tuple[int, list[str]]]:
        return [
            (index[e.label], tokenize(e.text, cfg.data, lowercase=cfg.lowercase)) for e in examples
        ]

    train = encoded(texts.train)
    if texts.valid is not None:
        valid = encoded(texts.valid)
    else:
        labels = [label for label, _ in train]
        if warn:
            _warn_small_classes(texts, labels, cfg.valid_fraction)
        train_idx, valid_idx = stratified_split(
            labels, cfg.valid_fraction, cfg.split_seed, classes=len(texts.labels)
        )
        if len(train_idx) == 0 or len(valid_idx) == 0:
            raise DataError(
                f"valid_fraction: {cfg.valid_fraction} leaves an empty train or validation split"
            )
        train, valid = [train[i] for i in train_idx], [train[i] for i in valid_idx]
    vocab = build_vocab(
        [tokens for _, tokens in train], min_freq=cfg.min_freq, max_vocab=cfg.max_vocab
    )
    test = encode_split(vocab, encoded(texts.test)) if texts.test is not None else None
    logger.info(
        "%s: %d classes, %d train, %d validation%s texts; vocabulary of %d words",
        texts.source,
        len(texts.labels),
        len(train),
        len(valid),
        f", {len(test)} test" if test is not None else "",
        len(vocab),
    )
    return Dataset(
        vocab=vocab,
        train=encode_split(vocab, train),
        valid=encode_split(vocab, valid),
        test=test,
        fingerprint=texts.fingerprint,
        labels=texts.labels,
    )
