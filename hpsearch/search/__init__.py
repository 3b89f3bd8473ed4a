"""The search: a study's life in the database, the objective that trains one trial, workers
that pull trials until the global budget is spent, and the launcher of ``hpsearch run``."""

from hpsearch.search._launcher import (
    RunResult,
    RunView,
    available_cores,
    prepare,
    run_study,
    threads_per_worker,
)
from hpsearch.search._lifecycle import (
    SPEC_ATTR,
    Counts,
    best_trial,
    best_trials,
    count_trials,
    open_study,
    stored_name,
)
from hpsearch.search._preflight import check_inputs
from hpsearch.search._progress import Eta, FinishedTrial, Progress, RunningTrial, estimate_eta
from hpsearch.search._worker import configure_logging, run_worker, work

__all__ = [
    "SPEC_ATTR",
    "Counts",
    "Eta",
    "FinishedTrial",
    "Progress",
    "RunResult",
    "RunView",
    "RunningTrial",
    "available_cores",
    "best_trial",
    "best_trials",
    "check_inputs",
    "configure_logging",
    "count_trials",
    "estimate_eta",
    "open_study",
    "prepare",
    "run_study",
    "run_worker",
    "stored_name",
    "threads_per_worker",
    "work",
]
