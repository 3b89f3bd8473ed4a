"""User-facing errors.

Anything a user can fix (a bad config value, a missing file, a wrong URL) raises a
``UsageError`` subclass with a one-line message that names the source, the field, the value
and what is allowed. The CLI prints that line and exits with status 2; tracebacks are
shown only with ``--debug``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """An error caused by the user's input; printed as one line, exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A training configuration or study file is invalid."""


class DataError(UsageError):
    """The dataset is missing, unreadable or fails its checksum."""


class EmbeddingsError(UsageError):
    """Pretrained vectors are missing, unreadable or do not fit the configuration."""


class StorageError(UsageError):
    """The storage URL is malformed, unsupported or unreachable."""


class StudyError(UsageError):
    """A study does not exist, or exists with a different specification."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' if none is close.

    Case is ignored in the comparison: ``LR`` is a typo of ``lr``, though no letter matches.
    """
    by_lower = {choice.lower(): choice for choice in reversed(list(choices))}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
