"""The figures of a study report: one PNG each (matplotlib, Agg) and one ``index.html``.

``index.html`` is self-contained: it embeds plotly.js once and holds every figure as an
interactive div, so the report opens offline and carries plotly.js (~5 MB) once rather than once
per figure. The figures: optimization history, parameter importances, the seed report's Figure 1
(mean validation accuracy per pair of parameter values), parallel coordinates and learning
curves. The numbers behind them come from ``_study_data``.
"""

from __future__ import annotations

import functools
import html
import math
import sys
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import files as outfile
from hpsearch.errors import UsageError
from hpsearch.results._format import format_value
from hpsearch.results._study_data import BINS, METRIC, StudyData, aggregate, state_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATE_STYLE: dict[TrialState, tuple[str, Any]] = {  # state -> (colour, line style)
    TrialState.COMPLETE: ("#1f77b4", "-"),
    TrialState.PRUNED: ("#ff7f0e", "--"),
    TrialState.FAIL: ("#d62728", ":"),
    TrialState.RUNNING: ("#7f7f7f", ":"),
}
# Optuna colours parallel coordinates by Blues, whose low end is near-white: the worst trial
# vanished on the white background. The same blues from this point of the scale on instead.
PARALLEL_FROM = 0.35
FIGURES = {  # file stem -> title
    "history": "Optimization history (complete trials)",
    "importances": "Parameter importances (PED-ANOVA, complete and pruned trials)",
    "pairs": "Mean validation accuracy per pair of parameter values",
    "parallel": "Parallel coordinates (complete trials)",
    "curves": "Learning curves",
}


def require_libraries() -> None:
    """Fail with the install hint before any work when a plotting library is missing."""
    _require("matplotlib")
    _require("plotly")


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


def write(data: StudyData, info: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every PNG and ``index.html`` (with ``info``, the report summary) to ``out_dir``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        paths = write_pngs(data, out_dir)
        figures = html_figures(data)
    page = out_dir / "index.html"
    outfile.write_text(page, _html_page(info, figures))
    return [*paths, page]


def _optuna_figures(data: StudyData) -> dict[str, tuple[str, dict[str, Any]]]:
    """stem -> (name of the Optuna plot function, its keyword arguments)."""
    figures: dict[str, tuple[str, dict[str, Any]]] = {"history": ("plot_optimization_history", {})}
    if data.importances is not None:
        figures["importances"] = ("plot_param_importances", {"params": list(data.importances)})
    if data.complete_params and data.n_complete > 1:
        figures["parallel"] = ("plot_parallel_coordinate", {"params": data.complete_params})
    return figures


def _source(data: StudyData, stem: str) -> optuna.Study:
    """Importances come from every scored trial (see report.load); the rest from the study."""
    return data.scored if stem == "importances" and data.scored is not None else data.study


def curves(data: StudyData) -> list[tuple[FrozenTrial, list[int], list[float]]]:
    """Every drawable learning curve, the best trial's last (on top)."""
    out = []
    for t in [t for t in data.trials if t.number != data.best.number] + [data.best]:
        if t.intermediate_values and t.state in STATE_STYLE:
            steps = sorted(t.intermediate_values)
            out.append((t, steps, [t.intermediate_values[s] for s in steps]))
    return out


# --- PNG (matplotlib) -------------------------------------------------------------------------


def png_optuna(data: StudyData, stem: str, function: str, kwargs: dict[str, Any]) -> Figure:
    import optuna.visualization.matplotlib as ovm

    plt = _pyplot()
    n = len(data.complete_params)
    size = {"importances": (9, 1.5 + 0.5 * n), "parallel": (max(9.0, 3 + 1.1 * n), 5.5)}
    # Optuna's plots switch the global style to ggplot; the context restores the caller's.
    with plt.style.context("default"):
        plt.rcParams.update({"figure.figsize": size.get(stem, (9, 5)), "figure.autolayout": True})
        with warnings.catch_warnings():  # matplotlib: a constant axis in parallel coordinates
            warnings.simplefilter("ignore", UserWarning)
            ax = getattr(ovm, function)(_source(data, stem), target_name=data.metric, **kwargs)
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(f"{data.name}: {FIGURES[stem]}", pad=14)
    if stem == "parallel":
        _visible_blues(ax)
    if stem == "importances":
        # Room for the value labels, placed by Optuna before the layout widened the axes.
        ax.set_xlim(right=ax.get_xlim()[1] * 1.08)
    return ax.figure


def _visible_blues(ax: Any) -> None:
    """Recolour Optuna's parallel-coordinate lines (and their colour bar) with blues that
    stay visible on white, in the direction Optuna chose."""
    import matplotlib
    from matplotlib.collections import LineCollection
    from matplotlib.colors import ListedColormap

    blues = matplotlib.colormaps["Blues"](np.linspace(PARALLEL_FROM, 1.0, 256))
    for collection in ax.collections:
        if isinstance(collection, LineCollection) and collection.get_array() is not None:
            reverse = collection.get_cmap().name.endswith("_r")
            collection.set_cmap(ListedColormap(blues[::-1] if reverse else blues))


def _visible_blues_html(figure: Any) -> None:
    """Recolour Optuna's parallel coordinates in plotly, where each trial is a line of its
    own: its colour is taken again from the visible blues at the same point of the scale (its
    first coordinate, the objective normalised to [0, 1], as Optuna coloured it), and the
    colour bar (a marker trace) gets the same scale."""
    import plotly.colors

    def blue(at: float) -> str:
        at = min(max(at, 0.0), 1.0)
        return str(
            plotly.colors.sample_colorscale("Blues", PARALLEL_FROM + (1 - PARALLEL_FROM) * at)[0]
        )

    bars = [t for t in figure.data if t.type == "scatter" and t.marker.showscale]
    reverse = any(t.marker.reversescale for t in bars)
    for trace in figure.data:
        if trace.type == "scatter" and trace.mode == "lines" and trace.y and trace.y[0] is not None:
            trace.line.color = blue(1.0 - trace.y[0] if reverse else trace.y[0])
    for trace in bars:
        trace.marker.colorscale = [[i / 8, blue(i / 8)] for i in range(9)]


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
        label = f"mean {data.metric}"
        ax.set(xlabel=axis.name, ylabel=label, title=f"{data.name}: {label}")
        ax.margins(y=0.15)  # room for the labels above the bars
        return fig
    pairs = data.pairs()
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(4.6 * ncols + 1, 4.0 * nrows + 0.8), layout="constrained")
    panels = fig.subplots(nrows, ncols, squeeze=False)
    means = np.concatenate([m[np.isfinite(m)] for *_, m, _ in pairs])
    vmin, vmax = means.min(), means.max()
    if vmax - vmin < 1e-6:  # one value everywhere: centre it in the colour scale
        vmin, vmax = vmin - 0.05, vmax + 0.05
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")  # grey: no trial
    for ax, (xa, ya, mean, count) in zip(panels.flat, pairs, strict=False):
        image = ax.imshow(mean.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        for (i, j), n in np.ndenumerate(count):
            if n:
                colour = "white" if mean[i, j] < (vmin + vmax) / 2 else "black"
                text = f"{mean[i, j]:.3f}\nn={n}"
                ax.text(i, j, text, ha="center", va="center", fontsize=7.5, color=colour)
        ax.set_xticks(range(len(xa.labels)), xa.labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(ya.labels)), ya.labels, fontsize=8)
        ax.set(xlabel=xa.name, ylabel=ya.name)
    for ax in panels.flat[len(pairs) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=panels, label=f"mean {data.metric}", shrink=0.8)
    title = (
        f"{data.name}: mean {data.metric} per pair of parameter values "
        f"(trials: {len(data.points)}; "
        "pruned ones count with their best epoch; n: trials in the cell)"
    )
    # Wrapped to the figure's width (~10 characters an inch at the default size): one pair
    # makes a figure too narrow for the title on one line, which constrained layout clips.
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 10)))
    return fig


def png_curves(data: StudyData) -> Figure:
    """Validation accuracy per epoch of every trial, coloured by state; the best one bold."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    seen = dict.fromkeys(STATE_STYLE, 0)
    for t, steps, values in curves(data):
        colour, style = STATE_STYLE[t.state]
        seen[t.state] += 1
        if t is data.best:
            ax.plot(steps, values, color="black", linewidth=2.2)
            continue
        ax.plot(steps, values, color=colour, linestyle=style, alpha=0.55, linewidth=1)
        if t.state == TrialState.PRUNED:
            ax.plot(steps[-1], values[-1], "x", color=colour, markersize=6)
    handles = [
        Line2D(
            [],
            [],
            color=colour,
            linestyle=style,
            label=f"{state_name(s)} ({seen[s]})",
            marker="x" if s == TrialState.PRUNED else None,
        )
        for s, (colour, style) in STATE_STYLE.items()
        if seen[s]
    ]
    best = data.best
    if best.intermediate_values:
        label = f"best: trial {best.number} ({best.value:.4f})"
        handles.append(Line2D([], [], color="black", linewidth=2.2, label=label))
    ax.legend(handles=handles, loc="lower right", title="trial state")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = f"{data.name}: learning curves (x: pruned here)"
    ax.set(xlabel="epoch", ylabel=data.metric, title=title)
    ax.grid(alpha=0.3)
    return fig


def write_pngs(data: StudyData, out_dir: Path) -> list[Path]:
    plt = _pyplot()
    figures = {stem: png_optuna(data, stem, *spec) for stem, spec in _optuna_figures(data).items()}
    if data.pair_axes:
        figures["pairs"] = png_pairs(data)
    figures["curves"] = png_curves(data)
    paths = []
    for stem in FIGURES:
        if stem in figures:
            paths.append(out_dir / f"{stem}.png")
            figure = figures[stem]
            # Atomically (``hpsearch.files``): an interrupted report leaves no half-written PNG.
            outfile.write_with(paths[-1], functools.partial(figure.savefig, dpi=110, format="png"))
            plt.close(figure)
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
            xaxis_title=data.pair_axes[0].name, yaxis_title=f"mean {data.metric}"
        )
    pairs = data.pairs()
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
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
    colorbar = {"title": {"text": f"mean {data.metric}"}}
    fig.update_layout(height=360 * nrows, coloraxis={"colorscale": "Viridis", "colorbar": colorbar})
    return fig


def html_curves(data: StudyData) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[str] = set()
    dashes = {"-": "solid", "--": "dash", ":": "dot"}
    for t, steps, values in curves(data):
        colour, style = STATE_STYLE[t.state]
        group = "best" if t is data.best else state_name(t.state)
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
            hovertemplate=f"trial {t.number} ({state_name(t.state)})<br>"
            "epoch %{x}: %{y:.4f}<extra></extra>",
        )
        shown.add(group)
    return fig.update_layout(
        xaxis_title="epoch", yaxis_title=data.metric, legend_title_text="trial state"
    )


def html_figures(data: StudyData) -> dict[str, Any]:
    import optuna.visualization as ov

    figures = {
        stem: getattr(ov, function)(_source(data, stem), target_name=data.metric, **kwargs)
        for stem, (function, kwargs) in _optuna_figures(data).items()
    }
    if "parallel" in figures:
        _visible_blues_html(figures["parallel"])
    if data.pair_axes:
        figures["pairs"] = html_pairs(data)
    figures["curves"] = html_curves(data)
    return {s: figures[s].update_layout(title_text=FIGURES[s]) for s in FIGURES if s in figures}


def _html_page(info: dict[str, Any], figures: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    esc = html.escape
    best = info["best"]
    metric = info.get("metric_name", METRIC)
    counts = ", ".join(f"{n} {s}" for s, n in info["counts"].items() if n and s != "total")
    rows = [
        ("trials", f"{info['counts']['total']} ({counts})"),
        ("best", f"trial {best['trial']}: {best['value']:.4f} {metric}"),
        ("best params", ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())),
        ("epochs trained", f"{info['epochs_trained']} in {info['training_seconds']:.0f} s"),
    ]
    evaluation = info.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("test"):  # None: no test set
        test, seeds = evaluation["test"], len(evaluation.get("seeds", []))
        retrained = f"trial {evaluation.get('trial')}, {seeds} seeds"
        rows.append(("test accuracy", f"{test['mean']:.4f} ± {test['std']:.4f} ({retrained})"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in info["notes"])
    toc = " · ".join(f'<a href="#{s}">{FIGURES[s]}</a>' for s in figures)
    captions = {"importances": info.get("importances_basis") or ""}
    sections = "".join(
        f'<h2 id="{stem}">{FIGURES[stem]}</h2><p><a href="{stem}.png">{stem}.png</a></p>\n'
        + (f"<p>{esc(caption)}</p>\n" if (caption := captions.get(stem)) else "")
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
<p>Figure 1 (pairs) counts pruned trials with the best {metric} they reached before they were
stopped; continuous parameters are cut into {BINS} equal bins (log-spaced for log-scale ones)
across the values tried, unless at most {BINS} values were tried: then each has its own cell.</p>
{sections}
</body></html>
"""
