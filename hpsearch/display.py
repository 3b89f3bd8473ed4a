"""Rich renderings of a study: the live status of a run and the final summary table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpsearch.config import TrainConfig
from hpsearch.workers import Counts

if TYPE_CHECKING:
    from hpsearch.train import TrainResult


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in params.items())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status(
    study: optuna.Study,
    counts: Counts,
    *,
    budget: int,
    started: float,
    workers_alive: int,
) -> Group:
    """One screen: trial counts, best so far, elapsed and ETA."""
    elapsed = time.time() - started
    eta = "-"
    if 0 < counts.done < budget:
        eta = _duration(elapsed / counts.done * (budget - counts.done))
    elif counts.done >= budget:
        eta = "0:00"
    head = Text.assemble(
        (f"{study.study_name} ", "bold"),
        f"finished {counts.done}/{budget}  ",
        (f"complete {counts.complete}  ", "green"),
        (f"pruned {counts.pruned}  ", "yellow"),
        (f"failed {counts.failed}  ", "red"),
        f"running {counts.running}  workers {workers_alive}  ",
        f"elapsed {_duration(elapsed)}  ETA {eta}",
    )
    best = best_trial(study)
    line = (
        Text(f"best valid acc {best.value:.4f} (trial {best.number}): {format_params(best.params)}")
        if best is not None and best.value is not None
        else Text("best: no complete trial yet", style="dim")
    )
    return Group(head, line)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value or 0.0) if complete else None


def summary(study: optuna.Study, *, top: int = 10) -> Table:
    """The best ``top`` complete trials, best first."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trials.sort(key=lambda t: t.value or 0.0, reverse=True)
    table = Table(
        title=f"{study.study_name}: top {min(top, len(trials))} of {len(trials)} complete"
    )
    table.add_column("trial", justify="right")
    table.add_column("valid acc", justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("params")
    for t in trials[:top]:
        table.add_row(
            str(t.number),
            f"{t.value:.4f}" if t.value is not None else "-",
            str(t.user_attrs.get("best_epoch", "-")),
            f"{t.user_attrs.get('seconds', 0):.1f}",
            format_params(t.params),
        )
    return table


def end_live(console: Console) -> None:
    """End the line a finished ``Live`` leaves open when output is not a terminal.

    Rich ends it on terminals only (Textualize/rich#4192): in a log file or CI output the next
    print would continue the final status line.
    """
    if not console.is_terminal:
        console.line()


def train_with_progress(
    cfg: TrainConfig,
    data_dir: Path | None,
    *,
    test: bool,
    save: Path | None,
    console: Console,
) -> TrainResult:
    """``hpsearch train``: one row per epoch, then the best epoch (and its test accuracy)."""
    from hpsearch.model import save_checkpoint
    from hpsearch.train import EpochStats, train_from_config

    table = Table(title="training", show_edge=False)
    for col in ("epoch", "train loss", "train acc", "valid loss", "valid acc", "seconds"):
        table.add_column(col, justify="right")

    from hpsearch.data import load_dataset

    # Fail on missing data or vectors before drawing a table (both are cached for training).
    dataset = load_dataset(cfg, data_dir, with_test=test)
    if cfg.embeddings is not None:
        from hpsearch.embeddings import build_embedding_matrix

        _, found = build_embedding_matrix(dataset.vocab, cfg)
        console.print(
            f"{cfg.embeddings}: found {found:,} of {len(dataset.vocab):,} vocabulary words"
        )
    with Live(table, console=console, refresh_per_second=4, transient=False):

        def on_epoch(s: EpochStats) -> None:
            table.add_row(
                f"{s.epoch}/{cfg.epochs}",
                f"{s.train_loss:.4f}",
                f"{s.train_acc:.4f}",
                f"{s.valid_loss:.4f}",
                f"{s.valid_acc:.4f}",
                f"{s.seconds:.2f}",
            )

        result, _ = train_from_config(cfg, data_dir, on_epoch=on_epoch, with_test=test)
    end_live(console)
    line = (
        f"best valid acc {result.best_valid_acc:.4f} at epoch {result.best_epoch} "
        f"({result.num_parameters:,} parameters, {result.seconds:.1f} s)"
    )
    if result.test_acc is not None:
        line += f"; test acc {result.test_acc:.4f} (best epoch's weights)"
    console.print(line)
    if save is not None:
        result.model.load_state_dict(result.best_state)
        save_checkpoint(save, result.model, cfg, dataset.vocab, {"best_epoch": result.best_epoch})
        console.print(f"saved checkpoint to {save}")
    return result
