"""Training on 1 or N torch threads, with and without another busy process on the machine.

    python benchmarks/threads_under_load.py --data-dir ../shared/data/trec
    python benchmarks/threads_under_load.py --threads 1 2 --epochs 3 --busy 1

Each case trains a small plain-RNN configuration (hidden 100, embedding 64, the report's
section 1.3 values otherwise) in a fresh process, so that torch's thread pool starts with the
case's thread count; ``--busy K`` starts K processes that spin on the CPU for the loaded cases.
It prints the median epoch time per case. The point: torch's OpenMP threads wait for each
other at the end of every parallel operation, so a thread that loses its core to another
process stalls its siblings, and a 2-thread training on a 2-core machine slows down by orders
of magnitude when anything else computes (benchmarks/README.md, scaling).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
from hpsearch.config import from_mapping
from hpsearch.training._data import load_dataset
from hpsearch.training._train import train
cfg = from_mapping({{"epochs": {epochs}, "threads": {threads}, "hidden_dim": 100,
                     "embedding_dim": 64}})
print(*[h.seconds for h in train(cfg, load_dataset(cfg)).history])
"""


def _spin() -> None:
    while True:
        pass


def run_case(threads: int, epochs: int, data_dir: Path | None) -> list[float]:
    env = dict(os.environ) | ({"HPSEARCH_DATA_DIR": str(data_dir)} if data_dir else {})
    code = CHILD.format(epochs=epochs, threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return [float(x) for x in out.stdout.split()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes when loaded")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve() if args.data_dir else None
    print(f"{args.epochs} epochs per case; loaded: {args.busy} spinning process(es)")
    for loaded in (False, True):
        hogs = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy if loaded else 0)]
        for hog in hogs:
            hog.start()
        try:
            for threads in args.threads:
                epochs = run_case(threads, args.epochs, data_dir)
                shown = " ".join(f"{e:.2f}" for e in epochs)
                state = "loaded" if loaded else "quiet "
                print(
                    f"{state} threads={threads}: median {statistics.median(epochs):.3f} s/epoch"
                    f" (epochs {shown})",
                    flush=True,
                )
        finally:
            for hog in hogs:
                hog.terminate()
                hog.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
