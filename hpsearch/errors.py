"""User-facing errors.

Anything a user can fix (a bad config value, a missing file, a wrong URL) raises a
``UsageError`` subclass with a one-line message that names the source, the field, the value
and what is allowed. The CLI prints that line and exits with status 2; tracebacks are
shown only with ``--debug``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


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


class FieldError(ConfigError):
    """One bad field of a file: ``source: field: problem``, where the problem shows the value
    and what is allowed. Kept in parts so that a caller can move it to where the field sits
    in its own file (a study's ``config.lr``) without taking the line apart again."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source, self.field, self.problem = source, field, problem
        super().__init__(f"{source}: {self.detail}")

    @property
    def detail(self) -> str:
        """The message without its source: ``field: problem``."""
        return f"{self.field}: {self.problem}" if self.field else self.problem

    def at(self, field: str, *, name: str | None = None) -> FieldError:
        """The same problem at ``field``. With ``name``, only an error about that field moves
        there; one about another field is shown below it (``space.hidden_dim.low: heads:``)."""
        if name is None or self.field == name:
            return FieldError(self.source, field, self.problem)
        return FieldError(
            self.source, f"{field}: {self.field}" if field else self.field, self.problem
        )


_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 60, 60, 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxlevel = 2
_SHOWN_MAX = 160


def shown(value: object) -> str:
    """A value's repr for a message, bounded: a huge list or string is elided in the middle."""
    text = _SHOWN.repr(value)
    return text if len(text) <= _SHOWN_MAX else f"{text[: _SHOWN_MAX - 20]}...{text[-17:]}"


# --- pydantic's errors as one line ---------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument", "invalid_key")


def field_error(
    exc: ValidationError, source: str, schema: Any, *, loc: tuple[str | int, ...] = ()
) -> FieldError:
    """Pydantic's first error as the one-line message: the field path, the value (bounded) and
    what is allowed, read from the field's declaration in ``schema`` (a pydantic model or
    dataclass). ``loc`` is where ``exc``'s own locations start within ``schema``."""
    error = exc.errors(include_url=False)[0]
    where = (*loc, *error["loc"])
    ctx = error.get("ctx") or {}
    path, keys, info, hint = _locate(schema, where)
    if "field" in ctx:  # a rule across fields names the one it blames
        return FieldError(
            source, f"{path}.{ctx['field']}" if path else str(ctx["field"]), error["msg"]
        )
    kind, value = error["type"], error["input"]
    if isinstance(value, float) and value.is_integer() and hint is int:
        value = int(value)  # an integer field shows 1e12 as the number it is, as 10**12
    if kind in _UNKNOWN:
        return FieldError(source, path, unknown_key(str(where[-1]), keys))
    if kind == "literal_error":
        choices = [str(c) for c in literal_choices(info)]
        close = did_you_mean(str(value), choices)
        return FieldError(source, path, f"{shown(value)} is not one of {', '.join(choices)}{close}")
    if kind in _EXPECTED:
        if value is None:
            return FieldError(source, path, "null is not allowed; give a value")
        return FieldError(
            source, path, f"expected {_expected(kind, info, hint)}, got {shown(value)}"
        )
    rule = allowed(info)
    problem = f"must be {rule}" if rule else error["msg"][0].lower() + error["msg"][1:]
    return FieldError(source, path, f"{problem}, got {shown(value)}")


def _expected(kind: str, info: Any, hint: Any) -> str:
    """``a mapping such as {trials: 50}``: the type, with the example of a section's model
    (its ``example``) or of the field (its ``examples``)."""
    example = getattr(hint, "example", None) or (info.examples[0] if info and info.examples else "")
    container = _EXPECTED[kind] in ("a mapping", "a list")
    return f"{_EXPECTED[kind]} such as {example}" if example and container else _EXPECTED[kind]


def unknown_key(key: str, keys: Sequence[str]) -> str:
    """The problem of a key not in ``keys``: the allowed ones (a short list), the closest."""
    hint = did_you_mean(key, keys)
    if len(keys) > 12:  # the training config's 34 fields: too many for one line
        return f"unknown field{hint}; docs/configuration.md lists the fields"
    return f"unknown key; allowed: {', '.join(keys)}{hint}"


def allowed(info: Any) -> str | None:
    """What a field allows, in words: its description, else its bounds (``in [1, 64]``,
    ``a finite number > 0``), ``or null`` when it may be null."""
    if info is None:
        return None
    if info.description:
        return str(info.description)
    bounds = {
        attr: getattr(m, attr)
        for m in info.metadata
        for attr in ("ge", "gt", "le", "lt", "allow_inf_nan")
        if hasattr(m, attr)
    }
    low = next(((op, bounds[k]) for k, op in (("ge", "["), ("gt", "(")) if k in bounds), None)
    high = next(((op, bounds[k]) for k, op in (("le", "]"), ("lt", ")")) if k in bounds), None)
    if low and high:
        text = f"in {low[0]}{_bound(low[1])}, {_bound(high[1])}{high[0]}"
    elif low:
        finite = "a finite number " if bounds.get("allow_inf_nan") is False else ""
        text = f"{finite}{'>=' if low[0] == '[' else '>'} {_bound(low[1])}"
    elif high:
        text = f"{'<=' if high[0] == ']' else '<'} {_bound(high[1])}"
    else:
        return None
    return text + (" or null" if type(None) in typing.get_args(info.annotation) else "")


def _bound(value: Any) -> str:
    """A bound as a reader knows it: ``2**63 - 1`` rather than its 19 digits."""
    if isinstance(value, int) and value > 2**31 and not (value + 1) & value:
        return f"2**{value.bit_length()} - 1"
    return str(value)


def bare_type(hint: Any) -> Any:
    """``hint`` without Annotated and without a union's None (``int`` for ``Int | None``)."""
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
            hint = args[0]
            continue
        return hint


def literal_choices(info: Any) -> tuple[Any, ...]:
    """The values a Literal field allows (an empty tuple for any other field)."""
    hint = bare_type(getattr(info, "annotation", None))
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()


def _locate(schema: Any, where: tuple[str | int, ...]) -> tuple[str, list[str], Any, Any]:
    """Along ``where``: the dotted path (``enqueue[0].lr``), the keys of the last model passed,
    the field declared at the end (None inside a dict or list) and the type expected there."""
    path, current, keys, info = "", schema, [], None
    for part in where:
        current = bare_type(current)
        is_list = typing.get_origin(current) is list
        path += f"[{part}]" if is_list else f".{part}" if path else str(part)
        fields = getattr(current, "__pydantic_fields__", None)
        if fields is None:  # a dict's value or a list's item
            args = typing.get_args(current)
            current, info = (args[-1] if args else None), None
            continue
        keys = list(fields)
        info = fields.get(part)
        current = getattr(info, "annotation", None)
    return path, keys, info, bare_type(current)
