"""Does taking turns slow training? K processes train the same configurations, no database.

    python benchmarks/turns.py --data-dir ../shared/data/trec            # 2 vs 4, 3 repeats
    python benchmarks/turns.py --data-dir ../shared/data/trec --trials 20 --repeats 2

``hpsearch run`` with more workers than cores lets at most one trial per core train at a
time (hpsearch.slots). scaling.py measures the whole command; this isolates the training: K
processes forked from this one (which imported torch and loaded the data, as hpsearch's fork
server does) take configurations from a shared counter and train each with
``hpsearch.train.train`` on 1 thread. With K above the core count they take turns through
``CpuSlots``, exactly as hpsearch's workers do; with K at or below it they train freely.
Runs alternate between the Ks; the script prints, per K, the median wall time of a run, of a
trial, and the CPU time of the processes.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from scaling import hidden_sizes  # this directory: scripts run as python benchmarks/NAME.py

from hpsearch.config import TrainConfig
from hpsearch.data import Dataset, load_dataset
from hpsearch.launcher import available_cores
from hpsearch.slots import CpuSlots
from hpsearch.train import train

# The scaling study's model and optimizer (benchmarks/scaling.py: plain packed RNN, Adam, lr
# 1e-3, batch 32), without dropout; the point is the same work in every process either way.
BASE = TrainConfig().replace(cell="rnn", lr=1e-3, dropout=0.0, threads=1)


def _work(
    counter: Any, times: Any, cfgs: Sequence[TrainConfig], data: Dataset, slots: CpuSlots | None
) -> None:
    torch.set_num_threads(1)
    while True:
        with slots.hold() if slots is not None else contextlib.nullcontext(True):
            with counter.get_lock():
                i = counter.value
                counter.value += 1
            if i >= len(cfgs):
                return
            started = time.perf_counter()
            train(cfgs[i], data)
            times.append(time.perf_counter() - started)


def one_run(k: int, cores: int, cfgs: Sequence[TrainConfig], data: Dataset) -> dict[str, float]:
    ctx = mp.get_context("fork")
    counter = ctx.Value("i", 0)
    with ctx.Manager() as manager, tempfile.TemporaryDirectory() as slots_dir:
        times = manager.list()
        slots = CpuSlots(Path(slots_dir), cores) if k > cores else None
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        job = (counter, times, cfgs, data, slots)
        procs = [ctx.Process(target=_work, args=job) for _ in range(k)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        trial = statistics.median(list(times))
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall": wall, "trial": trial, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--hidden", type=int, nargs=2, default=[64, 100], metavar=("LOW", "HIGH"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cores = available_cores()
    sizes = hidden_sizes(args.trials, *args.hidden)
    cfgs = [BASE.replace(epochs=args.epochs, hidden_dim=h) for h in sizes]
    data = load_dataset(BASE, args.data_dir)
    print(f"{args.trials} trainings x {args.epochs} epochs, {cores} cores, load {os.getloadavg()}")
    results: dict[int, list[dict[str, float]]] = {k: [] for k in args.processes}
    for repeat in range(args.repeats):
        shift = repeat % len(args.processes)  # interleaved: 2, 4; 4, 2; ...
        for k in args.processes[shift:] + args.processes[:shift]:
            r = one_run(k, cores, cfgs, data)
            results[k].append(r)
            mode = "taking turns" if k > cores else "free"
            print(
                f"  repeat {repeat} K={k} ({mode}): {r['wall']:.1f} s wall, "
                f"trial {r['trial']:.3f} s, CPU {r['cpu']:.1f} s",
                flush=True,
            )
    first = statistics.median(r["wall"] for r in results[args.processes[0]])
    print("medians: K  wall s  rate vs first K  trial s  CPU s")
    for k, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        trial = statistics.median(r["trial"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"         {k}  {wall:6.1f}  {first / wall:15.2f}  {trial:7.3f}  {cpu:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
