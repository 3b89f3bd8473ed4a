"""The study file: one Optuna study (fixed config, search space, sampler, pruner, budget,
enqueued points), validated completely when it is loaded, before anything is written."""

from hpsearch.study._file import DEFAULT_TRIALS, StudySpec, is_plain_name, parse_study
from hpsearch.study._finding import (
    SHIPPED_STUDIES,
    find_studies_dir,
    list_study_files,
    load_study,
    stored_name,
)
from hpsearch.study._pruners import DEFAULT_PRUNER, PRUNERS, acts_at
from hpsearch.study._samplers import DEFAULT_SAMPLER, SAMPLERS
from hpsearch.study._space import COMBINATIONS_LIMIT, ParamSpec, combinations, show

__all__ = [
    "COMBINATIONS_LIMIT",
    "DEFAULT_PRUNER",
    "DEFAULT_SAMPLER",
    "DEFAULT_TRIALS",
    "PRUNERS",
    "SAMPLERS",
    "SHIPPED_STUDIES",
    "ParamSpec",
    "StudySpec",
    "acts_at",
    "combinations",
    "find_studies_dir",
    "is_plain_name",
    "list_study_files",
    "load_study",
    "parse_study",
    "show",
    "stored_name",
]
