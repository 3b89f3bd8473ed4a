"""What the commands show as they run: the live status of ``hpsearch run`` and its closing
table, and the epochs of ``hpsearch train``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpsearch.cli._common import plain_console
from hpsearch.config import METRIC_NAMES, TrainConfig
from hpsearch.results import format_clock, format_params, format_value
from hpsearch.search import Eta, FinishedTrial, Progress, RunResult

if TYPE_CHECKING:
    from hpsearch.training import Dataset, EpochStats, TrainResult


# A log that no trial has ended in for this long (seconds) says where the search stands.
LOG_EVERY = 60.0


def eta_text(eta: Eta | None) -> str:
    """``ETA 12:30 ± 2:05``: from the first finished trial on, with its uncertainty."""
    if eta is None:
        return "ETA after the first trial"
    if eta.capped:
        return f"ETA {format_clock(eta.seconds)} (time budget)"
    return f"ETA {format_clock(eta.seconds)} ± {format_clock(eta.spread)}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def best_text(best: FrozenTrial | None) -> str:
    if best is None or best.value is None:
        return "best -"
    return f"best {best.value:.4f} (trial {best.number})"


def counts_text(p: Progress) -> str:
    c = p.counts
    return (
        f"finished {c.done}/{p.budget}  complete {c.complete}  pruned {c.pruned}  "
        f"failed {c.failed}  running {c.running}"
    )


def trial_head(t: FinishedTrial, p: Progress) -> str:
    """What a finished trial did: state, score, epochs and seconds."""
    return (
        f"[{format_clock(p.elapsed)}] trial {t.number} {t.state}  "
        f"{p.metric_name} {_score(t.value)}  epochs {t.epochs}/{p.epochs}  {t.seconds:.1f} s"
    )


def trial_line(t: FinishedTrial, p: Progress) -> str:
    """One finished trial, as a log line: what it did, then the best so far, progress and
    ETA (a log has no live view to read those from)."""
    parts = [trial_head(t, p), best_text(p.best), f"finished {p.counts.done}/{p.budget}"]
    parts.append(eta_text(p.eta))
    if t.error:
        parts.append(f"error: {t.error}")
    return "  ".join(parts)


def status_line(p: Progress) -> str:
    """Where the search stands, as a log line: counts, best, ETA and each running trial."""
    line = f"[{format_clock(p.elapsed)}] {counts_text(p)}  {best_text(p.best)}"
    if p.workers_alive:  # once they have all stopped, there is no time left to tell
        line += f"  {eta_text(p.eta)}"
    running = ", ".join(
        f"trial {r.number} epoch {r.epoch}/{p.epochs} {_score(r.value)}" for r in p.running
    )
    return f"{line}  ({running})" if running else line


def short_params(params: Mapping[str, Any]) -> str:
    """``lr=0.000873 dropout=0.0149``: 3 significant digits, for a table cell."""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={format_value(v)}"
        for k, v in params.items()
    )


def live_view(p: Progress) -> Group:
    """One screen: elapsed and ETA, the counts, the best trial, and a row per running trial."""
    c = p.counts
    head = Text.assemble((p.study_name, "bold"), f"  elapsed {format_clock(p.elapsed)}  ")
    if p.workers_alive:
        head.append(eta_text(p.eta), style="bold")
    counts = Text.assemble(
        f"finished {c.done}/{p.budget}  ",
        (f"complete {c.complete}", "green"), "  ",
        (f"pruned {c.pruned}", "yellow"), "  ",
        (f"failed {c.failed}", "red"),
        f"  running {c.running}  workers {p.workers_alive}",
    )  # fmt: skip
    best = Text(best_text(p.best))
    if p.best is not None:
        best.append(f"  {short_params(p.best.params)}", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("trial", justify="right")
    table.add_column("worker")
    table.add_column("epoch", justify="right")
    table.add_column(p.metric_name, justify="right")
    table.add_column("params", no_wrap=True, overflow="ellipsis")
    for r in p.running:
        epoch = f"{r.epoch}/{p.epochs}" if r.epoch else f"-/{p.epochs}"
        table.add_row(str(r.number), r.worker, epoch, _score(r.value), short_params(r.params))
    parts: list[Any] = [head, counts, best]
    if p.running:
        parts.append(table)
    return Group(*parts)


def _plain(console: Console, text: str) -> None:
    """A line as it is: no markup, no highlighting, never wrapped (a log is read by tools)."""
    console.print(Text(text), highlight=False, soft_wrap=True)


class RunConsoleView:
    """``hpsearch run`` in a terminal: notes, worker lines and finished trials scroll by above
    a live view redrawn once a second (a pseudo-terminal that nobody watches, as
    ``docker run -t`` gives, logs every redraw)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def note(self, text: str) -> None:
        _plain(self.console, text)

    def worker_line(self, worker: str, line: str) -> None:
        text = Text.assemble((worker, "dim"), " ", line.removeprefix(worker + ": "))
        self.console.print(text, highlight=False, soft_wrap=True)

    def progress(self, progress: Progress) -> None:
        for trial in progress.finished:  # the rest is in the live view below
            line = trial_head(trial, progress) + (f"  error: {trial.error}" if trial.error else "")
            self.console.print(Text(line, no_wrap=True, overflow="ellipsis"), highlight=False)
        if self.live is None:
            # Redrawn when the launcher polls (once a second), never by a timer of its own.
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        self.live.update(live_view(progress), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            end_live(self.console)


class RunLogView:
    """``hpsearch run`` into a pipe or a file (``| tee``, CI, ``docker compose logs``): plain
    lines only, one per finished trial, and where the search stands when no trial has ended
    for a while and at the end."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: Progress | None = None
        self.said_at = 0.0  # elapsed seconds at the last line about the trials

    def note(self, text: str) -> None:
        _plain(self.console, text)

    def worker_line(self, worker: str, line: str) -> None:
        _plain(self.console, f"{worker} {line.removeprefix(worker + ': ')}")

    def progress(self, progress: Progress) -> None:
        self.last = progress
        for trial in progress.finished:
            _plain(self.console, trial_line(trial, progress))
            self.said_at = progress.elapsed
        if progress.elapsed - self.said_at >= LOG_EVERY:
            _plain(self.console, status_line(progress))
            self.said_at = progress.elapsed

    def close(self) -> None:
        if self.last is not None:
            _plain(self.console, status_line(self.last))


def run_view(console: Console) -> RunConsoleView | RunLogView:
    """The live view in a terminal, plain log lines anywhere else."""
    return RunConsoleView(console) if console.is_terminal else RunLogView(console)


def show_result(console: Console, result: RunResult) -> None:
    """The best complete trials (none: no table), then any worker that failed."""
    if result.top:
        print_wide(
            console,
            summary_table(
                result.study_name,
                result.top,
                complete=result.counts.complete,
                metric_name=result.metric_name,
            ),
        )
    for line in result.failures:
        console.print(Text(line, style="red"), highlight=False, soft_wrap=True)


def print_wide(console: Console, table: Table) -> None:
    """A table in a terminal as it fits; in a pipe or a file at its natural width: rich would
    squeeze it into 80 columns, the width it assumes without a terminal, and wrap every cell."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    plain_console(file=console.file, width=max(console.width, natural)).print(table)


def summary_table(
    study_name: str, top: Sequence[FrozenTrial], *, complete: int, metric_name: str
) -> Table:
    """The best complete trials, best first, out of ``complete``; their values are
    ``metric_name``."""
    table = Table(title=f"{study_name}: top {len(top)} of {complete} complete")
    table.add_column("trial", justify="right")
    table.add_column(metric_name, justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("params")
    for t in top:
        table.add_row(
            str(t.number),
            f"{t.value:.4f}" if t.value is not None else "-",
            str(t.user_attrs.get("best_epoch", "-")),
            f"{t.user_attrs.get('seconds', 0):.1f}",
            Text(format_params(t.params)),
        )
    return table


def end_live(console: Console) -> None:
    """End the line a finished ``Live`` leaves open when output is not a terminal.

    Rich ends it on terminals only (Textualize/rich#4192): in a log file or CI output the next
    print would continue the final status line.
    """
    if not console.is_terminal:
        console.line()


class TrainView:
    """``hpsearch train`` as it runs: the vectors' coverage, then one row per epoch."""

    def __init__(self, cfg: TrainConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.table = Table(title="training", show_edge=False)
        self.f1 = cfg.metric == "macro_f1"
        columns = ["epoch", "train loss", "train acc", "valid loss", "valid acc", "seconds"]
        if self.f1:
            columns.insert(5, "valid F1")
        for col in columns:
            self.table.add_column(col, justify="right")
        self.live: Live | None = None

    def data_ready(self, dataset: Dataset, found: int | None) -> None:
        if found is not None:
            self.console.print(
                f"{self.cfg.embeddings}: found {found:,} of {len(dataset.vocab):,} vocabulary "
                "words",
                markup=False,
            )
        self.live = Live(self.table, console=self.console, refresh_per_second=1)
        self.live.start()

    def epoch(self, s: EpochStats) -> None:
        cells = [f"{s.epoch}/{self.cfg.epochs}", f"{s.train_loss:.4f}", f"{s.train_acc:.4f}"]
        cells += [f"{s.valid_loss:.4f}", f"{s.valid_acc:.4f}"]
        if self.f1:
            cells.append(f"{s.valid_f1:.4f}")
        self.table.add_row(*cells, f"{s.seconds:.2f}")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            end_live(self.console)
            self.live = None

    def result(self, result: TrainResult, save: Path | None) -> None:
        score = f"valid acc {result.best_valid_acc:.4f}"
        if self.f1:
            score = f"{METRIC_NAMES['macro_f1']} {result.best_valid_f1:.4f} ({score})"
        line = (
            f"best {score} at epoch {result.best_epoch} "
            f"({result.num_parameters:,} parameters, {result.seconds:.1f} s)"
        )
        if result.test_acc is not None:
            line += f"; test acc {result.test_acc:.4f}"
            if self.f1 and result.test_f1 is not None:
                line += f", test macro-F1 {result.test_f1:.4f}"
            line += " (best epoch's weights)"
        self.console.print(line, markup=False)
        if save is not None:
            self.console.print(f"saved checkpoint to {save}", markup=False, highlight=False)
