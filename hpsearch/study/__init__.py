"""The study file: one Optuna study (fixed config, search space, sampler, pruner, budget,
enqueued points), validated completely when it is loaded, before anything is written."""

from hpsearch.study._file import (
    SHIPPED_STUDIES,
    StudySpec,
    find_studies_dir,
    is_plain_name,
    list_study_files,
    load_study,
    parse_study,
)
from hpsearch.study._pruners import acts_at
from hpsearch.study._space import COMBINATIONS_LIMIT, ParamSpec, combinations, show

__all__ = [
    "COMBINATIONS_LIMIT",
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
]
