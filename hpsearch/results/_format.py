"""How numbers read wherever hpsearch shows them: one definition each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_value(value: Any) -> str:
    """A parameter or setting: floats to 4 significant digits, a missing value as ``-``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def format_params(params: Mapping[str, Any]) -> str:
    """``lr=0.001, dropout=0.2``."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_clock(seconds: float) -> str:
    """A duration as a clock reads it: ``4:05``, ``1:02:03``."""
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_mean_std(mean: float | None, std: float | None) -> str:
    """``0.8832 ± 0.0092``, or ``-`` without a mean."""
    return "-" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"
