"""Trained models stored with their trials in Optuna's artifact store: uploaded when a trial
finishes among the study's best few, removed when it falls out, verified before use."""

from hpsearch.artifacts._store import (
    MODEL_ATTR,
    STALE_PART_SECONDS,
    AtomicFileSystemStore,
    ModelStore,
    ModelStoreError,
    StoredModel,
    keep_count,
    store_dir,
    stored_model,
)

__all__ = [
    "MODEL_ATTR",
    "STALE_PART_SECONDS",
    "AtomicFileSystemStore",
    "ModelStore",
    "ModelStoreError",
    "StoredModel",
    "keep_count",
    "store_dir",
    "stored_model",
]
