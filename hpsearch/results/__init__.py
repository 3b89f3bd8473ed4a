"""Results: a study read back (never written to, but for ``evaluate``'s record), exported,
retrained on the test set, plotted, compared, and listed beside the study files."""

from hpsearch.results._catalog import render_studies, study_rows
from hpsearch.results._evaluate import Evaluation, evaluate_study
from hpsearch.results._evaluate import render as render_evaluation
from hpsearch.results._export import best_export, best_record, render_best, to_json, trials_csv
from hpsearch.results._format import format_clock, format_mean_std, format_params, format_value
from hpsearch.results._reading import (
    best_complete_trial,
    database_exists,
    load_study_for_reading,
    trial_config,
)
from hpsearch.results._report import compare, render_compare, write_report

__all__ = [
    "Evaluation",
    "best_complete_trial",
    "best_export",
    "best_record",
    "compare",
    "database_exists",
    "evaluate_study",
    "format_clock",
    "format_mean_std",
    "format_params",
    "format_value",
    "load_study_for_reading",
    "render_best",
    "render_compare",
    "render_evaluation",
    "render_studies",
    "study_rows",
    "to_json",
    "trial_config",
    "trials_csv",
    "write_report",
]
