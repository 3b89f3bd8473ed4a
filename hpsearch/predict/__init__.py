"""Trained models put to use: load one (a checkpoint, or a study's best stored model), read
texts (lines, CSV/TSV, JSON Lines), classify them, write the predictions out."""

from hpsearch.predict._input import InputFormat, input_format, read_texts
from hpsearch.predict._load import (
    best_stored_model,
    export_model,
    load_checkpoint_file,
    load_model,
    load_study_model,
)
from hpsearch.predict._output import (
    OutputFormat,
    check_top,
    render_table,
    write_csv,
    write_jsonl,
)

__all__ = [
    "InputFormat",
    "OutputFormat",
    "best_stored_model",
    "check_top",
    "export_model",
    "input_format",
    "load_checkpoint_file",
    "load_model",
    "load_study_model",
    "read_texts",
    "render_table",
    "write_csv",
    "write_jsonl",
]
