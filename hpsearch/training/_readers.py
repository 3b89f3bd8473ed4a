"""Readers: one small function per file format, each turning a file into labelled texts, or
(CSV, TSV and JSON Lines, with no label field) into texts alone, as predict reads its input.

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
    label: str  # "" when read with no label field
    text: str
    line: int  # 1-based, where the example starts in its file


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    label: str | None = "label"  # None: texts only, each kept as it is, an empty one too
    # What a message about a missing text field tells to do: a study's data section names
    # the field, predict's --text-field option does.
    text_hint: str = "set data.text_field to its name"

    def hint(self, name: str) -> str:
        return self.text_hint if name == self.text else "set data.label_field to its name"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.text,) if self.label is None else (self.text, self.label)


def lines(content: str) -> list[str]:
    """The lines of ``content``, split at newlines only (``\n`` or ``\r\n``), as ``wc -l``
    and line numbers count them: ``str.splitlines`` would also split at form feeds and
    Unicode separators inside a text (or inside a JSON string)."""
    parts = content.split("\n")
    if parts and parts[-1] == "":
        parts.pop()  # the final newline ends the last line; it starts no new one
    return [part.removesuffix("\r") for part in parts]


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


def _example(path: Path, line: int, fields: Fields, label: object, text: object) -> Example:
    if not isinstance(text, str):
        raise DataError(f"{path}:{line}: {fields.text}: expected a string, got {shown(text)}")
    if fields.label is None:
        return Example(label="", text=text, line=line)
    if not text.strip():
        raise DataError(f"{path}:{line}: the text is empty")
    if label is None or isinstance(label, dict | list) or not str(label).strip():
        raise DataError(f"{path}:{line}: the label is {shown(label) if label else 'empty'}")
    return Example(label=str(label).strip(), text=text, line=line)


def _delimited(path: Path, text: str, fields: Fields, delimiter: str) -> Iterator[Example]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: {exc}") from None
    if header is None:
        return
    for name in fields.names:
        if name not in header:
            raise DataError(
                f"{path}:1: no column {name!r} (columns: {', '.join(map(repr, header))}); "
                f"{fields.hint(name)}"
            )
    text_at = header.index(fields.text)
    label_at = None if fields.label is None else header.index(fields.label)
    start = reader.line_num + 1
    try:
        for row in reader:
            if row:  # a blank line
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{start}: {len(row)} columns, the header has {len(header)}"
                    )
                label = None if label_at is None else row[label_at]
                yield _example(path, start, fields, label, row[text_at])
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: {exc}") from None


def _jsonl(path: Path, text: str, fields: Fields) -> Iterator[Example]:
    for line, raw in enumerate(lines(text), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {shown(record)}")
        for name in fields.names:
            if name not in record:
                raise DataError(
                    f"{path}:{line}: no field {name!r} (fields: {', '.join(map(repr, record))}); "
                    f"{fields.hint(name)}"
                )
        label = None if fields.label is None else record[fields.label]
        yield _example(path, line, fields, label, record[fields.text])


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
        label = words[0].removeprefix(LABEL_PREFIX)
        yield _example(path, line, _fields, label, " ".join(words[1:]))


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


TEXT_ONLY_FORMATS = ("csv", "tsv", "jsonl")  # those with a field to read the text from


def parse_examples(path: Path, content: str, fmt: str, fields: Fields = Fields()) -> list[Example]:
    """Every example of ``content`` (read from ``path``, named in messages) as ``fmt``; with
    ``fields.label`` None, texts only (``fmt`` one of TEXT_ONLY_FORMATS). None may be none."""
    if fields.label is None and fmt not in TEXT_ONLY_FORMATS:
        raise ValueError(f"{fmt} has no text field to read alone")
    return list(_READERS[fmt](path, content, fields))


def read_examples(
    path: Path, fmt: str, *, encoding: str = "utf-8", fields: Fields = Fields()
) -> list[Example]:
    """Every example of ``path`` read as ``fmt`` (csv, tsv, jsonl, fasttext or trec)."""
    examples = parse_examples(path, read_text(path, encoding), fmt, fields)
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
