"""TREC-6 loading: parsing, the stratified split, the vocabulary and verified downloads."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import DataError, UsageError
from hpsearch.training import _data as data
from hpsearch.training._data import (
    ENCODING,
    PAD,
    SHA256,
    TEST_FILE,
    TRAIN_FILE,
    UNK,
    build_vocab,
    encode_split,
    ensure_data,
    resolve_data_dir,
    stratified_split,
)
from hpsearch.training._datasets import TREC_COARSE, load_dataset, tokenize
from hpsearch.training._readers import read_examples

CLASSES = TREC_COARSE


def read_labelled(path: Path, *, lowercase: bool = False) -> list[tuple[int, list[str]]]:
    """A TREC file as ``trec`` reads it: (coarse class index, whitespace tokens)."""
    data = TrainConfig().data
    return [
        (CLASSES.index(e.label.partition(":")[0]), tokenize(e.text, data, lowercase=lowercase))
        for e in read_examples(path, "trec", encoding=ENCODING)
    ]


# --- parsing ---------------------------------------------------------------------------------


def test_read_labelled_parses_labels_tokens_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "q.label"
    path.write_bytes(
        b"NUM:dist How far is it from Denver to Aspen ?\n\n"
        b"HUM:ind Who is Pel\xe9 ?\r\n   \nABBR:exp What does NASA stand for ?\n"
    )
    examples = read_labelled(path)
    assert examples == [
        (CLASSES.index("NUM"), ["How", "far", "is", "it", "from", "Denver", "to", "Aspen", "?"]),
        (CLASSES.index("HUM"), ["Who", "is", "Pelé", "?"]),
        (CLASSES.index("ABBR"), ["What", "does", "NASA", "stand", "for", "?"]),
    ]
    lowered = read_labelled(path, lowercase=True)
    assert lowered[1][1] == ["who", "is", "pelé", "?"]
    assert [e.label for e in read_examples(path, "trec", encoding=ENCODING)][:2] == [
        "NUM:dist",
        "HUM:ind",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("What is this ?", "expected 'COARSE:fine question...'"),
        ("NUM:count", "the question is empty"),
    ],
)
def test_read_labelled_reports_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.label"
    path.write_text(f"NUM:count How many ?\n{line}\n", encoding="latin-1")
    with pytest.raises(DataError, match=message) as info:
        read_labelled(path)
    assert f"{path}:2:" in str(info.value)


def test_real_files_have_the_six_sorted_classes(trec_dir: Path) -> None:
    assert sorted(CLASSES) == list(CLASSES) == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    train = read_labelled(trec_dir / TRAIN_FILE)
    test = read_labelled(trec_dir / TEST_FILE)
    assert (len(train), len(test)) == (5452, 500)
    assert np.bincount([label for label, _ in train]).tolist() == [86, 1162, 1250, 1223, 835, 896]


# --- split -----------------------------------------------------------------------------------


def test_stratified_split_is_disjoint_stratified_and_seeded() -> None:
    labels = [c for c in range(len(CLASSES)) for _ in range(10 * (c + 1))]
    train, valid = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(train, valid)) == 0
    assert sorted([*train, *valid]) == list(range(len(labels)))
    per_class = np.bincount(np.asarray(labels)[valid], minlength=len(CLASSES))
    assert per_class.tolist() == [2, 4, 6, 8, 10, 12]
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], valid)
    other = stratified_split(labels, 0.2, seed=4)
    assert not np.array_equal(other[1], valid)


def test_real_split_is_stable_across_machines(trec_dir: Path) -> None:
    labels = [label for label, _ in read_labelled(trec_dir / TRAIN_FILE)]
    train, valid = stratified_split(labels, 0.2, seed=0)
    assert (len(train), len(valid)) == (4362, 1090)
    assert np.bincount(np.asarray(labels)[valid]).tolist() == [17, 232, 250, 245, 167, 179]
    # Pinned: a change here means a seed no longer names the same validation set.
    assert valid[:8].tolist() == [1, 8, 13, 18, 25, 31, 32, 48]
    assert int(valid.sum()) == 2975195


# --- vocabulary and encoding -------------------------------------------------------------------


def test_build_vocab_orders_by_frequency_then_word() -> None:
    sentences = [["b", "a", "c"], ["a", "c", "d"], ["c"]]
    vocab = build_vocab(sentences)
    assert vocab.itos == ["<pad>", "<unk>", "c", "a", "b", "d"]
    assert vocab.stoi["<pad>"] == PAD and vocab.stoi["<unk>"] == UNK
    assert vocab.encode(["a", "zzz"]) == [3, UNK]
    assert build_vocab(sentences, min_freq=2).itos == ["<pad>", "<unk>", "c", "a"]
    capped = build_vocab(sentences, max_vocab=4)
    assert capped.itos == ["<pad>", "<unk>", "c", "a"] and len(capped) == 4


def test_encode_split_pads_right() -> None:
    vocab = build_vocab([["x", "y", "z"]])
    split = encode_split(vocab, [(2, ["x", "y", "z"]), (0, ["y", "new"])])
    assert split.tokens.dtype == split.lengths.dtype == split.labels.dtype == torch.int64
    assert split.tokens.tolist() == [
        [vocab.stoi["x"], vocab.stoi["y"], vocab.stoi["z"]],
        [vocab.stoi["y"], UNK, PAD],
    ]
    assert split.lengths.tolist() == [3, 2] and split.labels.tolist() == [2, 0]
    assert len(split) == 2


def test_load_dataset_vocab_comes_from_train_split_only(trec_dir: Path) -> None:
    cfg = TrainConfig()
    ds = load_dataset(cfg, trec_dir, download=False)
    examples = read_labelled(trec_dir / TRAIN_FILE)
    train_idx, valid_idx = stratified_split([label for label, _ in examples], 0.2, 0)
    train_words = {w for i in train_idx for w in examples[i][1]}
    assert set(ds.vocab.itos[2:]) == train_words
    # A question whose word occurs only in the validation part: that word encodes as UNK.
    row, word = next(
        (r, w) for r, i in enumerate(valid_idx) for w in examples[i][1] if w not in train_words
    )
    position = examples[valid_idx[row]][1].index(word)
    assert word not in ds.vocab.stoi
    assert int(ds.valid.tokens[row, position]) == UNK
    assert (len(ds.train), len(ds.valid), ds.test) == (4362, 1090, None)
    assert ds.fingerprint == SHA256


def test_load_dataset_tensors_are_consistent(trec_dir: Path) -> None:
    ds = load_dataset(TrainConfig(), trec_dir, with_test=True, download=False)
    assert ds.test is not None and len(ds.test) == 500
    for split in (ds.train, ds.valid, ds.test):
        assert int(split.lengths.min()) >= 1
        steps = torch.arange(split.tokens.shape[1])
        real = steps[None, :] < split.lengths[:, None]
        assert bool((split.tokens[~real] == PAD).all())
        assert bool((split.tokens[real] != PAD).all())
        assert int(split.labels.max()) < len(CLASSES)


def test_load_dataset_is_cached_and_keyed_by_data_fields(trec_dir: Path) -> None:
    cfg = TrainConfig()
    first = load_dataset(cfg, trec_dir, download=False)
    assert load_dataset(cfg.replace(lr=0.1, hidden_dim=7), trec_dir, download=False) is first
    other = load_dataset(cfg.replace(split_seed=1), trec_dir, download=False)
    assert other is not first
    assert not torch.equal(other.valid.labels, first.valid.labels) or not torch.equal(
        other.valid.tokens, first.valid.tokens
    )


def test_load_dataset_lowercase_min_freq_max_vocab(trec_dir: Path) -> None:
    cased = load_dataset(TrainConfig(), trec_dir, download=False)
    lower = load_dataset(TrainConfig(lowercase=True), trec_dir, download=False)
    assert all(w == w.lower() for w in lower.vocab.itos)
    assert "What" in cased.vocab.stoi and "What" not in lower.vocab.stoi
    assert len(lower.vocab) < len(cased.vocab)
    rare = load_dataset(TrainConfig(min_freq=3), trec_dir, download=False)
    assert 2 < len(rare.vocab) < len(cased.vocab)
    capped = load_dataset(TrainConfig(max_vocab=100), trec_dir, download=False)
    assert len(capped.vocab) == 100
    assert capped.vocab.itos == cased.vocab.itos[:100]


# --- locating and downloading -------------------------------------------------------------------


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("HPSEARCH_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "hpsearch" / "trec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir(None) == Path.home() / ".cache" / "hpsearch" / "trec"


def test_download_refused_connection_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{port}")
    target = tmp_path / "trec"
    with pytest.raises(DataError, match=f"cannot download {TRAIN_FILE} from http://127.0.0.1"):
        ensure_data(target)
    assert not target.exists()  # the directory it created is gone too


def test_download_failure_names_the_data_directory_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A user who has the files is told how to point at them, not only how to download."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HPSEARCH_TREC_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DataError) as info:
        ensure_data(tmp_path / "trec")
    assert "--data-dir" in str(info.value) and "HPSEARCH_DATA_DIR" in str(info.value)


def test_corrupt_existing_file_is_not_overwritten(tmp_path: Path, trec_dir: Path) -> None:
    (tmp_path / TRAIN_FILE).write_bytes((trec_dir / TRAIN_FILE).read_bytes()[:-10])
    with pytest.raises(DataError, match="delete it and run `hpsearch data`") as info:
        ensure_data(tmp_path)
    assert str(tmp_path / TRAIN_FILE) in str(info.value)
    assert (tmp_path / TRAIN_FILE).stat().st_size == (trec_dir / TRAIN_FILE).stat().st_size - 10


def test_a_data_file_that_is_no_regular_file_is_refused(tmp_path: Path) -> None:
    # Its checksum was read through it: a FIFO waited for a writer, /dev/zero never ended.
    (tmp_path / TRAIN_FILE).symlink_to("/dev/null")
    with pytest.raises(UsageError) as info:
        ensure_data(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / TRAIN_FILE}: a character device, not a regular file; expected the TREC "
        f"file {TRAIN_FILE}"
    )


def test_missing_dir_or_file_without_download(tmp_path: Path, trec_dir: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: data directory not found"):
        ensure_data(tmp_path / "nope", download=False)
    (tmp_path / TRAIN_FILE).write_bytes((trec_dir / TRAIN_FILE).read_bytes())
    with pytest.raises(DataError, match=f"{tmp_path / TEST_FILE}: file not found"):
        ensure_data(tmp_path, download=False)


def test_default_url_is_canonical(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPSEARCH_TREC_URL", raising=False)
    assert data.base_url() + TRAIN_FILE == (
        "https://cogcomp.seas.upenn.edu/Data/QA/QC/train_5500.label"
    )
