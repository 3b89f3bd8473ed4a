"""What the commands show as they run: the live status of ``hpsearch run`` and its closing
table, and the epochs of ``hpsearch train``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpsearch.config import TrainConfig
from hpsearch.results import format_clock, format_params
from hpsearch.search import Progress, best_trial

if TYPE_CHECKING:
    from hpsearch.training import Dataset, EpochStats, TrainResult


def status(progress: Progress) -> Group:
    """One screen: trial counts, best so far, elapsed and ETA."""
    counts, budget = progress.counts, progress.budget
    elapsed = time.time() - progress.started
    eta = "-"
    if 0 < counts.done < budget:
        eta = format_clock(elapsed / counts.done * (budget - counts.done))
    elif counts.done >= budget:
        eta = "0:00"
    head = Text.assemble(
        (f"{progress.study.study_name} ", "bold"),
        f"finished {counts.done}/{budget}  ",
        (f"complete {counts.complete}  ", "green"),
        (f"pruned {counts.pruned}  ", "yellow"),
        (f"failed {counts.failed}  ", "red"),
        f"running {counts.running}  workers {progress.workers_alive}  ",
        f"elapsed {format_clock(elapsed)}  ETA {eta}",
    )
    best = best_trial(progress.study)
    line = (
        Text(f"best valid acc {best.value:.4f} (trial {best.number}): {format_params(best.params)}")
        if best is not None and best.value is not None
        else Text("best: no complete trial yet", style="dim")
    )
    return Group(head, line)


class RunConsoleView:
    """``hpsearch run`` on a console: notes and worker lines as they come, and a live status."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def worker_line(self, worker: str, line: str) -> None:
        text = Text.assemble((worker, "dim"), " ", line.removeprefix(worker + ": "))
        self.console.print(text, highlight=False, soft_wrap=True)

    def progress(self, progress: Progress) -> None:
        if self.live is None:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        self.live.update(status(progress))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            end_live(self.console)


def summary_table(study_name: str, top: Sequence[FrozenTrial], *, complete: int) -> Table:
    """The best complete trials, best first, out of ``complete``."""
    table = Table(title=f"{study_name}: top {len(top)} of {complete} complete")
    table.add_column("trial", justify="right")
    table.add_column("valid acc", justify="right")
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
        for col in ("epoch", "train loss", "train acc", "valid loss", "valid acc", "seconds"):
            self.table.add_column(col, justify="right")
        self.live: Live | None = None

    def data_ready(self, dataset: Dataset, found: int | None) -> None:
        if found is not None:
            self.console.print(
                f"{self.cfg.embeddings}: found {found:,} of {len(dataset.vocab):,} vocabulary "
                "words",
                markup=False,
            )
        self.live = Live(self.table, console=self.console, refresh_per_second=4)
        self.live.start()

    def epoch(self, s: EpochStats) -> None:
        self.table.add_row(
            f"{s.epoch}/{self.cfg.epochs}",
            f"{s.train_loss:.4f}",
            f"{s.train_acc:.4f}",
            f"{s.valid_loss:.4f}",
            f"{s.valid_acc:.4f}",
            f"{s.seconds:.2f}",
        )

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            end_live(self.console)
            self.live = None

    def result(self, result: TrainResult, save: Path | None) -> None:
        line = (
            f"best valid acc {result.best_valid_acc:.4f} at epoch {result.best_epoch} "
            f"({result.num_parameters:,} parameters, {result.seconds:.1f} s)"
        )
        if result.test_acc is not None:
            line += f"; test acc {result.test_acc:.4f} (best epoch's weights)"
        self.console.print(line, markup=False)
        if save is not None:
            self.console.print(f"saved checkpoint to {save}", markup=False, highlight=False)
