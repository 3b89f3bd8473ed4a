"""The TREC-6 question classification data: download, verify, parse, split and encode.

The official CogComp files are small (~330 KB) and fixed, so they are verified by sha256
every time they are opened, and a download is only kept once its checksum matches. The
validation set is carved out of the training file (the test file is read only by an explicit
evaluation), stratified by coarse class so that every class, ABBR's 86 questions included,
keeps its share in both parts whatever the seed.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from hpsearch import files as outfile
from hpsearch import settings
from hpsearch.errors import DataError

if TYPE_CHECKING:
    from hpsearch.config import TrainConfig

logger = logging.getLogger(__name__)

TRAIN_FILE = "train_5500.label"
TEST_FILE = "TREC_10.label"
SHA256: dict[str, str] = {
    TRAIN_FILE: "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
    TEST_FILE: "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e",
}
DEFAULT_URL = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
DOWNLOAD_TIMEOUT_S = 30.0
ENCODING = "iso-8859-1"  # the official files are Latin-1, not UTF-8

PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
CLASSES: tuple[str, ...] = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


# --- locating and fetching the files -----------------------------------------------------------


def base_url() -> str:
    """The download base URL: ``$HPSEARCH_TREC_URL`` or the canonical CogComp address."""
    url = settings.text(settings.TREC_URL) or DEFAULT_URL
    return url if url.endswith("/") else url + "/"


def resolve_data_dir(data_dir: Path | None = None) -> Path:
    """The data directory: the argument, else ``$HPSEARCH_DATA_DIR``, else the user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = settings.text(settings.DATA_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    root = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return root / "hpsearch" / "trec"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path) -> None:
    expected = SHA256[path.name]
    try:
        actual = _sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if actual != expected:
        # Never overwrite a file the user put there: it may be theirs on purpose.
        raise DataError(
            f"{path}: sha256 {actual} does not match the official {expected}; the file is "
            f"corrupt or another version: delete it and run `hpsearch data`"
        )


def _download(name: str, directory: Path) -> None:
    """Fetch one file into ``directory`` atomically; nothing is left behind on failure."""
    url = base_url() + name
    expected = SHA256[name]
    logger.info("downloading %s from %s", name, url)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"{directory}: cannot write the download of {name}: {exc}") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        digest.update(block)
                        out.write(block)
            # URLError/HTTPError/timeouts are OSError; truncated bodies are HTTPException;
            # malformed URLs are ValueError.
            except (OSError, http.client.HTTPException, ValueError) as exc:
                reason: object = exc
                if isinstance(exc, urllib.error.URLError) and not isinstance(
                    exc, urllib.error.HTTPError
                ):
                    reason = exc.reason  # str(URLError) wraps it in "<urlopen error ...>"
                raise DataError(
                    f"cannot download {name} from {url}: {reason}; if you have the TREC "
                    f"files, point --data-dir or {settings.DATA_DIR} at their directory; "
                    f"otherwise check the network, set {settings.TREC_URL} to a mirror, or copy "
                    f"the file into {directory}"
                ) from None
        actual = digest.hexdigest()
        if actual != expected:
            raise DataError(
                f"{url}: downloaded {name} has sha256 {actual}, expected {expected}; "
                f"nothing was saved (set {settings.TREC_URL} to a mirror that serves the "
                "official file)"
            )
        # mkstemp makes the file private (0o600); a data directory shared between users or
        # containers needs what open() would give it.
        os.chmod(tmp, 0o666 & ~outfile.umask())
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_data(data_dir: Path | None = None, *, download: bool = True) -> Path:
    """Make sure both TREC files are in the data directory and verified; return the directory.

    Missing files are downloaded when ``download`` is true. A present file that fails its
    checksum is an error, never silently replaced.
    """
    directory = resolve_data_dir(data_dir)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: the data directory is not a directory")
    if not directory.exists():
        if not download:
            raise DataError(
                f"{directory}: data directory not found; run `hpsearch data` to download "
                f"the TREC files, or set {settings.DATA_DIR} to a directory holding them"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{directory}: cannot create the data directory: {exc}") from None
    for name in SHA256:
        path = directory / name
        if path.exists():
            _verify(path)
        elif download:
            _download(name, directory)
        else:
            raise DataError(
                f"{path}: file not found; run `hpsearch data` to download the TREC files"
            )
    return directory


# --- parsing, splitting, vocabulary ------------------------------------------------------------


def tokenize(text: str, *, lowercase: bool = False) -> list[str]:
    """The words of one text, as training sees them: the files are already tokenised
    (punctuation split off), so whitespace splitting is exact; lowered when configured.
    ``predict`` tokenizes new text with this same function."""
    tokens = text.split()
    return [token.lower() for token in tokens] if lowercase else tokens


def read_labelled(path: Path, *, lowercase: bool = False) -> list[tuple[int, list[str]]]:
    """Parse ``COARSE:fine tokens...`` lines into (class index, tokens); blank lines skipped."""
    examples: list[tuple[int, list[str]]] = []
    try:
        text = path.read_text(encoding=ENCODING)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        coarse, sep, fine = fields[0].partition(":")
        if not sep or not coarse or not fine:
            raise DataError(f"{path}:{lineno}: expected 'COARSE:fine question...', got {line!r}")
        if coarse not in _CLASS_INDEX:
            raise DataError(
                f"{path}:{lineno}: unknown class {coarse!r}; expected one of {', '.join(CLASSES)}"
            )
        tokens = tokenize(fields[1] if len(fields) > 1 else "", lowercase=lowercase)
        if not tokens:
            raise DataError(f"{path}:{lineno}: the question is empty")
        examples.append((_CLASS_INDEX[coarse], tokens))
    return examples


def stratified_split(
    labels: Sequence[int], valid_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, valid) index arrays; each class contributes round(n * fraction) to valid.

    numpy's PCG64 stream is the same on every platform, so a seed names one split everywhere.
    Indices come back in file order: shuffling is the trainer's business.
    """
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, dtype=np.int64)
    train_parts: list[np.ndarray] = []
    valid_parts: list[np.ndarray] = []
    for cls in range(len(CLASSES)):  # fixed order, so the rng stream is consumed identically
        members = rng.permutation(np.flatnonzero(label_array == cls))
        n_valid = int(np.floor(len(members) * valid_fraction + 0.5))
        valid_parts.append(members[:n_valid])
        train_parts.append(members[n_valid:])
    train = np.sort(np.concatenate(train_parts))
    valid = np.sort(np.concatenate(valid_parts))
    return train, valid


@dataclass(frozen=True)
class Vocab:
    """Word indices: ``<pad>`` = 0, ``<unk>`` = 1, then words by descending frequency."""

    itos: list[str]
    stoi: dict[str, int]

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(token, UNK) for token in tokens]


def build_vocab(
    sentences: Sequence[Sequence[str]], *, min_freq: int = 1, max_vocab: int | None = None
) -> Vocab:
    """Vocabulary of words seen ``min_freq`` times; ``max_vocab`` counts the two specials."""
    counts = Counter(token for sentence in sentences for token in sentence)
    # Ties broken by the word itself, so the order never depends on dict insertion order.
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    words = [w for w in words if w not in SPECIALS]
    if max_vocab is not None:
        words = words[: max(max_vocab - len(SPECIALS), 0)]
    itos = [*SPECIALS, *words]
    return Vocab(itos=itos, stoi={word: i for i, word in enumerate(itos)})


@dataclass(frozen=True)
class Split:
    """One encoded split; tensors are shared by every trial in the process: never modify them."""

    tokens: torch.Tensor  # int64 [N, Lmax], right-padded with PAD
    lengths: torch.Tensor  # int64 [N], >= 1
    labels: torch.Tensor  # int64 [N], index into CLASSES

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def encode_split(vocab: Vocab, examples: Sequence[tuple[int, Sequence[str]]]) -> Split:
    """Encode (label, tokens) pairs into padded tensors."""
    lengths = np.array([len(tokens) for _, tokens in examples], dtype=np.int64)
    width = int(lengths.max()) if len(examples) else 1
    tokens = np.full((len(examples), width), PAD, dtype=np.int64)
    for row, (_, words) in enumerate(examples):
        tokens[row, : len(words)] = vocab.encode(words)
    labels = np.array([label for label, _ in examples], dtype=np.int64)
    return Split(
        tokens=torch.from_numpy(tokens),
        lengths=torch.from_numpy(lengths),
        labels=torch.from_numpy(labels),
    )


@dataclass(frozen=True)
class Dataset:
    vocab: Vocab
    train: Split
    valid: Split
    test: Split | None  # only when asked for: the test set is read by explicit evaluation only
    fingerprint: dict[str, str]  # file name -> sha256, for exports


_CacheKey = tuple[str, bool, int, int | None, float, int, bool]
_CACHE: dict[_CacheKey, Dataset] = {}
_CACHE_LOCK = threading.Lock()  # Optuna may run trials in threads; parse and download once


def load_dataset(
    cfg: TrainConfig,
    data_dir: Path | None = None,
    *,
    with_test: bool = False,
    download: bool = True,
) -> Dataset:
    """Verified, split and encoded TREC-6 for ``cfg``'s data fields; cached per process."""
    directory = resolve_data_dir(data_dir)
    key: _CacheKey = (
        str(directory.absolute()),
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
            cached = _CACHE[key] = _build(cfg, directory, with_test=with_test, download=download)
        return cached


def _build(cfg: TrainConfig, directory: Path, *, with_test: bool, download: bool) -> Dataset:
    directory = ensure_data(directory, download=download)
    examples = read_labelled(directory / TRAIN_FILE, lowercase=cfg.lowercase)
    train_idx, valid_idx = stratified_split(
        [label for label, _ in examples], cfg.valid_fraction, cfg.split_seed
    )
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise DataError(
            f"valid_fraction: {cfg.valid_fraction} leaves an empty train or validation split"
        )
    train = [examples[i] for i in train_idx]
    valid = [examples[i] for i in valid_idx]
    vocab = build_vocab(
        [tokens for _, tokens in train], min_freq=cfg.min_freq, max_vocab=cfg.max_vocab
    )
    test = None
    if with_test:
        test = encode_split(vocab, read_labelled(directory / TEST_FILE, lowercase=cfg.lowercase))
    logger.info(
        "TREC: %d train, %d validation%s questions; vocabulary of %d words",
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
        fingerprint=dict(SHA256),
    )
