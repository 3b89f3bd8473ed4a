"""The texts to classify: one per line, or a column of a CSV/TSV file or a field of JSON Lines
(read by the training layer's readers, with no label), from a file or standard input. Every
problem is one line naming the file (and line)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from hpsearch.errors import UsageError
from hpsearch.training import Fields, lines, parse_examples


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
    if kind is InputFormat.lines:
        texts = lines(content)
    else:
        fields = Fields(text=text_field or DEFAULT_FIELD, label=None, text_hint="give --text-field")
        texts = [e.text for e in parse_examples(Path(name), content, kind.value, fields)]
    if not texts:
        raise UsageError(f"{name}: no texts to classify (the input is empty)")
    return texts


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
