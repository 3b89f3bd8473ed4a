"""The trained-model store: the best few trials keep their model, the rest are removed, an
upload killed halfway leaves nothing anyone trusts, a damaged file is refused, and the
objective stores a model that predicts."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import get_all_artifact_meta

from hpsearch import artifacts, predict
from hpsearch import storage as storage_mod
from hpsearch.artifacts import MODEL_ATTR, ModelStore, ModelStoreError
from hpsearch.errors import StudyError, UsageError
from hpsearch.search._objective import Objective
from hpsearch.study import parse_study

VALUES = [0.1, 0.5, 0.3, 0.9, 0.2, 0.5]


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HPSEARCH_ARTIFACTS", "HPSEARCH_KEEP_MODELS", "HPSEARCH_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _study(tmp_path: Path, name: str = "s") -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'db.db'}"
    storage = storage_mod.open_storage(url, heartbeat=False)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize"), url


def _fake_model(trial: optuna.Trial) -> object:
    def write(path: Path) -> None:
        path.write_bytes(f"model of trial {trial.number}".encode())

    return write


def _run(study: optuna.Study, store: ModelStore, values: list[float], keep: int) -> None:
    def objective(trial: optuna.Trial) -> float:
        value = values[trial.number]
        store.keep_if_best(trial, value, _fake_model(trial), keep=keep)  # type: ignore[arg-type]
        return value

    study.optimize(objective, n_trials=len(values))


def _fresh(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials as another process reads them (this one caches finished trials)."""
    backend = getattr(study._storage, "_backend", study._storage)
    return optuna.load_study(study_name=study.study_name, storage=backend).trials


def _kept(study: optuna.Study) -> list[int]:
    trials = _fresh(study)
    return sorted(t.number for t in trials if artifacts.stored_model(t) is not None)


def test_the_store_sits_beside_a_sqlite_database(tmp_path: Path) -> None:
    assert artifacts.store_dir(f"sqlite:///{tmp_path / 'hp.db'}") == tmp_path / "hp.artifacts"
    assert artifacts.store_dir("postgresql+psycopg://u@h/db") is None
    assert artifacts.store_dir("postgresql+psycopg://u@h/db", tmp_path / "m") == tmp_path / "m"


def test_the_environment_names_the_store_and_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "shared"))
    assert artifacts.store_dir("postgresql+psycopg://u@h/db") == tmp_path / "shared"
    assert artifacts.keep_count() == 3
    monkeypatch.setenv("HPSEARCH_KEEP_MODELS", "0")
    assert artifacts.keep_count() == 0
    monkeypatch.setenv("HPSEARCH_KEEP_MODELS", "many")
    with pytest.raises(UsageError, match=r"HPSEARCH_KEEP_MODELS \('many'\) must be a whole"):
        artifacts.keep_count()


def test_only_the_best_few_keep_their_model(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    _run(study, store, VALUES, keep=2)
    assert _kept(study) == [1, 3]  # 0.9 and the first 0.5 (ties keep the earlier trial)
    assert len(list(store.directory.iterdir())) == 2  # the others' files are gone
    # and their records: no export or dashboard shows a model that is gone
    assert [t.number for t in _fresh(study) if MODEL_ATTR in t.user_attrs] == [1, 3]
    for trial in _fresh(study):  # and the dashboard lists only the kept ones
        listed = get_all_artifact_meta(trial, storage=storage_mod.open_storage(url))
        assert len(listed) == (1 if trial.number in (1, 3) else 0), trial.number
    _, model, note = predict.best_stored_model("s", url)
    assert model.trial_number == 3 and note is None
    out = store.fetch(model, tmp_path / "best.pt")
    assert out.read_bytes() == b"model of trial 3"


def test_another_workers_model_is_safe_until_its_trial_is_told(tmp_path: Path) -> None:
    study, _ = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    other = study.ask()  # another worker: uploaded, its value not yet told
    assert store.keep_if_best(other, 0.95, _fake_model(other), keep=1)  # type: ignore[arg-type]
    failed = study.ask()  # a worker that uploaded, then failed to tell its value
    assert store.keep_if_best(failed, 0.99, _fake_model(failed), keep=2)  # type: ignore[arg-type]
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    for value in (0.1, 0.2):
        trial = study.ask()
        store.keep_if_best(trial, value, _fake_model(trial), keep=1)  # type: ignore[arg-type]
        study.tell(trial, value)
    assert _kept(study) == [other.number]  # finishing at 0.95 it outranks them; failed is gone
    study.tell(other, 0.95)
    assert _kept(study) == [other.number]


def test_a_model_attribute_hpsearch_did_not_write_is_ignored(tmp_path: Path) -> None:
    study, _ = _study(tmp_path)
    study.enqueue_trial({}, user_attrs={MODEL_ATTR: {"artifact_id": 7}})
    study.enqueue_trial({}, user_attrs={MODEL_ATTR: "mine"})
    _run(study, ModelStore(tmp_path / "db.artifacts"), [0.9, 0.8, 0.1], keep=1)
    assert _kept(study) == [0]  # its own record replaced the foreign one; nothing crashed
    assert [artifacts.stored_model(t) is None for t in _fresh(study)] == [False, True, True]


def test_keep_zero_stores_nothing(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _run(study, ModelStore(tmp_path / "db.artifacts"), VALUES[:2], keep=0)
    assert _kept(study) == []
    with pytest.raises(StudyError, match="none of its complete trials has a stored model"):
        predict.best_stored_model("s", url)


class _Killed(BaseException):
    """Stands for the worker being killed (not an Exception: nothing catches it)."""


class _DiesHalfway(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise _Killed
        return super().read(4)


def test_an_upload_killed_halfway_leaves_nothing_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, _ = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    real_open = open

    def dying_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if mode == "rb" and str(file).endswith(".pt"):  # the upload reading the checkpoint
            return _DiesHalfway(real_open(file, "rb").read())  # type: ignore[call-overload]
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    def objective(trial: optuna.Trial) -> float:
        monkeypatch.setattr("builtins.open", dying_open)
        try:
            store.keep_if_best(trial, 0.9, _fake_model(trial), keep=3)  # type: ignore[arg-type]
        finally:
            monkeypatch.undo()
        return 0.9

    with pytest.raises(_Killed):
        study.optimize(objective, n_trials=1)
    leftovers = list(store.directory.iterdir()) if store.directory.exists() else []
    assert leftovers == []  # no half file under an artifact's id, no temporary file either
    (trial,) = study.trials
    assert MODEL_ATTR not in trial.user_attrs
    assert get_all_artifact_meta(trial, storage=study._storage) == []
    assert artifacts.stored_model(trial) is None


def test_a_damaged_or_missing_model_is_refused(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    _run(study, store, [0.7], keep=1)
    _, model, _ = predict.best_stored_model("s", url)
    path = store.directory / model.artifact_id
    path.write_bytes(b"model of trial 9")  # same size, other bytes
    with pytest.raises(ModelStoreError, match=r"trial 0's stored model .*: damaged"):
        store.fetch(model, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    path.unlink()
    with pytest.raises(ModelStoreError, match="not found; is --artifacts"):
        store.fetch(model, tmp_path / "out.pt")


def test_a_record_without_its_listing_is_not_trusted(tmp_path: Path) -> None:
    # A record whose listing is gone (removed by another worker meanwhile) is no model.
    study, _ = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    _run(study, store, [0.7], keep=1)
    (trial,) = study.trials
    key = next(k for k in trial.system_attrs if k.startswith("artifacts:"))
    from hpsearch.artifacts._store import _drop_trial_attr

    _drop_trial_attr(study, trial._trial_id, key, system=True)
    (fresh,) = _fresh(study)
    assert key not in fresh.system_attrs and MODEL_ATTR in fresh.user_attrs
    assert artifacts.stored_model(fresh) is None


def test_the_objective_stores_a_model_that_predicts(trec_dir: Path, tmp_path: Path) -> None:
    spec = parse_study(
        {
            "name": "obj",
            "config": {"pooling": "mean", "regularizer": "none", "embedding_dim": 8,
                       "hidden_dim": 8, "batch_size": 256, "device": "cpu"},
            "space": {"lr": {"choices": [3.0e-2]}},
            "budget": {"trials": 1, "epochs": 2},
        },
        source="test",
    )  # fmt: skip
    study, url = _study(tmp_path, "obj")
    store = ModelStore(tmp_path / "db.artifacts")
    objective = Objective(
        spec, worker="w", data_dir=trec_dir, threads=1, models=store, keep_models=1
    )
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    record = trial.user_attrs[MODEL_ATTR]
    assert set(record) == {"artifact_id", "sha256", "bytes", "value"}
    model = predict.load_study_model("obj", url)
    assert model.config.hidden_dim == 8
    assert model.classes == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    # The best epoch's weights: the stored model scores the trial's value on validation.
    from hpsearch.training import load_dataset
    from hpsearch.training._train import evaluate

    dataset = load_dataset(model.config, trec_dir)
    _, acc = evaluate(model.model, dataset.valid, "cpu")
    assert acc == pytest.approx(trial.value)


def test_an_upload_removes_the_temporary_files_of_killed_uploads_only_when_old(
    tmp_path: Path,
) -> None:
    study, _ = _study(tmp_path)
    store = ModelStore(tmp_path / "db.artifacts")
    store.directory.mkdir()
    stale = store.directory / ".0a1b2c.x1y2z3.part"  # files.write_with's temporary name
    live = store.directory / ".3d4e5f.a1b2c3.part"
    for part in (stale, live):
        part.write_bytes(b"half a model")
    hours_ago = time.time() - 2 * artifacts.STALE_PART_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    _run(study, store, [0.7], keep=1)
    names = {p.name for p in store.directory.iterdir()}
    assert stale.name not in names  # a worker killed mid-upload long ago
    assert live.name in names  # perhaps another worker's upload, going on now
    assert len(names) == 2  # and the model just stored
