"""Reports on finished studies: figures for one study, and a table comparing several.

``write_report`` writes one PNG per figure (matplotlib, Agg) and a single self-contained
``index.html`` that embeds plotly.js once and holds every figure as an interactive div, so the
report opens offline and carries plotly.js (~5 MB) once rather than once per figure;
``summary.json`` has the numbers. The figures: optimization history, parameter importances,
the seed report's Figure 1 (mean validation accuracy per pair of parameter values), parallel
coordinates and learning curves.

Figure 1 counts PRUNED trials too, with the best validation accuracy they reached before they
were stopped. Leaving them out would hide exactly the regions the pruner found bad and make
every cell look as good as its survivors; their score is a slight underestimate (fewer epochs),
which errs the same way the pruner did.
"""

from __future__ import annotations

import html
import itertools
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from hpsearch import export
from hpsearch import storage as storage_mod
from hpsearch.errors import UsageError
from hpsearch.workers import SPEC_ATTR

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRIC = "validation accuracy"
BINS = 5  # per continuous parameter: enough to see a trend, few enough to fill with ~30 trials
MAX_DISCRETE = 8  # an int/stepped parameter with at most this many values keeps one cell each
MAX_PAIR_PARAMS = 6  # 15 heatmaps; beyond that, only the most important parameters
STATE_STYLE: dict[TrialState, tuple[str, Any]] = {  # state -> (colour, line style)
    TrialState.COMPLETE: ("#1f77b4", "-"),
    TrialState.PRUNED: ("#ff7f0e", "--"),
    TrialState.FAIL: ("#d62728", ":"),
    TrialState.RUNNING: ("#7f7f7f", ":"),
}
FIGURES = {  # file stem -> title
    "history": "Optimization history",
    "importances": "Parameter importances",
    "pairs": "Mean validation accuracy per pair of parameter values",
    "parallel": "Parallel coordinates",
    "curves": "Learning curves",
}


# --- Figure 1: aggregation ------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """How one parameter's values map to heatmap cells: one per value, or numeric bins."""

    name: str
    labels: tuple[str, ...]
    values: tuple[Any, ...] = ()  # one cell per value when ``edges`` is None
    edges: tuple[float, ...] | None = None  # bin edges (len(labels) + 1)

    def cell(self, value: Any) -> int:
        if self.edges is None:
            return self.values.index(value)
        # Clipped: a value outside the range (a spec edited with --force) joins the edge bin.
        inner = np.asarray(self.edges[1:-1])
        return int(np.searchsorted(inner, float(value), side="right"))


def _num(x: float) -> str:
    """Short tick text: 0.25, 0.0025, 290, 6.3e-5."""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2g}"
    mantissa, exp = f"{x:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def make_axis(
    name: str, distribution: BaseDistribution, observed: Sequence[Any], *, bins: int = BINS
) -> Axis:
    """Categorical and few-valued parameters: one cell per value seen; others: ``bins`` bins
    of equal width (log-spaced for log-scale parameters) across the searched range."""
    if isinstance(distribution, CategoricalDistribution):
        values = tuple(c for c in distribution.choices if c in observed)
        return Axis(name, tuple(str(v) for v in values), values=values)
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    seen = sorted(set(observed))
    low, high = float(distribution.low), float(distribution.high)
    step = distribution.step
    finite_values = step is not None and (high - low) / step + 1 <= MAX_DISCRETE
    if finite_values or len(seen) <= bins or low == high:
        return Axis(name, tuple(_num(v) for v in seen), values=tuple(seen))
    if distribution.log:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high, bins + 1)
    labels = tuple(f"{_num(a)}–{_num(b)}" for a, b in itertools.pairwise(edges))
    return Axis(name, labels, edges=tuple(float(e) for e in edges))


def trial_score(trial: FrozenTrial) -> float | None:
    """COMPLETE: its value; PRUNED: the best validation accuracy it reached; else None."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return max(trial.intermediate_values.values())
    return None


def aggregate(
    points: Sequence[tuple[dict[str, Any], float]], axes: Sequence[Axis]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and trial count per cell, shape ``[len(a.labels) for a in axes]``; the mean
    is NaN where no trial fell. Points missing one of the parameters are skipped."""
    shape = tuple(len(a.labels) for a in axes)
    total, count = np.zeros(shape), np.zeros(shape, dtype=int)
    for params, score in points:
        if all(a.name in params for a in axes):
            index = tuple(a.cell(params[a.name]) for a in axes)
            total[index] += score
            count[index] += 1
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def searched_params(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameters with more than one possible value, in study-file order where known."""
    spec = study.user_attrs.get(SPEC_ATTR)
    order = list(spec.get("space", {})) if isinstance(spec, dict) else []
    for t in trials:
        order += [p for p in t.params if p not in order]
    present = {p: d for t in trials for p, d in t.distributions.items()}
    return [p for p in order if p in present and not present[p].single()]


def study_axes(
    trials: Sequence[FrozenTrial], params: Sequence[str], *, bins: int = BINS
) -> list[Axis]:
    axes = []
    for name in params:
        having = [t for t in trials if name in t.params]
        dist = having[-1].distributions[name]  # the latest, in case the spec was edited
        axes.append(make_axis(name, dist, [t.params[name] for t in having], bins=bins))
    return axes


# --- the study's numbers ----------------------------------------------------------------------


@dataclass
class StudyData:
    study: optuna.Study
    trials: list[FrozenTrial]
    best: FrozenTrial
    n_complete: int
    params: list[str]  # searched
    importances: dict[str, float] | None
    pair_axes: list[Axis]  # Figure 1's parameters
    notes: list[str]

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def points(self) -> list[tuple[dict[str, Any], float]]:
        scored = ((t.params, trial_score(t)) for t in self.trials)
        return [(p, s) for p, s in scored if s is not None]

    def pairs(self) -> list[tuple[Axis, Axis, np.ndarray, np.ndarray]]:
        points = self.points
        return [
            (x, y, *aggregate(points, (x, y))) for x, y in itertools.combinations(self.pair_axes, 2)
        ]

    def curves(self) -> list[tuple[FrozenTrial, list[int], list[float]]]:
        """Every drawable learning curve, the best trial's last (on top)."""
        curves = []
        for t in [t for t in self.trials if t.number != self.best.number] + [self.best]:
            if t.intermediate_values and t.state in STATE_STYLE:
                steps = sorted(t.intermediate_values)
                curves.append((t, steps, [t.intermediate_values[s] for s in steps]))
        return curves


def load(study_name: str, url: str, *, bins: int = BINS) -> StudyData:
    study = export.load_study_for_reading(study_name, url)
    best = export.best_complete_trial(study)  # StudyError when nothing completed
    trials = study.get_trials(deepcopy=False)
    params = searched_params(study, trials)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    notes = [] if n_complete > 1 else ["parallel coordinates skipped: one complete trial"]
    importances = None
    if n_complete < 2 or len(params) < 2:
        why = f"{n_complete} complete trial(s)" if n_complete < 2 else "one searched parameter"
        notes.insert(0, f"parameter importances skipped: {why} (needs 2 or more of each)")
    else:
        importances = optuna.importance.get_param_importances(study, params=params)
    pair_params = params
    if len(params) > MAX_PAIR_PARAMS:
        top = list(importances or params)[:MAX_PAIR_PARAMS]
        pair_params = [p for p in params if p in top]
        notes.append(f"Figure 1 shows only the {MAX_PAIR_PARAMS} most important parameters")
    axes = study_axes(trials, pair_params, bins=bins)
    return StudyData(study, trials, best, n_complete, params, importances, axes, notes)


def counts_by_state(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    counts = {_state_name(s): 0 for s in TrialState}
    for t in trials:
        counts[_state_name(t.state)] += 1
    return counts


def _state_name(state: TrialState) -> str:
    return "failed" if state == TrialState.FAIL else state.name.lower()


def _total(trials: Sequence[FrozenTrial], attr: str) -> float:
    return sum(float(t.user_attrs.get(attr) or 0) for t in trials)


def _optuna_figures(data: StudyData) -> dict[str, tuple[str, dict[str, Any]]]:
    """stem -> (name of the Optuna plot function, its keyword arguments)."""
    figures: dict[str, tuple[str, dict[str, Any]]] = {"history": ("plot_optimization_history", {})}
    if data.importances is not None:
        figures["importances"] = ("plot_param_importances", {"params": data.params})
    if data.params and data.n_complete > 1:
        figures["parallel"] = ("plot_parallel_coordinate", {"params": data.params})
    return figures


# --- PNG (matplotlib) -------------------------------------------------------------------------


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UsageError(
            f"hpsearch report needs {module}: pip install 'hpsearch[report]'"
        ) from None


def _pyplot() -> Any:
    matplotlib = _require("matplotlib")
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def png_optuna(data: StudyData, stem: str, function: str, kwargs: dict[str, Any]) -> Figure:
    import optuna.visualization.matplotlib as ovm

    plt = _pyplot()
    n = len(data.params)
    size = {"importances": (9, 1.5 + 0.5 * n), "parallel": (max(9.0, 3 + 1.1 * n), 5.5)}
    # Optuna's plots switch the global style to ggplot; the context restores the caller's.
    with plt.style.context("default"):
        plt.rcParams.update({"figure.figsize": size.get(stem, (9, 5)), "figure.autolayout": True})
        ax = getattr(ovm, function)(data.study, target_name=METRIC, **kwargs)
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(f"{data.name}: {FIGURES[stem].lower()}", pad=14)
    if stem == "importances":
        # Room for the value labels, placed by Optuna before the layout widened the axes.
        ax.set_xlim(right=ax.get_xlim()[1] * 1.08)
    return ax.figure


def png_pairs(data: StudyData) -> Figure:
    """The seed report's Figure 1: one annotated heatmap per pair of searched parameters;
    with a single parameter, a bar per value."""
    import matplotlib
    from matplotlib.figure import Figure

    if len(data.pair_axes) == 1:
        (axis,) = data.pair_axes
        mean, count = aggregate(data.points, data.pair_axes)
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(len(axis.labels))
        ax.bar(x, np.nan_to_num(mean))
        for i in x[count > 0]:
            ax.annotate(f"{mean[i]:.3f}\nn={count[i]}", (i, mean[i]), ha="center", va="bottom")
        ax.set_xticks(x, axis.labels, rotation=30, ha="right")
        ax.set(xlabel=axis.name, ylabel=f"mean {METRIC}", title=f"{data.name}: mean {METRIC}")
        ax.margins(y=0.15)  # room for the labels above the bars
        return fig
    pairs = data.pairs()
    ncols = min(3, max(len(pairs), 1))
    nrows = max(math.ceil(len(pairs) / ncols), 1)
    fig = Figure(figsize=(4.6 * ncols + 1, 4.0 * nrows + 0.8), layout="constrained")
    panels = fig.subplots(nrows, ncols, squeeze=False)
    means = np.concatenate([m[np.isfinite(m)] for *_, m, _ in pairs] or [np.array([0.0, 1.0])])
    vmin, vmax = means.min(), means.max()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")  # grey: no trial
    for ax, (xa, ya, mean, count) in zip(panels.flat, pairs, strict=False):
        image = ax.imshow(mean.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        for (i, j), n in np.ndenumerate(count):
            if n:
                dark = mean[i, j] < (vmin + vmax) / 2
                text = f"{mean[i, j]:.3f}\nn={n}"
                ax.text(
                    i,
                    j,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(xa.labels)), xa.labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(ya.labels)), ya.labels, fontsize=8)
        ax.set(xlabel=xa.name, ylabel=ya.name)
    for ax in panels.flat[len(pairs) :]:
        ax.set_visible(False)
    if pairs:
        fig.colorbar(image, ax=panels, label=f"mean {METRIC}", shrink=0.8)
    else:
        panels[0, 0].set_visible(True)
        panels[0, 0].text(0.5, 0.5, "no searched parameters", ha="center")
    fig.suptitle(
        f"{data.name}: mean {METRIC} per pair of parameter values ({len(data.points)} trials; "
        "pruned ones count with their best epoch; n = trials per cell)"
    )
    return fig


def png_curves(data: StudyData) -> Figure:
    """Validation accuracy per epoch of every trial, coloured by state; the best one bold."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    seen = dict.fromkeys(STATE_STYLE, 0)
    for t, steps, values in data.curves():
        colour, style = STATE_STYLE[t.state]
        if t is data.best:
            ax.plot(steps, values, color="black", linewidth=2.2)
            continue
        seen[t.state] += 1
        ax.plot(steps, values, color=colour, linestyle=style, alpha=0.55, linewidth=1)
        if t.state == TrialState.PRUNED:
            ax.plot(steps[-1], values[-1], "x", color=colour, markersize=6)
    seen[TrialState.COMPLETE] += 1
    handles = [
        Line2D(
            [],
            [],
            color=colour,
            linestyle=style,
            label=f"{_state_name(s)} ({seen[s]})",
            marker="x" if s == TrialState.PRUNED else None,
        )
        for s, (colour, style) in STATE_STYLE.items()
        if seen[s]
    ]
    best = data.best
    label = f"best: trial {best.number} ({best.value:.4f})"
    handles.append(Line2D([], [], color="black", linewidth=2.2, label=label))
    ax.legend(handles=handles, loc="lower right", title="trial state")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=METRIC, title=f"{data.name}: learning curves (x: pruned here)")
    ax.grid(alpha=0.3)
    return fig


def write_pngs(data: StudyData, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    figures = {stem: png_optuna(data, stem, *spec) for stem, spec in _optuna_figures(data).items()}
    figures |= {"pairs": png_pairs(data), "curves": png_curves(data)}
    paths = []
    for stem in FIGURES:
        if stem in figures:
            paths.append(out_dir / f"{stem}.png")
            figures[stem].savefig(paths[-1], dpi=110)
            plt.close(figures[stem])
    return paths


# --- HTML (plotly) ----------------------------------------------------------------------------


def html_pairs(data: StudyData) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def text(mean: np.ndarray, count: np.ndarray) -> np.ndarray:
        cells = np.vectorize(lambda m, n: f"{m:.3f}<br>n={n}" if n else "", otypes=[object])
        return cells(mean, count)

    if len(data.pair_axes) == 1:
        mean, count = aggregate(data.points, data.pair_axes)
        bar = go.Bar(
            x=data.pair_axes[0].labels, y=np.nan_to_num(mean), text=text(mean, count).tolist()
        )
        return go.Figure(bar).update_layout(
            xaxis_title=data.pair_axes[0].name, yaxis_title=f"mean {METRIC}"
        )
    pairs = data.pairs()
    ncols = min(3, max(len(pairs), 1))
    nrows = max(math.ceil(len(pairs) / ncols), 1)
    fig = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.08, vertical_spacing=0.14)
    for k, (xa, ya, mean, count) in enumerate(pairs):
        heatmap = go.Heatmap(
            z=mean.T,  # NaN (no trial) is written as null: an empty cell
            x=xa.labels,
            y=ya.labels,
            text=text(mean, count).T.tolist(),
            texttemplate="%{text}",
            coloraxis="coloraxis",
            hovertemplate=f"{xa.name}=%{{x}}<br>{ya.name}=%{{y}}<br>%{{text}}<extra></extra>",
        )
        row, col = k // ncols + 1, k % ncols + 1
        fig.add_trace(heatmap, row=row, col=col)
        fig.update_xaxes(title_text=xa.name, type="category", row=row, col=col)
        fig.update_yaxes(title_text=ya.name, type="category", row=row, col=col)
    colorbar = {"title": {"text": f"mean {METRIC}"}}
    fig.update_layout(height=360 * nrows, coloraxis={"colorscale": "Viridis", "colorbar": colorbar})
    return fig


def html_curves(data: StudyData) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    dashes = {"-": "solid", "--": "dash", ":": "dot"}
    for t, steps, values in data.curves():
        colour, style = STATE_STYLE[t.state]
        group = "best" if t is data.best else _state_name(t.state)
        line = {"color": colour, "width": 1, "dash": dashes[style]}
        if t is data.best:
            line = {"color": "black", "width": 3}
        fig.add_scatter(
            x=steps,
            y=values,
            mode="lines",
            line=line,
            opacity=1.0 if t is data.best else 0.6,
            name=f"best: trial {t.number}" if t is data.best else group,
            legendgroup=group,
            showlegend=group not in shown,
            hovertemplate=f"trial {t.number} ({_state_name(t.state)})<br>"
            "epoch %{x}: %{y:.4f}<extra></extra>",
        )
        shown.add(group)
    return fig.update_layout(
        xaxis_title="epoch", yaxis_title=METRIC, legend_title_text="trial state"
    )


def html_figures(data: StudyData) -> dict[str, Any]:
    import optuna.visualization as ov

    figures = {
        stem: getattr(ov, function)(data.study, target_name=METRIC, **kwargs)
        for stem, (function, kwargs) in _optuna_figures(data).items()
    }
    figures |= {"pairs": html_pairs(data), "curves": html_curves(data)}
    return {s: figures[s].update_layout(title_text=FIGURES[s]) for s in FIGURES if s in figures}


def _html_page(info: dict[str, Any], figures: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    esc = html.escape
    best = info["best"]
    counts = ", ".join(f"{n} {s}" for s, n in info["counts"].items() if n and s != "total")
    rows = [
        ("trials", f"{info['counts']['total']} ({counts})"),
        ("best", f"trial {best['trial']}: {best['value']:.4f} {METRIC}"),
        ("best params", ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())),
        ("epochs trained", f"{info['epochs_trained']} in {info['training_seconds']:.0f} s"),
    ]
    evaluation = info.get("evaluation")
    if isinstance(evaluation, dict) and "test" in evaluation:
        test, seeds = evaluation["test"], len(evaluation.get("seeds", []))
        retrained = f"trial {evaluation.get('trial')}, {seeds} seeds"
        rows.append(("test accuracy", f"{test['mean']:.4f} ± {test['std']:.4f} ({retrained})"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in info["notes"])
    toc = " · ".join(f'<a href="#{s}">{FIGURES[s]}</a>' for s in figures)
    sections = "".join(
        f'<h2 id="{stem}">{FIGURES[stem]}</h2><p><a href="{stem}.png">{stem}.png</a></p>\n'
        + fig.to_html(full_html=False, include_plotlyjs=False, default_height="520px")
        for stem, fig in figures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hpsearch report: {esc(info["study"])}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}}
th{{text-align:left;padding-right:1em}}</style></head>
<body><h1>hpsearch report: {esc(info["study"])}</h1>
<table>{table}</table><ul>{notes}</ul>
<p>{toc} · <a href="summary.json">summary.json</a></p>
<p>Figure 1 (pairs) counts pruned trials with the best {METRIC} they reached before they were
stopped; continuous parameters are cut into {BINS} equal bins (log-spaced for log-scale ones).</p>
{sections}
</body></html>
"""


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- the report -------------------------------------------------------------------------------


def summary(data: StudyData, url: str) -> dict[str, Any]:
    best, trials = data.best, data.trials
    return {
        "study": data.name,
        "storage": storage_mod.mask_url(url),
        "metric": f"{METRIC} (best epoch), maximized",
        "counts": {**counts_by_state(trials), "total": len(trials)},
        "best": {
            "trial": best.number,
            "value": best.value,
            "params": dict(best.params),
            "best_epoch": best.user_attrs.get("best_epoch"),
            "epochs_run": best.user_attrs.get("epochs_run"),
        },
        "searched_params": data.params,
        "importances": data.importances,
        "epochs_trained": int(_total(trials, "epochs_run")),
        "training_seconds": round(_total(trials, "seconds"), 3),
        "evaluation": data.study.user_attrs.get(export.EVALUATION_ATTR),
        "notes": data.notes,
    }


def write_report(study_name: str, url: str, out_dir: Path) -> list[Path]:
    """Write the PNGs, ``index.html`` and ``summary.json`` of one study; return their paths."""
    _require("matplotlib")
    _require("plotly")
    data = load(study_name, url)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the report directory: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        paths = write_pngs(data, out_dir)
        figures = html_figures(data)
    info = summary(data, url)
    page = out_dir / "index.html"
    page.write_text(_html_page(info, figures), encoding="utf-8")
    export.write_json(info, out_dir / "summary.json")
    return [*paths, page, out_dir / "summary.json"]


# --- comparing studies ------------------------------------------------------------------------


def _stored_evaluation(study: optuna.Study, best: FrozenTrial, seeds: int) -> dict[str, Any] | None:
    """The stored evaluation if it retrained this best trial with as many seeds, else None."""
    stored = study.user_attrs.get(export.EVALUATION_ATTR)
    if not isinstance(stored, dict) or stored.get("trial") != best.number:
        return None
    return stored if len(stored.get("seeds") or []) == seeds else None


def compare(
    study_names: Sequence[str],
    url: str,
    *,
    seeds: int = 3,
    evaluate: bool = True,
    data_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per study: best validation accuracy, test accuracy over ``seeds`` retrainings
    (reusing a stored evaluation of the same best trial and seed count), trials by state,
    epochs and seconds trained. A study without a complete trial gets a row without scores."""
    # Every study is opened before any retraining, so a typo fails in seconds, not hours.
    studies = [export.load_study_for_reading(n, url) for n in dict.fromkeys(study_names)]
    rows = []
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        best = None
        if any(t.state == TrialState.COMPLETE for t in trials):
            best = export.best_complete_trial(study)
        row: dict[str, Any] = {
            "study": study.study_name,
            "best_value": best.value if best else None,
            "best_trial": best.number if best else None,
            **counts_by_state(trials),
            "trials": len(trials),
            "epochs": int(_total(trials, "epochs_run")),
            "seconds": round(_total(trials, "seconds"), 3),
            **dict.fromkeys(("valid_mean", "valid_std", "test_mean", "test_std", "seeds")),
            "evaluation": None,  # "stored" (reused) or "new" (retrained now)
        }
        if evaluate and best is not None:
            stored = _stored_evaluation(study, best, seeds)
            row["evaluation"] = "stored" if stored else "new"
            if stored is None:
                from hpsearch import evaluate as evaluate_mod

                result = evaluate_mod.evaluate_study(
                    study.study_name, url, seeds=seeds, data_dir=data_dir
                )
                stored = result.to_dict()
            valid, test = stored["valid"], stored["test"]
            row.update(
                valid_mean=valid["mean"],
                valid_std=valid["std"],
                test_mean=test["mean"],
                test_std=test["std"],
                seeds=len(stored["seeds"]),
            )
        rows.append(row)
    return rows


def _pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _bold_if(condition: bool, text: str) -> str:
    return f"[bold]{text}[/bold]" if condition else text


def render_compare(rows: Sequence[dict[str, Any]]) -> Table:
    """The rows of ``compare`` as a table; the best validation and test values in bold."""
    table = Table(title="studies compared (accuracy; test: best trial retrained, mean ± std)")
    columns = "best valid,trial,retrained valid,test,seeds,complete,pruned,failed,epochs,time"
    table.add_column("study")
    for column in columns.split(","):
        table.add_column(column, justify="right")
    top = {
        key: max((r[key] for r in rows if r[key] is not None), default=None)
        for key in ("best_value", "test_mean")
    }

    for r in rows:
        valid = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        test = _pm(r["test_mean"], r["test_std"])
        table.add_row(
            r["study"],
            _bold_if(r["best_value"] is not None and r["best_value"] == top["best_value"], valid),
            "-" if r["best_trial"] is None else str(r["best_trial"]),
            _pm(r["valid_mean"], r["valid_std"]),
            _bold_if(r["test_mean"] is not None and r["test_mean"] == top["test_mean"], test),
            "-" if r["seeds"] is None else str(r["seeds"]),
            *(str(r[k]) for k in ("complete", "pruned", "failed", "epochs")),
            _duration(r["seconds"]),
        )
    return table
