"""The texts to classify: one per line, or a column of a CSV/TSV file or a field of JSON Lines,
from a file or standard input. Every problem is one line naming the file (and line)."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from hpsearch.errors import UsageError, shown


class InputFormat(StrEnum):
    lines = "lines"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"


_BY_SUFFIX = {
    ".csv": InputFormat.csv,
    ".tsv": InputFormat.tsv,
    ".jsonl": InputFormat.jsonl,
    ".ndjson": InputFormat.jsonl,
}
DEFAULT_FIELD = "text"


def input_format(path: Path | None, given: InputFormat | None) -> InputFormat:
    """The format given, else the file's extension's, else one text per line (stdin too)."""
    if given is not None:
        return given
    if path is None:
        return InputFormat.lines
    return _BY_SUFFIX.get(path.suffix.lower(), InputFormat.lines)


def read_texts(
    path: Path | None,
    *,
    fmt: InputFormat | None = None,
    text_field: str | None = None,
    stdin: TextIO | None = None,
) -> list[str]:
    """The texts of ``path`` (None or ``-``: standard input), in order; at least one."""
    if path is not None and str(path) == "-":
        path = None
    kind = input_format(path, fmt)
    name = "stdin" if path is None else str(path)
    if text_field is not None and kind is InputFormat.lines:
        raise UsageError(
            f"--text-field {text_field}: {name} is read as one text per line; give a .csv, "
            ".tsv or .jsonl file or --input-format"
        )
    content = _read(path, name, stdin)
    field = text_field or DEFAULT_FIELD
    if kind is InputFormat.lines:
        texts = lines(content)
    elif kind is InputFormat.jsonl:
        texts = _jsonl(content, name, field)
    else:
        texts = _table(content, name, field, "\t" if kind is InputFormat.tsv else ",")
    if not texts:
        raise UsageError(f"{name}: no texts to classify (the input is empty)")
    return texts


def lines(content: str) -> list[str]:
    """The lines of ``content``, split at newlines only (``\n`` or ``\r\n``), as ``wc -l``
    and line numbers count them: ``str.splitlines`` would also split at form feeds and
    Unicode separators inside a text."""
    parts = content.split("\n")
    if parts and parts[-1] == "":
        parts.pop()  # the final newline ends the last line; it starts no new one
    return [part.removesuffix("\r") for part in parts]


def _read(path: Path | None, name: str, stdin: TextIO | None) -> str:
    if path is None:
        stream = stdin if stdin is not None else sys.stdin
        if stream.isatty():  # waiting for typed texts would look like a hang
            raise UsageError("no texts: give a file of texts, or pipe them into standard input")
        raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    else:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{name}: file not found") from None
        except IsADirectoryError:
            raise UsageError(f"{name}: is a directory; give a file of texts") from None
        except OSError as exc:
            raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark is not part of the first text
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{name}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None


def _jsonl(content: str, name: str, field: str) -> list[str]:
    texts = []
    for lineno, line in enumerate(lines(content), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{name}:{lineno}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise UsageError(f"{name}:{lineno}: expected a JSON object, got {shown(record)}")
        if field not in record:
            keys = ", ".join(sorted(map(str, record))) or "none"
            raise UsageError(
                f"{name}:{lineno}: no field {field!r} (fields: {keys}); give --text-field"
            )
        value = record[field]
        if not isinstance(value, str):
            raise UsageError(f"{name}:{lineno}: {field}: expected a string, got {shown(value)}")
        texts.append(value)
    return texts


def _table(content: str, name: str, field: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return []
        if field not in header:
            columns = ", ".join(header) or "none"
            raise UsageError(
                f"{name}:1: no column {field!r} (columns: {columns}); give --text-field"
            )
        column = header.index(field)
        texts = []
        for row in reader:
            if not row:
                continue
            if column >= len(row):
                raise UsageError(
                    f"{name}:{reader.line_num}: {len(row)} columns, no {field!r} (column "
                    f"{column + 1} of the header)"
                )
            texts.append(row[column])
    except csv.Error as exc:
        raise UsageError(f"{name}:{reader.line_num}: not valid CSV: {exc}") from None
    return texts
