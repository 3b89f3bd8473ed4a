"""Trained models stored with their trials, in Optuna's artifact store (a directory).

When a trial finishes among the study's best few (``HPSEARCH_KEEP_MODELS``, default 3), its
best epoch's checkpoint is uploaded as an artifact of the trial, and the models of trials
that have fallen out of the best few are removed: the store holds about that many models
(more only for the moment several workers finish together).

Trust: a model is used only when everything about it was completed. The file is written
under a temporary name and renamed (a worker killed mid-upload leaves a ``.part`` file no
one reads, removed by a later upload once it is old enough to be no live one's); Optuna
records the artifact on the trial only after the file is whole; the trial's ``model`` user
attribute (artifact id, sha256, size) is written last; and a reader checks the file against
that checksum before loading it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import make_url

from hpsearch import files, settings
from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError

logger = logging.getLogger(__name__)

MODEL_ATTR = "model"  # trial user attribute: the stored model's id, sha256 and size
ARTIFACTS_PREFIX = "artifacts:"  # Optuna's trial system attribute per artifact
DEFAULT_KEEP = 3
MODEL_FILENAME = "model-trial-{number}.pt"
# A temporary file (files.write_with's ``.NAME.XXXX.part``) untouched for this long (seconds)
# is a killed upload's: a live one is written without pause, a model in seconds.
STALE_PART_SECONDS = 3600.0


class ModelStoreError(UsageError):
    """A stored model is missing, damaged or cannot be reached."""


def store_dir(url: str, directory: Path | None = None) -> Path | None:
    """Where a study database's models live: ``directory``, else ``$HPSEARCH_ARTIFACTS``, else
    ``NAME.artifacts/`` beside a SQLite file ``NAME.db``; None for a server database without
    either (its workers may run on machines that share no directory)."""
    if directory is not None:
        return Path(directory).expanduser()
    env = settings.text(settings.ARTIFACTS)
    if env:
        return Path(env).expanduser()
    path = storage_mod.sqlite_path(make_url(storage_mod.resolve_url(url)))
    return None if path is None else path.with_suffix(".artifacts")


def keep_count() -> int:
    """How many of a study's best trials keep their model (0: store none)."""
    return settings.count(settings.KEEP_MODELS, DEFAULT_KEEP)


class AtomicFileSystemStore(FileSystemArtifactStore):
    """Optuna's file-system store, writing each artifact under a temporary name and renaming
    it into place, so that a reader never sees half a file under an artifact's id."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        path = self._get_filepath(artifact_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelStoreError(f"{path.parent}: cannot create the model store: {exc}") from None
        remove_stale_parts(path.parent)

        def copy(target: Path) -> None:
            with open(target, "wb") as out:
                shutil.copyfileobj(content_body, out)

        files.write_with(path, copy)


def remove_stale_parts(directory: Path, *, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove the temporary files that uploads killed midway left in ``directory`` (not
    modified for ``older_than`` seconds); the files removed. Another worker removing the same
    file meanwhile, or a file that cannot be removed, is no error: the upload goes on."""
    removed = []
    cutoff = time.time() - older_than
    for part in directory.glob(".*.part"):
        try:
            if part.is_file() and part.stat().st_mtime < cutoff:
                part.unlink()
                removed.append(part)
        except OSError:
            continue
    if removed:
        logger.info("%s: removed %d temporary files of killed uploads", directory, len(removed))
    return removed


@dataclass(frozen=True)
class StoredModel:
    """A trial's model record: what was uploaded, and the checksum a reader verifies."""

    trial_number: int
    trial_id: int
    value: float
    artifact_id: str
    sha256: str
    size: int


def stored_model(trial: FrozenTrial) -> StoredModel | None:
    """The trial's model record, or None when it has none (or it was removed)."""
    record = trial.user_attrs.get(MODEL_ATTR)
    if not isinstance(record, dict):
        return None
    if not trial.system_attrs.get(ARTIFACTS_PREFIX + str(record.get("artifact_id"))):
        return None  # the upload did not finish, or the model was removed since
    try:
        return StoredModel(
            trial_number=trial.number,
            trial_id=trial._trial_id,
            value=float(trial.value if trial.value is not None else record["value"]),
            artifact_id=str(record["artifact_id"]),
            sha256=str(record["sha256"]),
            size=int(record["bytes"]),
        )
    except (KeyError, TypeError, ValueError):  # not a record hpsearch wrote
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    """The models of one study database's trials, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.backend = AtomicFileSystemStore(self.directory)

    # --- writing (a worker, when a trial finishes) ------------------------------------------

    def keep_if_best(
        self,
        trial: optuna.Trial,
        value: float,
        write_checkpoint: Callable[[Path], None],
        *,
        keep: int,
    ) -> bool:
        """Upload the trial's model when ``value`` ranks among the study's best ``keep``, then
        remove the models that no longer do. Returns whether the model was stored."""
        if keep <= 0 or not math.isfinite(value):
            return False
        others = trial.study.get_trials(deepcopy=False)
        finishing = _finishing(others) | {trial.number: value}
        if trial.number not in _best_numbers(others, finishing, keep):
            self.remove_beyond(trial.study, keep)  # a failed trial's upload, say
            return False
        with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
            path = Path(tmp) / MODEL_FILENAME.format(number=trial.number)
            write_checkpoint(path)
            record = {"sha256": _sha256(path), "bytes": path.stat().st_size, "value": value}
            artifact_id = upload_artifact(
                artifact_store=self.backend, file_path=str(path), study_or_trial=trial
            )
        # Last: only a record naming a whole, checksummed file is ever trusted.
        trial.set_user_attr(MODEL_ATTR, {"artifact_id": artifact_id, **record})
        self.remove_beyond(trial.study, keep, finishing={trial.number: value})
        return True

    def remove_beyond(
        self, study: optuna.Study, keep: int, *, finishing: dict[int, float] | None = None
    ) -> list[int]:
        """Remove the models of trials outside the best ``keep``; their trial numbers. A
        trial still RUNNING is left to its own worker: it may have just uploaded, its value
        not yet told."""
        trials = study.get_trials(deepcopy=False)
        finishing = _finishing(trials) | (finishing or {})
        best = _best_numbers(trials, finishing, keep)
        removed = []
        for trial in trials:
            record = trial.user_attrs.get(MODEL_ATTR)
            if not isinstance(record, dict) or "artifact_id" not in record:
                continue
            if trial.number in best | finishing.keys() or trial.state == TrialState.RUNNING:
                continue
            if self._forget(study, trial, str(record["artifact_id"])):
                removed.append(trial.number)
        return removed

    def _forget(self, study: optuna.Study, trial: FrozenTrial, artifact_id: str) -> bool:
        key = ARTIFACTS_PREFIX + artifact_id
        if trial.system_attrs.get(key) is None:
            return False
        # The listing goes first, so the dashboard never offers a file that is gone. (This
        # process may still hold the trial as it was: removing twice is harmless.)
        _drop_trial_attr(study, trial._trial_id, key, system=True)
        try:
            self.backend.remove(artifact_id)
        except ArtifactNotFound:
            return False
        # Then the record, so that no export, dashboard or reader shows a model that is gone.
        _drop_trial_attr(study, trial._trial_id, MODEL_ATTR, system=False)
        logger.info("removed the model of trial %d (no longer among the best)", trial.number)
        return True

    # --- reading (predict, export) ----------------------------------------------------------

    def fetch(self, model: StoredModel, dest: Path) -> Path:
        """Copy the model to ``dest`` after checking its size and sha256; a file that fails
        either is never handed on."""
        path = self.directory / model.artifact_id
        where = f"trial {model.trial_number}'s stored model ({path})"
        if not path.is_file():
            raise ModelStoreError(
                f"{where}: not found; is --artifacts (or {settings.ARTIFACTS}) the directory "
                "the workers stored models in?"
            )
        if path.stat().st_size != model.size or _sha256(path) != model.sha256:
            raise ModelStoreError(
                f"{where}: damaged (size or sha256 differs from the one recorded with the "
                "trial); not used"
            )

        def copy(target: Path) -> None:
            shutil.copyfile(path, target)

        files.write_with(Path(dest), copy)
        return Path(dest)


def _finishing(trials: Sequence[FrozenTrial]) -> dict[int, float]:
    """RUNNING trials that have stored a model, at the value recorded with it: they are
    finishing, and count among the best before their value is told."""
    found = {}
    for t in trials:
        record = t.user_attrs.get(MODEL_ATTR)
        value = record.get("value") if isinstance(record, dict) else None
        if t.state == TrialState.RUNNING and isinstance(value, int | float):
            found[t.number] = float(value)
    return found


def _best_numbers(
    trials: Sequence[FrozenTrial], finishing: dict[int, float], keep: int
) -> set[int]:
    """The numbers of the best ``keep`` trials: COMPLETE ones by value, plus the
    ``finishing`` ones at the values given; ties go to the earlier trial."""
    scored = [
        (t.value, t.number)
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    scored += [(v, n) for n, v in finishing.items() if math.isfinite(v)]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return {number for _, number in scored[:keep]}


def _drop_trial_attr(study: optuna.Study, trial_id: int, key: str, *, system: bool) -> None:
    """Delete a finished trial's attribute: the system one listing a removed artifact, or the
    user one recording it. Optuna refuses to change a finished trial through its API, so
    this goes to the table itself; a deleted row, unlike optuna-dashboard's null, also keeps
    ``get_all_artifact_meta`` working."""
    from optuna.storages._rdb.models import TrialSystemAttributeModel, TrialUserAttributeModel
    from sqlalchemy import delete

    backend = getattr(study._storage, "_backend", study._storage)
    engine = getattr(backend, "engine", None)
    if engine is None:  # not a database storage: nothing lists the artifact but its trial
        return
    table = TrialSystemAttributeModel if system else TrialUserAttributeModel
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.trial_id == trial_id, table.key == key))
