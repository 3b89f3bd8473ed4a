"""The study's metric (issue 17 item 2): accuracy or macro-F1 on validation, both computed every
epoch; the chosen one picks the best epoch, is what the pruner sees and the trial's value, and
names the study's value in the dashboard."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from hpsearch import search
from hpsearch import study as studyfile
from hpsearch.errors import ConfigError
from hpsearch.search._objective import Objective
from hpsearch.training._train import _accuracy_and_macro_f1, scores, train
from tests.unit.test_train import DATA, tiny_cfg

TINY = {"pooling": "mean", "regularizer": "none", "embedding_dim": 8, "batch_size": 256}


def test_macro_f1_from_a_confusion_matrix() -> None:
    # rows: true class; columns: predicted. Class 2 never occurs and is never predicted.
    confusion = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    accuracy, f1 = _accuracy_and_macro_f1(confusion)
    assert accuracy == pytest.approx(7 / 10)
    # class 0: 2*3 / (4 + 5); class 1: 2*4 / (6 + 5); class 2 left out
    assert f1 == pytest.approx((6 / 9 + 8 / 11) / 2)
    # A class predicted but never true counts, with F1 0.
    _, f1 = _accuracy_and_macro_f1(torch.tensor([[2, 0, 1], [0, 2, 0], [0, 0, 0]]))
    assert f1 == pytest.approx((4 / 5 + 1 + 0) / 3)


def test_every_epoch_has_both_scores_and_the_metric_picks_the_best() -> None:
    by_acc = train(tiny_cfg(epochs=6, lr=0.1), DATA)
    by_f1 = train(tiny_cfg(epochs=6, lr=0.1, metric="macro_f1"), DATA)
    assert [s.valid_acc for s in by_acc.history] == [s.valid_acc for s in by_f1.history]
    f1s = [s.valid_f1 for s in by_f1.history]
    assert all(0.0 <= f <= 1.0 for f in f1s)
    assert by_f1.best_score == max(f1s) == by_f1.best_valid_f1
    assert by_f1.best_epoch == f1s.index(max(f1s)) + 1
    assert by_acc.best_score == by_acc.best_valid_acc
    _, acc, f1 = scores(by_f1.model, DATA.valid, "cpu")
    assert (acc, f1) == (by_f1.history[-1].valid_acc, by_f1.history[-1].valid_f1)


def _spec(tmp_path: Path, extra: str) -> studyfile.StudySpec:
    text = (
        "name: m\nconfig: {hidden_dim: 8, embedding_dim: 8, batch_size: 256, threads: 1}\n"
        f"{extra}\nsampler: {{name: random, seed: 0}}\npruner: none\n"
        "budget: {trials: 1, epochs: 2}\n"
    )
    if "space:" not in extra:
        text += "space:\n  lr: {choices: [1.0e-2]}\n"
    (tmp_path / "m.yaml").write_text(text)
    return studyfile.load_study(tmp_path / "m.yaml")


def test_study_file_metric(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "metric: macro_f1")
    assert spec.metric == "macro_f1" and spec.build_config({}).metric == "macro_f1"
    default = _spec(tmp_path, "metric: accuracy")
    assert default.metric == "accuracy" and "metric" not in default.to_dict()["config"]
    with pytest.raises(ConfigError, match=r"m.yaml: metric: 'f1' is not one of accuracy, macro"):
        _spec(tmp_path, "metric: f1")
    with pytest.raises(ConfigError, match=r"space.metric: cannot be searched"):
        _spec(tmp_path, "space:\n  metric: {choices: [accuracy, macro_f1]}")


def test_the_trial_value_is_the_metric_and_the_dashboard_names_it(
    tmp_path: Path, trec_dir: Path
) -> None:
    spec = _spec(tmp_path, "metric: macro_f1")
    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = search.open_study(spec, url, heartbeat=False)
    assert study.metric_names == ["validation macro-F1"]
    study.optimize(Objective(spec, worker="w", data_dir=trec_dir, threads=1), n_trials=1)
    (trial,) = study.get_trials()
    f1s, accs = trial.user_attrs["valid_macro_f1"], trial.user_attrs["valid_acc"]
    assert len(f1s) == len(accs) == 2
    assert trial.value == max(f1s) and list(trial.intermediate_values.values()) == f1s
    plain = optuna.load_study(study_name="m", storage=url)
    assert plain.metric_names == ["validation macro-F1"]


def test_an_export_retrains_with_its_metric(tmp_path: Path) -> None:
    import json

    from hpsearch import config as config_mod

    cfg = tiny_cfg(metric="macro_f1")
    path = tmp_path / "best.json"
    exported = {"config": cfg.to_dict(), "metric": "validation macro-F1 (best epoch), maximized"}
    path.write_text(json.dumps(exported))
    assert config_mod.load(path) == cfg


def test_report_figures_name_the_studys_metric(tmp_path: Path) -> None:
    from hpsearch.results._study_data import StudyData

    def data(study: optuna.Study) -> StudyData:
        return StudyData(study, [], None, 0, [], None, [], [])  # type: ignore[arg-type]

    spec = _spec(tmp_path, "metric: macro_f1")
    made = search.open_study(spec, f"sqlite:///{tmp_path / 'm.db'}", heartbeat=False)
    assert data(made).metric == "validation macro-F1"
    before = optuna.create_study(direction="maximize")  # a study made before metric names
    assert data(before).metric == "validation accuracy"


def test_evaluation_scores_the_studys_metric() -> None:
    from hpsearch import results
    from hpsearch.results._evaluate import SeedRun

    runs = [
        SeedRun(0, 0.9, 0.8, 2, 3, 1.0, valid_f1=0.6, test_f1=0.5),
        SeedRun(1, 0.7, 0.6, 2, 3, 1.0, valid_f1=0.4, test_f1=0.3),
    ]
    by_f1 = results.Evaluation("m", 0, 0.6, {"metric": "macro_f1"}, runs)
    assert by_f1.valid.mean == pytest.approx(0.5) and by_f1.test is not None
    assert by_f1.test.mean == pytest.approx(0.4)
    assert by_f1.to_dict()["metric"] == "validation macro-F1"
    by_acc = results.Evaluation("m", 0, 0.9, {}, runs)
    assert by_acc.valid.mean == pytest.approx(0.8) and by_acc.to_dict()["test"]["mean"] == 0.7
