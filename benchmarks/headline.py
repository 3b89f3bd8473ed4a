"""The headline benchmark: hpsearch against the seed report's way of working.

    python benchmarks/headline.py --data-dir ../shared/data/trec --minutes 25 --repeats 2

Both arms search the shipped ``regularization`` study's space (its fixed config, its sampler
and seed, its epoch cap) with no enqueued points, for the same wall-clock budget:

- **reference**: the seed's pipeline, written in the report's style (``epoch.py``'s
  ``reference_epochs``: per-batch padding and packing, an explicit L2 term over all
  parameters, torch's default Adam), patience 10 on validation accuracy, one process with
  torch's default threads, trials one after another, the sampler asked through Optuna's
  ask-and-tell interface;
- **hpsearch**: ``python -m hpsearch run`` with one worker per core on a fresh SQLite file,
  the study's pruner in place of patience.

A trial's result counts at the moment the trial ends (for both arms: its best epoch's
validation accuracy, pruned trials included), and only if it ends within the budget. The
"shared level" of a repeat is the lower of the two arms' final bests, which both reached; the
script prints, per repeat, the time each arm first reached it and their ratio, then the median
ratio over repeats. Arms alternate their order between repeats, so that a load that drifts
during the run weighs on both.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import yaml
from epoch import reference_epochs
from optuna.trial import TrialState

from hpsearch.study import StudySpec, load_study
from hpsearch.training import load_dataset

PATIENCE = 10  # the report's early stopping


@dataclass
class Arm:
    name: str
    budget: float
    results: list[tuple[float, float]] = field(default_factory=list)  # (seconds, trial best)
    epochs: int = 0

    def best_at(self, seconds: float) -> float | None:
        reached = [acc for at, acc in self.results if at <= seconds]
        return max(reached) if reached else None

    def time_to(self, level: float) -> float | None:
        return next((at for at, acc in sorted(self.results) if acc >= level), None)

    @property
    def final(self) -> float | None:
        return self.best_at(self.budget)


def reference_arm(spec: StudySpec, data_dir: Path | None, budget: float) -> Arm:
    """The seed's loop: ask, train with patience, tell, until the budget is spent."""
    arm = Arm("reference", budget)
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    dataset = load_dataset(spec.build_config({}), data_dir)
    study = optuna.create_study(direction="maximize", sampler=spec.make_sampler())
    while time.perf_counter() - started < budget:
        trial = study.ask()
        cfg = spec.build_config(spec.suggest(trial))
        best, stale = 0.0, 0
        for timed in reference_epochs(cfg, dataset, None):
            arm.epochs += 1
            acc = timed.stats.valid_acc
            best, stale = (acc, 0) if acc > best else (best, stale + 1)
            out_of_time = time.perf_counter() - started >= budget
            if stale >= PATIENCE or timed.stats.epoch >= cfg.epochs or out_of_time:
                break
        ended = time.perf_counter() - started
        if ended > budget:
            study.tell(trial, state=TrialState.FAIL)
            break
        study.tell(trial, best)
        arm.results.append((ended, best))
    return arm


def hpsearch_arm(
    spec: StudySpec, data_dir: Path | None, budget: float, directory: Path, tag: str
) -> Arm:
    """``hpsearch run`` with one worker per core; results read back from its database."""
    arm = Arm("hpsearch", budget)
    data = spec.to_dict()
    data["name"] = "headline"
    data["enqueue"] = []
    data["budget"] = {"trials": 10_000, "timeout": budget, "epochs": spec.epochs}
    study_file = directory / f"{tag}.yaml"
    study_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{directory / tag}.db"
    cmd = [sys.executable, "-m", "hpsearch", "run", "--study", str(study_file)]
    cmd += ["--workers", str(os.cpu_count() or 1), "--storage", url]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    launched = time.time()
    with open(directory / f"{tag}.log", "wb") as log:
        run = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            run.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            # The study's timeout only stops new trials; the reference arm stops at the
            # budget too, so the running trials are interrupted (Ctrl-C) rather than awaited.
            run.send_signal(signal.SIGINT)
            run.wait(timeout=300)
    for t in optuna.load_study(study_name="headline", storage=url).trials:
        arm.epochs += len(t.intermediate_values)
        finished = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if finished and t.intermediate_values and t.datetime_complete is not None:
            ended = t.datetime_complete.timestamp() - launched
            if ended <= budget:
                arm.results.append((ended, max(t.intermediate_values.values())))
    return arm


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def print_repeat(repeat: int, arms: list[Arm]) -> float | None:
    finals = [a.final for a in arms]
    level = None if None in finals else min(f for f in finals if f is not None)
    marks = [arms[0].budget * k / 5 for k in range(1, 6)]
    head = " ".join(f"{m / 60:>7.1f}m" for m in marks)
    print(f"\nrepeat {repeat + 1}: shared level {_fmt(level, '.4f')}")
    print(f"  {'arm':<10} {'trials':>6} {'epochs':>7} {'to level':>9}  best at {head}")
    for arm in arms:
        to = None if level is None else arm.time_to(level)
        to_text = "-" if to is None else f"{to:.0f}s"
        curve = " ".join(f"{_fmt(arm.best_at(m), '.4f'):>8}" for m in marks)
        print(
            f"  {arm.name:<10} {len(arm.results):>6} {arm.epochs:>7} {to_text:>9}          {curve}"
        )
    times = {a.name: a.time_to(level) for a in arms} if level is not None else {}
    ref, ours = times.get("reference"), times.get("hpsearch")
    if ref is None or ours is None:
        return None
    ratio = ref / ours
    print(f"  hpsearch reached {level:.4f} {ratio:.2f}x sooner ({ref:.0f}s against {ours:.0f}s)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="wall budget of each arm")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--study", default="regularization", help="shipped study or file")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = load_study(args.study)
    budget = args.minutes * 60
    print(
        f"study {spec.name} without enqueued points, {args.minutes:g} min per arm, "
        f"{args.repeats} repeats, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ratios = []
    with tempfile.TemporaryDirectory(prefix="headline-") as tmp:
        for repeat in range(args.repeats):
            order = ["reference", "hpsearch"] if repeat % 2 == 0 else ["hpsearch", "reference"]
            arms = {}
            for name in order:
                if name == "reference":
                    arms[name] = reference_arm(spec, args.data_dir, budget)
                else:
                    arms[name] = hpsearch_arm(spec, args.data_dir, budget, Path(tmp), f"r{repeat}")
            ratio = print_repeat(repeat, [arms["reference"], arms["hpsearch"]])
            if ratio is not None:
                ratios.append(ratio)
    if ratios:
        print(
            f"\nmedian over {len(ratios)} repeats: hpsearch {statistics.median(ratios):.2f}x sooner"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
