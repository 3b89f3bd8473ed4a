"""Pruned against unpruned studies under the same budget of training epochs.

    python benchmarks/pruning.py --data-dir ../shared/data/trec     # default pruner vs none
    python benchmarks/pruning.py --data-dir ../shared/data/trec \\
        --pruners default none median hyperband --epochs 15 --budget-epochs 240 --repeats 3
    python benchmarks/pruning.py --pruners successive_halving:min_resource=1 none

Each run is one arm (a pruner) with one sampler seed: it runs trials of the study (default
``regularization``) until the epochs trained reach ``--budget-epochs``; the trial that crosses
the budget finishes, so every run trains slightly more than the budget (printed). Arms share
their seeds (repeat i uses sampler seed i in every arm), everything else is the study file's:
sampler and its options, search space, fixed config. The trials run in this process through
Optuna with hpsearch's own ``Objective`` and study-file code (in-memory storage: the database
is measured by storage_overhead.py), one torch thread per run, ``--jobs`` runs at a time.
The results do not depend on the machine's load: training and sampling are seeded.

An arm is ``default`` (hpsearch.study._pruners.DEFAULT_PRUNER, as a study file without ``pruner:``
gets it), a pruner name (``none``, ``median``, ``successive_halving``, ``hyperband``, ...) or
a name with options: ``median:n_warmup_steps=3,n_startup_trials=5``.

The study's enqueued configuration (the report's best point) is dropped unless
``--keep-enqueue``: it would give every arm the same strong first trial, which hides what
the pruner does to the search.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState


@dataclass(frozen=True)
class ArmRun:
    arm: str
    seed: int
    pruner: str  # as the study records it
    best: float  # best value of a COMPLETE trial (what `hpsearch best` reports); nan if none
    best_any: float  # best intermediate value of any trial, pruned ones included
    complete: int
    pruned: int
    failed: int
    epochs: int
    seconds: float

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def parse_arm(arm: str) -> dict[str, Any] | None:
    """``name[:key=value,...]`` as a study file's ``pruner:`` mapping; None for the default."""
    if arm == "default":
        return None
    name, _, rest = arm.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--pruners {arm}: expected key=value, got {item!r}")
        options[key] = yaml.safe_load(value)  # numbers and booleans as YAML reads them
    return {"name": name, "options": options}


def make_spec(study: str, arm: str, seed: int, epochs: int, keep_enqueue: bool) -> Any:
    from hpsearch import study as studyfile

    data = studyfile.load_study(study).to_dict()
    data["sampler"]["seed"] = seed
    data["budget"]["epochs"] = epochs
    pruner = parse_arm(arm)
    if pruner is None:
        del data["pruner"]  # parsing applies DEFAULT_PRUNER, adapted to the epochs
    else:
        data["pruner"] = pruner
    if not keep_enqueue:
        data["enqueue"] = []
    return studyfile.parse_study(data, source=f"{study} ({arm}, seed {seed})")


def run_arm(
    study: str,
    arm: str,
    seed: int,
    epochs: int,
    budget: int,
    data_dir: Path | None,
    keep_enqueue: bool,
    max_trials: int,
) -> ArmRun:
    """Run trials of one arm until ``budget`` epochs are trained; runs in a pool process."""
    from hpsearch.search._objective import Objective

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = make_spec(study, arm, seed, epochs, keep_enqueue)
    opt = optuna.create_study(
        direction="maximize", sampler=spec.make_sampler(), pruner=spec.make_pruner()
    )
    for params in spec.enqueue:
        opt.enqueue_trial(params)
    objective = Objective(spec, worker=f"bench-{arm}-{seed}", data_dir=data_dir, threads=1)
    started = time.perf_counter()
    spent = 0
    while spent < budget and len(opt.trials) < max_trials:
        opt.optimize(objective, n_trials=1, catch=(Exception,))
        spent += int(opt.trials[-1].user_attrs.get("epochs_run", 0))
    trials = opt.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    intermediate = [v for t in trials for v in t.intermediate_values.values()]
    return ArmRun(
        arm=arm,
        seed=seed,
        pruner=str(spec.pruner),
        best=max((t.value or 0.0 for t in complete), default=float("nan")),
        best_any=max(intermediate, default=float("nan")),
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        epochs=spent,
        seconds=time.perf_counter() - started,
    )


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="regularization", help="name or path")
    parser.add_argument("--pruners", nargs="+", default=["default", "none"], metavar="ARM")
    parser.add_argument("--epochs", type=int, default=15, help="max epochs per trial")
    parser.add_argument("--budget-epochs", type=int, default=240, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="sampler seeds 0..N-1")
    parser.add_argument("--trials", type=int, default=1000, help="at most this many per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (1 thread each)")
    parser.add_argument("--keep-enqueue", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    for arm in args.pruners:  # a typo fails now, not after the first arms have run
        make_spec(args.study, arm, 0, args.epochs, args.keep_enqueue)
    print(
        f"study {args.study}: <= {args.epochs} epochs/trial, budget {args.budget_epochs} "
        f"epochs/run, seeds 0..{args.repeats - 1}, {args.jobs} job(s); load {loadavg()}",
        flush=True,
    )
    # Seed-major order: the arms of one seed run side by side and see the same load.
    tasks = [(arm, seed) for seed in range(args.repeats) for arm in args.pruners]
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    runs: list[ArmRun] = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                run_arm,
                args.study,
                arm,
                seed,
                args.epochs,
                args.budget_epochs,
                args.data_dir,
                args.keep_enqueue,
                args.trials,
            )
            for arm, seed in tasks
        ]
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs.append(run)
            print(
                f"  {run.arm:>24} seed {run.seed}: best {run.best:.4f} (any {run.best_any:.4f}), "
                f"{run.finished} trials ({run.complete} complete, {run.pruned} pruned, "
                f"{run.failed} failed), {run.epochs} epochs, {run.seconds:.0f} s; "
                f"load {loadavg()}",
                flush=True,
            )

    print(f"\nmedians over {args.repeats} seeds; load {loadavg()}")
    print("arm                        best acc  best any  trials  complete  epochs  trials/none")
    table = {}
    for arm in args.pruners:
        mine = [r for r in runs if r.arm == arm]
        table[arm] = (
            statistics.median(r.best for r in mine),
            statistics.median(r.best_any for r in mine),
            statistics.median(r.finished for r in mine),
            statistics.median(r.complete for r in mine),
            statistics.median(r.epochs for r in mine),
        )
    base = table.get("none")
    for arm, (best, best_any, finished, complete, epochs) in table.items():
        ratio = f"{finished / base[2]:11.2f}" if base else "          -"
        print(
            f"{arm:<25}  {best:8.4f}  {best_any:8.4f}  {finished:6g}  {complete:8g}  "
            f"{epochs:6g}  {ratio}"
        )
    for arm in args.pruners:
        print(f"  {arm}: {next(r.pruner for r in runs if r.arm == arm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
