"""hpsearch: hyperparameter search for RNN sentence classifiers, on Optuna.

``hpsearch.load_model(path_or_study, storage=...)`` loads a trained model for use in Python;
it is imported on first use, so that ``import hpsearch`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hpsearch.predict import load_model

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from hpsearch.predict import load_model

        return load_model
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
