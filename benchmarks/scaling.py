"""Trials per hour of ``hpsearch run --workers N`` on a fixed small study, for several N.

    python benchmarks/scaling.py                          # 1, 2 and 4 workers, 3 repeats
    python benchmarks/scaling.py --workers 1 2 --repeats 2 --trials 8 --epochs 2

Each run is the real command (``python -m hpsearch run --workers N``) in a subprocess, on a
fresh SQLite file, timed from launch to exit. The study is written to a temporary directory:
the plain packed RNN with hidden sizes evenly spread over a range, every trial enqueued (so
every run trains the same configurations, whatever N is), a few epochs, no pruner. Runs are
interleaved (1, 2, 4, then 2, 4, 1, ...) so that a change in the load of the shared machine
hits every N alike.

Two rates are printed per N: end to end (launch to exit, as a user sees it: it includes
starting N Python processes that each import torch) and steady state (trials finished between
the first trial's start and the last trial's end), with their ratios to the first N given.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import TrialState

STUDY = """\
name: scaling
description: "benchmarks/scaling.py: fixed small study"
config: {{cell: rnn, packed: true, optimizer: adam, lr: 1.0e-3, batch_size: 32}}
space:
  hidden_dim: {{low: {low}, high: {high}}}
sampler: {{name: random, seed: 0}}
pruner: none
budget: {{trials: {trials}, epochs: {epochs}}}
enqueue: {enqueue}
"""


@dataclass(frozen=True)
class Run:
    workers: int
    wall: float  # launch to exit, seconds
    startup: float  # launch to the first trial's start
    steady: float  # first trial's start to last trial's end
    trials: int  # COMPLETE trials
    trial_seconds: float  # median training seconds of a trial (user attr "seconds")
    cpu: float  # CPU seconds of the launcher and its workers
    load: str  # /proc/loadavg before the run

    @property
    def per_hour(self) -> float:
        return 3600 * self.trials / self.wall

    @property
    def steady_per_hour(self) -> float:
        return 3600 * self.trials / self.steady


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def hidden_sizes(trials: int, low: int, high: int) -> list[int]:
    """The study's hidden sizes, evenly spread from ``low`` to ``high``."""
    return [round(low + i * (high - low) / max(1, trials - 1)) for i in range(trials)]


def write_study(directory: Path, trials: int, epochs: int, low: int, high: int) -> Path:
    # Every trial is enqueued, so every N trains the same models: a grid would not do, as
    # each worker's sampler has its own seed and so its own order of the grid.
    sizes = hidden_sizes(trials, low, high)
    enqueue = "[" + ", ".join(f"{{hidden_dim: {h}}}" for h in sizes) + "]"
    path = directory / "scaling.yaml"
    text = STUDY.format(low=low, high=high, trials=trials, epochs=epochs, enqueue=enqueue)
    path.write_text(text)
    return path


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so that their CPU time is counted here: a worker
    that outlives the launcher by a moment would otherwise be reaped by init, with its CPU
    time."""
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> None:
    """Wait for every adopted descendant to exit."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_once(
    workers: int,
    study: Path,
    directory: Path,
    data_dir: Path | None,
    tag: str,
    prefix: list[str],
) -> Run:
    db = directory / f"{tag}.db"
    url = f"sqlite:///{db}"
    cmd = [*prefix, sys.executable, "-m", "hpsearch", "run", "--study", str(study)]
    cmd += ["--workers", str(workers), "--storage", url]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    load = loadavg()
    launched = datetime.now()
    # Every descendant is waited for (by the launcher, or here: become_subreaper), so the
    # workers' CPU time reaches us.
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(directory / f"{tag}.log", "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - started
    reap_orphans()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if code != 0:
        tail = (directory / f"{tag}.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(cmd)} exited with {code}:\n{tail}")
    trials = optuna.load_study(study_name="scaling", storage=url).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,)
    )
    first = min(t.datetime_start for t in trials if t.datetime_start)
    last = max(t.datetime_complete for t in trials if t.datetime_complete)
    return Run(
        workers=workers,
        wall=wall,
        startup=(first - launched).total_seconds(),
        steady=(last - first).total_seconds(),
        trials=len(trials),
        trial_seconds=statistics.median(float(t.user_attrs["seconds"]) for t in trials),
        load=load,
        cpu=cpu,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--hidden", type=int, nargs=2, default=[64, 100], metavar=("LOW", "HIGH"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases and logs here")
    parser.add_argument(
        "--prefix", default="", help="run the command under this one, e.g. 'chrt --batch 0'"
    )
    args = parser.parse_args(argv)
    become_subreaper()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="hpsearch-scaling-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        study = write_study(directory, args.trials, args.epochs, *args.hidden)
        print(
            f"{args.trials} trials x {args.epochs} epochs, hidden {args.hidden}; load {loadavg()}"
        )
        runs: list[Run] = []
        arms = list(args.workers)
        for rep in range(args.repeats):
            # Rotate the order each repeat: no arm always runs first (or right after another).
            shift = rep % len(arms)
            for n in arms[shift:] + arms[:shift]:
                tag = f"w{n}-r{rep}"
                run = run_once(n, study, directory, args.data_dir, tag, shlex.split(args.prefix))
                runs.append(run)
                print(
                    f"  repeat {rep} workers {n}: {run.wall:6.1f} s wall, "
                    f"{run.per_hour:6.0f} trials/h end to end, {run.steady_per_hour:6.0f} steady "
                    f"(startup {run.startup:.1f} s, trial {run.trial_seconds:.2f} s, "
                    f"CPU {run.cpu:.1f} s), "
                    f"load before {run.load}",
                    flush=True,
                )

    base_n = args.workers[0]
    print(f"\nmedians over {args.repeats} repeats (ratios vs {base_n} worker(s); 'vs prev'")
    print(f"against the N before it); load {loadavg()}")
    print(
        "workers  trials/h  ratio  vs prev  steady trials/h  ratio  vs prev  "
        + "startup s  trial s  CPU s"
    )
    medians = {}
    for n in args.workers:
        mine = [r for r in runs if r.workers == n]
        medians[n] = (
            statistics.median(r.per_hour for r in mine),
            statistics.median(r.steady_per_hour for r in mine),
            statistics.median(r.startup for r in mine),
            statistics.median(r.trial_seconds for r in mine),
            statistics.median(r.cpu for r in mine),
        )
    base = medians[base_n]
    prev = base
    for n, (e2e, steady, startup, trial, cpu) in medians.items():
        print(
            f"{n:>7}  {e2e:8.0f}  {e2e / base[0]:5.2f}  {e2e / prev[0]:7.2f}  "
            f"{steady:15.0f}  {steady / base[1]:5.2f}  {steady / prev[1]:7.2f}  "
            f"{startup:9.1f}  {trial:7.2f}  {cpu:5.1f}"
        )
        prev = medians[n]
    return 0


if __name__ == "__main__":
    sys.exit(main())
