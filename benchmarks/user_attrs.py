"""Time a trial's eight user attributes written one transaction each against three batches.

    python benchmarks/user_attrs.py                     # SQLite (temporary file) and PostgreSQL
    python benchmarks/user_attrs.py --pg-url postgresql+psycopg://user@host/db

``Objective`` records host and worker when a trial starts, config and seed once the sampler
has chosen, and best epoch, epochs run, seconds and parameter count when it ends;
``storage.set_user_attrs`` writes each group in one transaction instead of one
``trial.set_user_attr`` (one commit) per attribute. Prints the median over ``--trials``
trials of each way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from hpsearch import storage

ATTRS = {
    "host": "vm",
    "worker": "vm-w1",
    "config": {"lr": 1e-3, "cell": "rnn", "hidden_dim": 200, "epochs": 30},
    "seed": 0,
    "best_epoch": 20,
    "epochs_run": 30,
    "seconds": 16.5,
    "num_parameters": 880_000,
}


def measure(url: str, trials: int) -> tuple[float, float]:
    name = f"user-attrs-{uuid.uuid4().hex}"
    study = optuna.create_study(study_name=name, storage=storage.open_storage(url, heartbeat=False))
    items = list(ATTRS.items())
    groups = [dict(items[:2]), dict(items[2:4]), dict(items[4:])]
    one_by_one, batched = [], []
    try:
        for _ in range(trials):
            trial = study.ask()
            started = time.perf_counter()
            for key, value in ATTRS.items():
                trial.set_user_attr(key, value)
            one_by_one.append(time.perf_counter() - started)
            trial = study.ask()
            started = time.perf_counter()
            for group in groups:
                storage.set_user_attrs(trial, group)
            batched.append(time.perf_counter() - started)
    finally:
        optuna.delete_study(study_name=name, storage=url)
    return statistics.median(one_by_one), statistics.median(batched)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'attrs.db'}", "postgres": args.pg_url}
        for label, url in urls.items():
            one, two = measure(url, args.trials)
            print(
                f"{label:>8}: 8 attributes one by one {one * 1000:.1f} ms, "
                f"in 3 transactions {two * 1000:.1f} ms (median of {args.trials} trials)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
