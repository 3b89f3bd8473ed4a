"""Finding a trained model: a checkpoint file, or the best stored model of a study."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hpsearch import artifacts, results, search, settings, training
from hpsearch import storage as storage_mod
from hpsearch.errors import StudyError
from hpsearch.training import Classifier

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def load_model(
    path_or_study: str | os.PathLike[str],
    *,
    storage: str | None = None,
    artifacts_dir: str | os.PathLike[str] | None = None,
) -> Classifier:
    """A trained model, ready for ``.predict(texts)`` and ``.predict_proba(texts)``.

    ``path_or_study`` is a checkpoint file (``hpsearch train --save``, ``hpsearch export
    --model``) or the name of a study in ``storage`` (default: ``$HPSEARCH_STORAGE``, else
    ``sqlite:///hpsearch.db``), whose best stored model is loaded. A string names a file when
    the file exists, holds a path separator or ends in .pt/.pth; a ``Path`` always does.
    """
    if _is_file_name(path_or_study):
        return load_checkpoint_file(Path(path_or_study))
    url = storage_mod.resolve_url(storage)
    directory = Path(artifacts_dir) if artifacts_dir is not None else None
    return load_study_model(str(path_or_study), url, directory)


def _is_file_name(value: str | os.PathLike[str]) -> bool:
    if not isinstance(value, str):
        return True
    return os.path.exists(value) or os.sep in value or value.endswith(CHECKPOINT_SUFFIXES)


def load_checkpoint_file(path: Path) -> Classifier:
    """The model of a checkpoint file (one-line error when missing, damaged or foreign)."""
    return Classifier.from_checkpoint(training.load_checkpoint(path), source=str(path))


def best_stored_model(
    study_name: str, url: str, directory: Path | None = None
) -> tuple[artifacts.ModelStore, artifacts.StoredModel, str | None]:
    """The best trial's stored model (or, when the best has none, the best-ranked trial's
    that has one) with the store holding it, and a note when it is not the best trial's."""
    store_directory = artifacts.store_dir(url, directory)
    if store_directory is None:
        raise StudyError(
            f"study {study_name!r}: {storage_mod.mask_url(url)} is a server database: give "
            f"--artifacts (or {settings.ARTIFACTS}), the directory its workers stored models in"
        )
    study = results.load_study_for_reading(study_name, url)
    ranked = search.best_trials(study)
    if not ranked:
        results.best_complete_trial(study)  # raises, saying what the study has
    for trial in ranked:
        model = artifacts.stored_model(trial)
        if model is not None:
            note = None
            if trial.number != ranked[0].number:
                note = (
                    f"the best trial ({ranked[0].number}) has no stored model; using trial "
                    f"{trial.number}'s (value {trial.value:.4f})"
                )
            return artifacts.ModelStore(store_directory), model, note
    raise StudyError(
        f"study {study_name!r}: none of its complete trials has a stored model (models are "
        f"kept from the best {artifacts.keep_count()} trials while the study runs; "
        f"{settings.KEEP_MODELS}=0 stores none)"
    )


def load_study_model(study_name: str, url: str, directory: Path | None = None) -> Classifier:
    """The best stored model of a study, checked against its recorded sha256 first."""
    store, model, _ = best_stored_model(study_name, url, directory)
    with tempfile.TemporaryDirectory(prefix="hpsearch-predict-") as tmp:
        path = store.fetch(model, Path(tmp) / "model.pt")
        checkpoint = training.load_checkpoint(path)
    source = f"study {study_name!r}, trial {model.trial_number}"
    return Classifier.from_checkpoint(checkpoint, source=source)


def export_model(
    study_name: str, url: str, dest: Path, directory: Path | None = None
) -> tuple[artifacts.StoredModel, str | None]:
    """Write the study's best stored model to ``dest`` (verified); the model and any note."""
    store, model, note = best_stored_model(study_name, url, directory)
    store.fetch(model, dest)
    return model, note
