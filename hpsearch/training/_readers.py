"""Readers: one small function per file format, each turning a file into labelled texts.

Every problem is a ``DataError`` of one line naming the file, the line and what is wrong
(bytes the encoding cannot decode, a missing column, an empty text or label), raised while
reading, so that a bad file stops a command before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import DataError, shown


@dataclass(frozen=True)
class Example:
    label: str
    text: str
    line: int  # 1-based, where the example starts in its file


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    label: str = "label"


def read_text(path: Path, encoding: str) -> str:
    """The whole file decoded; undecodable bytes are an error naming their line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        # A byte-order mark (spreadsheets write one) is no part of the first column's name.
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: bytes {raw[exc.start : exc.end]!r} are not valid {encoding}; "
            "set data.encoding to the file's encoding (e.g. latin-1, cp1252)"
        ) from None


def _example(path: Path, line: int, label: object, text: object) -> Example:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}:{line}: the text is empty")
    if label is None or isinstance(label, dict | list) or not str(label).strip():
        raise DataError(f"{path}:{line}: the label is {shown(label) if label else 'empty'}")
    return Example(label=str(label).strip(), text=text, line=line)


def _delimited(path: Path, text: str, fields: Fields, delimiter: str) -> Iterator[Example]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    for name in (fields.text, fields.label):
        if name not in header:
            key = "text_field" if name == fields.text else "label_field"
            raise DataError(
                f"{path}:1: no column {name!r} in the header ({', '.join(map(repr, header))}); "
                f"set data.{key} to the column's name"
            )
    text_at, label_at = header.index(fields.text), header.index(fields.label)
    start = reader.line_num + 1
    try:
        for row in reader:
            if row:  # a blank line
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{start}: {len(row)} columns, the header has {len(header)}"
                    )
                yield _example(path, start, row[label_at], row[text_at])
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: {exc}") from None


def _jsonl(path: Path, text: str, fields: Fields) -> Iterator[Example]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {shown(record)}")
        for name, key in ((fields.text, "text_field"), (fields.label, "label_field")):
            if name not in record:
                raise DataError(
                    f"{path}:{line}: no field {name!r} (fields: {', '.join(map(repr, record))}); "
                    f"set data.{key}"
                )
        yield _example(path, line, record[fields.label], record[fields.text])


LABEL_PREFIX = "__label__"


def _fasttext(path: Path, text: str, _fields: Fields) -> Iterator[Example]:
    for line, raw in enumerate(text.splitlines(), start=1):
        words = raw.split()
        if not words:
            continue
        labels = [w for w in words if w.startswith(LABEL_PREFIX)]
        if not words[0].startswith(LABEL_PREFIX):
            raise DataError(f"{path}:{line}: expected '__label__NAME text...', got {shown(raw)}")
        if len(labels) > 1:
            raise DataError(
                f"{path}:{line}: {len(labels)} labels; hpsearch learns one label per text"
            )
        yield _example(path, line, words[0].removeprefix(LABEL_PREFIX), " ".join(words[1:]))


def _trec(path: Path, text: str, _fields: Fields) -> Iterator[Example]:
    """``COARSE:fine tokens...``; the label is the whole ``COARSE:fine`` tag."""
    for line, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split(maxsplit=1)
        if not parts:
            continue
        tag, question = parts[0], parts[1] if len(parts) > 1 else ""
        coarse, sep, fine = tag.partition(":")
        if not sep or not coarse or not fine:
            raise DataError(f"{path}:{line}: expected 'COARSE:fine question...', got {raw!r}")
        if not question.strip():
            raise DataError(f"{path}:{line}: the question is empty")
        yield Example(label=tag, text=question, line=line)


_READERS: dict[str, Callable[[Path, str, Fields], Iterator[Example]]] = {
    "csv": lambda path, text, fields: _delimited(path, text, fields, ","),
    "tsv": lambda path, text, fields: _delimited(path, text, fields, "\t"),
    "jsonl": _jsonl,
    "fasttext": _fasttext,
    "trec": _trec,
}


def read_examples(
    path: Path, fmt: str, *, encoding: str = "utf-8", fields: Fields = Fields()
) -> list[Example]:
    """Every example of ``path`` read as ``fmt`` (csv, tsv, jsonl, fasttext or trec)."""
    examples = list(_READERS[fmt](path, read_text(path, encoding), fields))
    if not examples:
        raise DataError(f"{path}: no examples in the file; expected {_SHAPE[fmt]}")
    return examples


_SHAPE = {
    "csv": "a header row, then one text and label per row",
    "tsv": "a header row, then one text and label per row",
    "jsonl": 'one JSON object per line, such as {"text": "...", "label": "..."}',
    "fasttext": "lines such as '__label__NAME text...'",
    "trec": "lines such as 'COARSE:fine question...'",
}
