"""Predictions written out: a table for a person, JSON Lines or CSV for a program."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import TextIO

from rich.table import Table

from hpsearch.errors import UsageError
from hpsearch.training import Classifier, Prediction

DIGITS = 6  # probabilities rounded: float32 carries no more


class OutputFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


def check_top(k: int, model: Classifier) -> int:
    """``--top`` checked against the model's classes (before any text is read)."""
    n = len(model.classes)
    if not 1 <= k <= n:
        raise UsageError(f"--top {k}: must be in [1, {n}] (the model has {n} classes)")
    return k


def write_jsonl(out: TextIO, texts: Sequence[str], predictions: Sequence[Prediction]) -> None:
    """One object per text: ``text``, ``label``, ``probability``, and ``top`` with --top > 1."""
    for text, pred in zip(texts, predictions, strict=True):
        record: dict[str, object] = {
            "text": text,
            "label": pred.label,
            "probability": round(pred.probability, DIGITS),
        }
        if len(pred.labels) > 1:
            record["top"] = [
                {"label": label, "probability": round(p, DIGITS)}
                for label, p in zip(pred.labels, pred.probabilities, strict=True)
            ]
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_csv(out: TextIO, texts: Sequence[str], predictions: Sequence[Prediction]) -> None:
    """A header row, then ``text,label,probability`` (``label_2,probability_2``... with
    --top)."""
    k = len(predictions[0].labels) if predictions else 1
    header = ["text", "label", "probability"]
    for i in range(2, k + 1):
        header += [f"label_{i}", f"probability_{i}"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for text, pred in zip(texts, predictions, strict=True):
        row = [text]
        for label, p in zip(pred.labels, pred.probabilities, strict=True):
            row += [label, f"{p:.{DIGITS}f}"]
        writer.writerow(row)


def render_table(texts: Sequence[str], predictions: Sequence[Prediction]) -> Table:
    """A numbered table: text, label, probability, and the runners-up with --top > 1."""
    k = len(predictions[0].labels) if predictions else 1
    table = Table(show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("text", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("label", style="bold")
    table.add_column("p", justify="right")
    if k > 1:
        table.add_column("next", no_wrap=True)
    for n, (text, pred) in enumerate(zip(texts, predictions, strict=True), start=1):
        cells = [str(n), text, pred.label, f"{pred.probability:.3f}"]
        if k > 1:
            rest = zip(pred.labels[1:], pred.probabilities[1:], strict=True)
            cells.append(", ".join(f"{label} {p:.3f}" for label, p in rest))
        table.add_row(*cells)
    return table
