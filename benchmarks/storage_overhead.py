"""Per-trial cost of the study database, against the training time of a trial.

    python benchmarks/storage_overhead.py --data-dir ../shared/data/trec
    python benchmarks/storage_overhead.py --storage sqlite --trials 10 --epoch-seconds 0.45
    python benchmarks/storage_overhead.py --pg-url postgresql+psycopg://user@host:5432/db

The product's worker loop (``workers.work``: budget lock, stale-trial check, trial count,
``study.optimize`` with hpsearch's ``Objective``: user attributes, one ``report`` and
``should_prune`` per epoch, ``tell``) runs against a fresh SQLite file and a PostgreSQL
database (a unique study, deleted afterwards), the latter also with asynchronous commits
(``synchronous_commit=off``, set through the URL). One thing differs from a real run: the
training is a stand-in that returns made-up, seeded learning curves at once (``--sleep``
sleeps the real epoch time instead, so that heartbeats fire as in a real run). Every storage
method the study calls is timed (outermost calls only: one that calls another counts once),
as is taking and releasing the budget lock; what remains of the loop's wall time is the
sampler, the pruner's own arithmetic and Python.

The trial time it is compared with is measured here: two real epochs of the study's fixed
configuration on one torch thread (the second one counts), unless ``--epoch-seconds`` says.
The cost is split into a per-epoch part (the objective's ``report`` + ``should_prune``) and
a per-trial rest, and given as a share of a full trial (``--epochs`` epochs), of a trial
pruned at the first rung (3 epochs: the per-trial rest weighs ten times more), and of the
run's actual mix. "Storage" counts only the time in storage calls; "all overhead" is the
whole loop except training (sampler, pruner, Python included).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpsearch import storage as storage_mod
from hpsearch import study as studyfile
from hpsearch.search import _worker as workers
from hpsearch.training._train import EpochStats

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Commits return before the server's WAL reaches the disk: a server crash may lose the last
# few commits (never corrupts). Settable per connection, here through the URL.
ASYNC_COMMIT = "options=-c%20synchronous_commit%3Doff"
BACKENDS = ("sqlite", "postgres", "postgres-async-commit")
SHORT_TRIAL_EPOCHS = 3  # the default pruner's first rung


@dataclass
class Timings:
    """Seconds spent per storage method (outermost calls), and call counts."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    training: float = 0.0  # time inside the stand-in for training (sleeps)
    epochs: int = 0  # epochs reported
    in_epoch: float = 0.0  # seconds in the objective's per-epoch callback (report, prune)
    in_epoch_storage: float = 0.0  # of which in storage calls
    local: threading.local = field(default_factory=threading.local)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def foreground(self) -> float:
        """Seconds of storage calls (and lock) that the trial waited for."""
        return sum(v for k, v in self.seconds.items() if "background" not in k)


def instrument(storage: Any, timings: Timings) -> Any:
    """Wrap every public storage method of this instance with a timer."""
    names = {n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")}
    names |= {"record_heartbeat", "fail_stale_trials", "get_stale_trial_ids"}
    names |= {"set_trial_user_attrs"}  # hpsearch's: several attributes in one transaction
    for name in sorted(names):
        method = getattr(storage, name, None)
        if callable(method):
            setattr(storage, name, _timer(method, name, timings))
    return storage


def _timer(method: Callable[..., Any], name: str, timings: Timings) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if getattr(timings.local, "depth", 0):  # called by another storage method
            return method(*args, **kwargs)
        timings.local.depth = 1
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            timings.local.depth = 0
            # The heartbeat thread's writes do not hold up the trial: listed apart.
            background = threading.current_thread() is not threading.main_thread()
            label = f"{name} (background thread)" if background else name
            timings.add(label, time.perf_counter() - started)

    return timed


@dataclass(frozen=True)
class FakeResult:
    """The fields of ``train.TrainResult`` that ``Objective`` reads."""

    history: list[EpochStats]
    best_valid_acc: float
    best_epoch: int
    num_parameters: int
    seconds: float


def fake_training(
    epochs: int, epoch_seconds: float, sleep: bool, timings: Timings
) -> Callable[..., tuple[FakeResult, None]]:
    """A stand-in for ``train_from_config``: a seeded learning curve, no computation."""

    def train_from_config(cfg: Any, data_dir: Any = None, *, on_epoch: Any = None) -> Any:
        rng = random.Random(hash((cfg.lr, cfg.dropout, cfg.alpha, cfg.grad_clip)))
        ceiling = 0.5 + 0.4 * rng.random()
        history: list[EpochStats] = []
        for epoch in range(1, epochs + 1):
            acc = ceiling * (1 - math.exp(-epoch / 4)) + rng.gauss(0, 0.01)
            stats = EpochStats(epoch, 1 - acc, acc, 1 - acc, acc, epoch_seconds)
            if sleep:
                started = time.perf_counter()
                time.sleep(epoch_seconds)
                timings.training += time.perf_counter() - started
            history.append(stats)
            if on_epoch is not None:
                storage_before, started = timings.foreground(), time.perf_counter()
                try:
                    on_epoch(stats)  # raises TrialPruned when pruned
                finally:
                    timings.in_epoch += time.perf_counter() - started
                    timings.in_epoch_storage += timings.foreground() - storage_before
                    timings.epochs += 1
        best = max(history, key=lambda s: s.valid_acc)
        return FakeResult(history, best.valid_acc, best.epoch, 0, epochs * epoch_seconds), None

    return train_from_config


def measure_epoch_seconds(spec: studyfile.StudySpec, data_dir: Path | None) -> float:
    """Wall seconds of the second of two real epochs of the study's fixed config."""
    from hpsearch.config import from_mapping
    from hpsearch.training._train import train_from_config

    cfg = from_mapping({**spec.config, "epochs": 2, "threads": 1}, source="epoch timing")
    result, _ = train_from_config(cfg, data_dir)
    return result.history[-1].seconds


@contextlib.contextmanager
def patched(name: str, attr: str, value: Any) -> Iterator[None]:
    module = sys.modules[name]
    old = getattr(module, attr)
    setattr(module, attr, value)
    try:
        yield
    finally:
        setattr(module, attr, old)


def run_backend(
    label: str,
    url: str,
    spec: studyfile.StudySpec,
    epoch_seconds: float,
    sleep: bool,
) -> tuple[Timings, float, int]:
    """Run ``spec`` with the stand-in training; return timings, loop wall seconds (opening
    the study left out), trials run."""
    timings = Timings()
    real_lock = storage_mod.budget_lock

    @contextlib.contextmanager
    def budget_lock(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        lock = real_lock(*args, **kwargs)
        held = lock.__enter__()  # a check that the lock is still held, in this version
        timings.add("budget_lock (take)", time.perf_counter() - started)
        try:
            yield _timer(held, "budget_lock (check)", timings) if callable(held) else held
        finally:
            started = time.perf_counter()
            lock.__exit__(None, None, None)
            timings.add("budget_lock (release)", time.perf_counter() - started)

    real_open_study = workers.open_study
    setup = 0.0

    def open_study(*args: Any, **kwargs: Any) -> optuna.Study:
        # Opening the study happens once per worker, not per trial: left out of the figures.
        nonlocal setup
        started = time.perf_counter()
        study = real_open_study(*args, **kwargs)
        setup = time.perf_counter() - started
        timings.seconds.clear()
        timings.calls.clear()
        # The study's own storage: Optuna wraps an RDBStorage in a cache, and some of the
        # cache's database reads go to private methods of the RDBStorage.
        instrument(study._storage, timings)
        # hpsearch writes a trial's attributes straight to the RDBStorage (storage.set_user_attrs);
        # calls the cache makes into it are nested, so the timer counts nothing twice.
        backend = getattr(study._storage, "_backend", None)
        if backend is not None:
            instrument(backend, timings)
        return study

    fake = fake_training(spec.epochs, epoch_seconds, sleep, timings)
    # hpsearch's own queries that bypass the storage's methods (a state count, the orphaned
    # trials' check): timed as storage calls too.
    count_trials = _timer(workers.count_trials, "count_trials (hpsearch)", timings)
    orphans = _timer(
        storage_mod.fail_trials_without_heartbeat, "fail_trials_without_heartbeat", timings
    )
    with (
        patched("hpsearch.search._worker", "count_trials", count_trials),
        patched("hpsearch.storage", "fail_trials_without_heartbeat", orphans),
        patched("hpsearch.search._worker", "open_study", open_study),
        patched("hpsearch.storage", "budget_lock", budget_lock),
        patched("hpsearch.search._objective", "train_from_config", fake),
    ):
        started = time.perf_counter()
        summary = workers.work(spec, url, worker=f"bench-{label}", threads=1)
        wall = time.perf_counter() - started - setup
    return timings, wall, summary.trials_run


def report(
    label: str,
    timings: Timings,
    wall: float,
    trials: int,
    epochs: int,
    epoch_seconds: float,
) -> None:
    print(f"\n{label}: {trials} trials, {timings.epochs} epochs (<= {epochs} per trial)")
    for name, seconds in sorted(timings.seconds.items(), key=lambda kv: -kv[1]):
        calls = timings.calls[name] / trials
        print(f"  {name:<40} {1000 * seconds / trials:8.2f} ms/trial  ({calls:5.1f} calls/trial)")
    # Per epoch: the objective's callback (report + should_prune); per trial: all the rest.
    epoch_all = 1000 * timings.in_epoch / max(1, timings.epochs)
    epoch_db = 1000 * timings.in_epoch_storage / max(1, timings.epochs)
    loop = wall - timings.training
    trial_all = 1000 * (loop - timings.in_epoch) / trials
    trial_db = 1000 * (timings.foreground() - timings.in_epoch_storage) / trials
    epoch_ms = 1000 * epoch_seconds
    print(
        f"  per epoch (report + should_prune): {epoch_all:.1f} ms, storage {epoch_db:.1f} ms "
        f"= {100 * epoch_db / epoch_ms:.2f}% of a {epoch_seconds:.2f} s epoch"
    )
    print(
        f"  per trial besides (lock, count, create, suggest, attributes, tell, sampler): "
        f"{trial_all:.1f} ms, storage {trial_db:.1f} ms"
    )
    for n in sorted({epochs, SHORT_TRIAL_EPOCHS}, reverse=True):
        train_ms = n * epoch_ms
        db = (trial_db + n * epoch_db) / train_ms
        everything = (trial_all + n * epoch_all) / train_ms
        print(
            f"  a {n}-epoch trial ({train_ms / 1000:.1f} s of training): storage {100 * db:.2f}%, "
            f"all overhead {100 * everything:.2f}%"
        )
    train_total = timings.epochs * epoch_seconds
    print(
        f"  this run's mix: storage {100 * timings.foreground() / train_total:.2f}%, "
        f"all overhead {100 * loop / train_total:.2f}% of the training time"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="regularization", help="name or path")
    parser.add_argument("--storage", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epoch-seconds", type=float, default=None, help="default: measured")
    parser.add_argument("--sleep", action="store_true", help="sleep the epoch time per epoch")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    base = studyfile.load_study(args.study).with_budget(trials=args.trials).to_dict()
    base["name"] = f"bench-storage-{uuid.uuid4().hex[:12]}"
    base["budget"]["epochs"] = args.epochs
    del base["pruner"]  # the default pruner, adapted to the epochs
    spec = studyfile.parse_study(base, source=f"{args.study} (storage benchmark)")
    epoch_seconds = args.epoch_seconds or measure_epoch_seconds(spec, args.data_dir)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"epoch {epoch_seconds:.3f} s (1 thread); pruner {spec.pruner['name']}; load {load}")

    for backend in args.storage:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="hpsearch-storage-") as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                timings, wall, trials = run_backend(backend, url, spec, epoch_seconds, args.sleep)
        else:
            url = args.pg_url
            if backend == "postgres-async-commit":
                url += ("&" if "?" in url else "?") + ASYNC_COMMIT
            try:
                timings, wall, trials = run_backend(backend, url, spec, epoch_seconds, args.sleep)
            finally:
                with contextlib.suppress(KeyError):
                    optuna.delete_study(study_name=spec.name, storage=url)
        report(backend, timings, wall, trials, spec.epochs, epoch_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
