"""Reports on a synthetic study: trials made with ``create_trial``, no training."""

from __future__ import annotations

import html
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from hpsearch import storage
from hpsearch.cli import app
from hpsearch.errors import StudyError
from hpsearch.results import _export as export
from hpsearch.results import _reading as reading
from hpsearch.results import _report as report
from hpsearch.results import _study_data as study_data

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "optimizer": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
    "hidden_dim": IntDistribution(32, 512, log=True),
}


def synthetic_trial(rng: random.Random, number: int, epochs: int = 10) -> optuna.trial.FrozenTrial:
    """Accuracy peaks at lr 1e-3, falls with dropout; adam is best; bigger is a bit better."""
    params: dict[str, Any] = {
        "lr": 10 ** rng.uniform(-5, -1),
        "dropout": rng.uniform(0.0, 0.5),
        "optimizer": rng.choice(["sgd", "adam", "rmsprop"]),
        "hidden_dim": round(2 ** rng.uniform(5, 9)),
    }
    ceiling = (
        0.9
        - 0.06 * (math.log10(params["lr"]) + 3) ** 2
        - 0.15 * params["dropout"]
        + {"sgd": -0.08, "adam": 0.0, "rmsprop": -0.02}[params["optimizer"]]
        + 0.02 * math.log2(params["hidden_dim"] / 32) / 4
    )
    ceiling = min(max(ceiling, 0.2), 0.95)
    curve = {
        e: min(1.0, max(0.0, 0.2 + (ceiling - 0.2) * (1 - math.exp(-e / 2.5)) + rng.gauss(0, 0.01)))
        for e in range(1, epochs + 1)
    }
    pruned = ceiling < 0.75 and number >= 5
    if pruned:
        stop = rng.randint(2, 5)
        curve = {e: v for e, v in curve.items() if e <= stop}
    best_epoch = max(curve, key=curve.__getitem__)
    return create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
        value=None if pruned else curve[best_epoch],
        params=params,
        distributions=DISTRIBUTIONS,
        intermediate_values=curve,
        user_attrs={
            "config": {**params, "epochs": epochs},
            "best_epoch": best_epoch,
            "epochs_run": len(curve),
            "seconds": 1.5 * len(curve),
            "num_parameters": 1000 * params["hidden_dim"],
            "worker": "test-w1",
        },
    )


def make_study(url: str, name: str, n: int, *, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(
        study_name=name, storage=storage.open_storage(url, heartbeat=False), direction="maximize"
    )
    rng = random.Random(seed)
    for number in range(n):
        study.add_trial(synthetic_trial(rng, number))
    return study


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'report.db'}"


def test_write_report_writes_every_file(tmp_path: Path, url: str) -> None:
    make_study(url, "synthetic", 30)
    out = tmp_path / "out"
    paths = report.write_report("synthetic", url, out)
    stems = {"history", "importances", "pairs", "parallel", "curves"}
    assert {p.name for p in paths} == {f"{s}.png" for s in stems} | {"index.html", "summary.json"}
    for stem in stems:
        data = (out / f"{stem}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 20_000, stem  # a real plot: empty axes make ~11 KB
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "synthetic" in page
    assert "Plotly.newPlot" in page and "plotly.js v" in page  # plotly.js embedded: offline
    assert page.count('class="plotly-graph-div"') == len(stems)
    summary = json.loads((out / "summary.json").read_text())
    trials = optuna.load_study(study_name="synthetic", storage=url).trials
    assert summary["counts"]["total"] == 30
    assert summary["counts"]["pruned"] == sum(t.state == TrialState.PRUNED for t in trials)
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value or 0)
    assert summary["best"]["trial"] == best.number
    assert summary["best"]["value"] == pytest.approx(best.value)
    assert set(summary["importances"]) == set(DISTRIBUTIONS)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in paths}
    assert modes == dict.fromkeys(modes, oct(0o666 & ~umask))  # summary.json not private


def test_the_report_says_which_trials_its_importances_rank_on(tmp_path: Path, url: str) -> None:
    # optuna-dashboard ranked lr last and the report second, and nothing said why.
    study = make_study(url, "synthetic", 30)
    pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    report.write_report("synthetic", url, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    basis = summary["importances_basis"]
    assert basis.startswith(
        f"importances (PED-ANOVA) from {pruned + complete} trials: {complete} complete ones by "
        f"their value and {pruned} pruned ones by the best validation accuracy they reached"
    )
    assert "optuna-dashboard ranks on the complete trials only" in basis
    assert basis in summary["notes"]
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert page.count(html.escape(basis)) == 2  # in the notes, and under the figure


def test_report_with_one_complete_trial_skips_importances(tmp_path: Path, url: str) -> None:
    make_study(url, "tiny", 1)
    paths = report.write_report("tiny", url, tmp_path / "out")
    names = {p.name for p in paths}
    assert names == {"history.png", "pairs.png", "curves.png", "index.html", "summary.json"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["importances"] is None
    assert [n.split(":")[0] for n in summary["notes"]] == [
        "parameter importances skipped",
        "parallel coordinates skipped",
    ]


def test_report_of_study_without_complete_trials_is_a_clear_error(tmp_path: Path, url: str) -> None:
    study = optuna.create_study(
        study_name="none", storage=storage.open_storage(url, heartbeat=False), direction="maximize"
    )
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.3}))
    with pytest.raises(StudyError, match=r"'none' has no complete trial yet \(1 pruned"):
        report.write_report("none", url, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_aggregate_mean_per_cell() -> None:
    opt = study_data.make_axis("opt", DISTRIBUTIONS["optimizer"], ["sgd", "adam"])
    drop = study_data.make_axis("dropout", FloatDistribution(0.0, 0.5), [0.0, 0.5])
    assert opt.labels == ("sgd", "adam")  # choice order, unseen rmsprop left out
    assert drop.labels == ("0", "0.5")  # two values seen: one cell each
    points: list[tuple[dict[str, Any], float]] = [
        ({"opt": "sgd", "dropout": 0.0}, 0.6),
        ({"opt": "sgd", "dropout": 0.0}, 0.8),
        ({"opt": "adam", "dropout": 0.0}, 0.9),
        ({"opt": "adam", "dropout": 0.5}, 0.5),
        ({"opt": "adam"}, 0.1),  # conditional parameter absent: not in this pair
    ]
    mean, count = study_data.aggregate(points, [opt, drop])
    assert count.tolist() == [[2, 0], [1, 1]]
    assert mean[0, 0] == pytest.approx(0.7)
    assert math.isnan(mean[0, 1])
    assert mean[1].tolist() == pytest.approx([0.9, 0.5])
    mean1, count1 = study_data.aggregate(points, [opt])
    assert count1.tolist() == [2, 3]
    assert mean1.tolist() == pytest.approx([0.7, 0.5])


def test_log_param_is_binned_in_log_space() -> None:
    observed = [1e-5, 3e-5, 2e-4, 1e-3, 5e-3, 9e-2, 1e-1]
    axis = study_data.make_axis("lr", FloatDistribution(1e-5, 1e-1, log=True), observed, bins=4)
    assert axis.edges == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    assert axis.labels == ("1e-5–1e-4", "1e-4–0.001", "0.001–0.01", "0.01–0.1")
    assert [axis.cell(v) for v in observed] == [0, 0, 1, 2, 2, 3, 3]
    grid = np.linspace(0, 0.5, 11).tolist()
    linear = study_data.make_axis("dropout", FloatDistribution(0.0, 0.5), grid)
    assert linear.edges == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_pruned_trials_count_with_their_best_epoch() -> None:
    pruned = create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5, 2: 0.6, 3: 0.55})
    assert study_data.trial_score(pruned) == 0.6
    failed = create_trial(state=TrialState.FAIL)
    assert study_data.trial_score(failed) is None


def test_compare_without_evaluation_counts_trials(url: str) -> None:
    a = make_study(url, "a", 12, seed=1)
    make_study(url, "b", 5, seed=2)
    optuna.create_study(study_name="empty", storage=url, direction="maximize").add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={"epochs_run": 2, "seconds": 3.0})
    )
    rows = report.compare(["a", "b", "empty", "a"], url, evaluate=False)
    assert [r["study"] for r in rows] == ["a", "b", "empty"]
    trials = a.get_trials()
    ra = rows[0]
    assert ra["complete"] + ra["pruned"] == ra["trials"] == 12
    assert ra["pruned"] == sum(t.state == TrialState.PRUNED for t in trials)
    assert ra["epochs"] == sum(t.user_attrs["epochs_run"] for t in trials)
    assert ra["seconds"] == pytest.approx(1.5 * ra["epochs"])
    assert ra["best_value"] == max(t.value for t in trials if t.value is not None)
    assert ra["test_mean"] is None and ra["evaluation"] is None
    assert rows[2]["best_value"] is None and rows[2]["failed"] == 1 and rows[2]["epochs"] == 2
    report.render_compare(rows)  # renders with missing values


def test_compare_piped_prints_whole_cells(url: str) -> None:
    # Without a terminal rich assumes 80 columns and cut every cell of this 11-column table
    # ("regu…"); piped output now gets the table at its natural width.
    for name in ("regularization_long_name", "architecture_long_name"):
        make_study(url, name, 3, seed=1)
    result = CliRunner().invoke(
        app,
        ["compare", "regularization_long_name", "architecture_long_name", "--no-evaluate"],
        env={"HPSEARCH_STORAGE": url, "COLUMNS": ""},
    )
    assert result.exit_code == 0, result.output
    assert "regularization_long_name" in result.output
    assert "architecture_long_name" in result.output and "…" not in result.output


def test_compare_reuses_a_matching_stored_evaluation(url: str) -> None:
    study = make_study(url, "a", 8)
    best = reading.best_complete_trial(study)
    stored = {
        "trial": best.number,
        "seeds": [0, 1, 2],
        "valid": {"mean": 0.85, "std": 0.01},
        "test": {"mean": 0.88, "std": 0.02},
    }
    study.set_user_attr(export.EVALUATION_ATTR, stored)
    (row,) = report.compare(["a"], url, seeds=3)  # would retrain (and fail) if not reused
    assert row["evaluation"] == "stored"
    assert (row["test_mean"], row["test_std"], row["seeds"]) == (0.88, 0.02, 3)
    assert report._stored_evaluation(study, best, seeds=5) is None
    # --no-evaluate retrains nothing, but shows the stored evaluation (of any seed count)
    (row,) = report.compare(["a"], url, seeds=5, evaluate=False)
    assert (row["evaluation"], row["test_mean"], row["seeds"]) == ("stored", 0.88, 3)


def test_compare_unknown_study_fails_before_any_work(url: str) -> None:
    make_study(url, "a", 3)
    with pytest.raises(StudyError, match="no study 'b'"):
        report.compare(["a", "b"], url)


def test_compare_retrains_when_the_stored_evaluation_is_stale(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.results import _evaluate as evaluate

    study = make_study(url, "a", 8)
    best = reading.best_complete_trial(study)
    stale = {"trial": best.number + 1, "seeds": [0, 1, 2], "valid": {}, "test": {}}
    study.set_user_attr(export.EVALUATION_ATTR, stale)
    calls = []

    class FakeEvaluation:
        def to_dict(self) -> dict[str, object]:
            return {
                "trial": best.number,
                "seeds": [0, 1],
                "valid": {"mean": 0.8, "std": 0.0},
                "test": {"mean": 0.9, "std": 0.01},
            }

    def fake_evaluate(name: str, url_: str, **kwargs: object) -> FakeEvaluation:
        calls.append((name, url_, kwargs))
        return FakeEvaluation()

    monkeypatch.setattr(evaluate, "evaluate_study", fake_evaluate)
    (row,) = report.compare(["a"], url, seeds=2, data_dir=tmp_path)
    assert calls == [("a", url, {"seeds": 2, "data_dir": tmp_path})]
    assert row["evaluation"] == "new"
    assert (row["test_mean"], row["test_std"], row["seeds"]) == (0.9, 0.01, 2)


# --- found by a hostile-input pass (seventh session) -------------------------------------------


def test_few_values_get_labels_that_tell_them_apart() -> None:
    axis = study_data.make_axis("dropout", FloatDistribution(0.0, 0.5), [0.2087, 0.2096, 0.1])
    assert axis.labels == ("0.1", "0.209", "0.21")  # not 0.21 twice


def test_bins_span_the_values_tried_outside_a_narrowed_range() -> None:
    # The range narrowed to [5e-3, 1e-2] on a forced resume; earlier trials tried 7e-4 and
    # 1.3e-3, which used to land in a bin labelled "0.005-0.0057".
    observed = [7e-4, 1.3e-3, 5.5e-3, 6e-3, 7e-3, 8e-3, 9e-3]
    axis = study_data.make_axis("lr", FloatDistribution(5e-3, 1e-2, log=True), observed, bins=5)
    assert axis.edges is not None and axis.edges[0] == pytest.approx(7e-4)
    first = axis.labels[axis.cell(7e-4)]
    assert first.startswith("7e-4–")


def test_values_that_are_no_accuracy_do_not_score() -> None:
    pruned = create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5, 2: math.nan})
    assert study_data.trial_score(pruned) == 0.5
    assert (
        study_data.trial_score(create_trial(state=TrialState.PRUNED, intermediate_values={}))
        is None
    )


def test_a_second_report_in_a_directory_leaves_none_of_the_firsts_figures(
    tmp_path: Path, url: str
) -> None:
    make_study(url, "many", 30)
    make_study(url, "one", 1)
    out = tmp_path / "out"
    report.write_report("many", url, out)
    paths = report.write_report("one", url, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert not (out / "importances.png").exists()


def test_an_unwritable_report_file_is_one_line_before_any_is_written(
    tmp_path: Path, url: str
) -> None:
    make_study(url, "synthetic", 5)
    out = tmp_path / "out"
    (out / "index.html").mkdir(parents=True)
    result = CliRunner().invoke(
        app, ["report", "--study", "synthetic", "--storage", url, "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "index.html: is a directory" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]  # no PNG written


def test_a_study_name_that_is_no_file_name_needs_an_output(tmp_path: Path, url: str) -> None:
    make_study(url, "../escape", 3)
    for args in (["report"], ["export", "-f", "csv"]):
        result = CliRunner().invoke(app, [*args, "--study", "../escape", "--storage", url])
        assert result.exit_code == 2, result.output
        assert "study '../escape': its name is no file name; give --output" in result.stderr


def test_compare_reads_every_best_config_before_retraining(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.results import _evaluate as evaluate

    make_study(url, "a", 5)
    study = optuna.create_study(
        study_name="b", storage=storage.open_storage(url, heartbeat=False), direction="maximize"
    )
    study.add_trial(create_trial(value=0.5))  # no recorded config
    retrained = []
    monkeypatch.setattr(evaluate, "evaluate_study", lambda *a, **k: retrained.append(a))
    with pytest.raises(StudyError, match="study 'b': trial 0 has no recorded config"):
        report.compare(["a", "b"], url, seeds=1)
    assert retrained == []  # study a was not retrained first


def _luminance(rgb: tuple[float, float, float]) -> float:
    red, green, blue = rgb
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_no_parallel_coordinate_line_is_near_white(url: str) -> None:
    # The worst trial was drawn in Blues' near-white end, invisible on the white background.
    import matplotlib.pyplot as plt
    import plotly.colors
    from matplotlib.collections import LineCollection

    from hpsearch.results import _figures as figures

    make_study(url, "synthetic", 30)
    data = study_data.load("synthetic", url)
    figure = figures.png_optuna(data, "parallel", "plot_parallel_coordinate", {})
    lines = [c for ax in figure.axes for c in ax.collections if isinstance(c, LineCollection)]
    colours = [rgba[:3] for c in lines if c.get_array() is not None for rgba in c.get_colors()]
    plt.close(figure)
    assert colours and max(_luminance(c) for c in colours) < 0.8
    traces = figures.html_figures(data)["parallel"].data
    colours = [t.line.color for t in traces if t.mode == "lines"]
    scales = [t.marker.colorscale for t in traces if t.marker.showscale]
    colours += [colour for scale in scales for _, colour in scale]
    assert len(colours) > 9 + 10 and len(scales) == 1
    rgbs = [plotly.colors.unlabel_rgb(c) for c in colours]
    assert max(_luminance(tuple(v / 255 for v in rgb)) for rgb in rgbs) < 0.8
