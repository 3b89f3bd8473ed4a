"""Throughput of ``hpsearch predict``: lines per second on one thread, for a TREC model.

    python benchmarks/predict.py --data-dir ../shared/data/trec              # 100,000 lines
    python benchmarks/predict.py --model best.pt --lines 20000 --repeats 5

The lines are TREC's test questions repeated to ``--lines``. Timed is what the command does
after loading the model: tokenize, encode, classify in length-sorted batches, and rank the
top class, for every line (writing the output is not timed). Without ``--model`` the model is
the default configuration's (the report's section 1.3) with TREC's vocabulary and untrained
weights: inference costs the same whatever the weights. The median of the repeats is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hpsearch import predict
from hpsearch.config import TrainConfig
from hpsearch.training import Classifier, RNNClassifier, load_dataset
from hpsearch.training._data import TEST_FILE, ensure_data


def trec_model(data_dir: Path | None) -> Classifier:
    cfg = TrainConfig()
    dataset = load_dataset(cfg, data_dir)
    torch.manual_seed(cfg.seed)
    model = RNNClassifier(cfg, len(dataset.vocab), len(dataset.labels))
    return Classifier(model, cfg, dataset.vocab.itos, dataset.labels, source="untrained TREC model")


def test_questions(data_dir: Path | None) -> list[str]:
    path = ensure_data(data_dir, download=False) / TEST_FILE
    lines = path.read_text(encoding="iso-8859-1").splitlines()
    return [line.split(maxsplit=1)[1] for line in lines if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a checkpoint (default: untrained TREC)")
    parser.add_argument("--data-dir", type=Path, help="the TREC files")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = predict.load_checkpoint_file(args.model) if args.model else trec_model(args.data_dir)
    questions = test_questions(args.data_dir)
    texts = (questions * (args.lines // len(questions) + 1))[: args.lines]
    model.top(texts[:1000], 1)  # warm-up
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        model.top(texts, 1, batch_size=args.batch_size)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    print(
        f"{model!r}, {args.threads} thread(s), batch {args.batch_size}: {len(texts):,} lines in "
        f"{median:.2f} s (median of {args.repeats}: "
        f"{', '.join(f'{s:.2f}' for s in seconds)}) = {len(texts) / median:,.0f} lines/s"
    )


if __name__ == "__main__":
    main()
