"""Time a training epoch of hpsearch against a straightforward reference implementation.

    python benchmarks/epoch.py                       # default config (report 1.3), 1 thread
    python benchmarks/epoch.py --threads 2
    python benchmarks/epoch.py --config bilstm-attention-glove
    python benchmarks/epoch.py --epochs 40 --no-reference   # accuracy of the default config
    python benchmarks/epoch.py --torch-rnn                  # hpsearch with torch's nn.RNN
    python benchmarks/epoch.py --device cuda                # both on the GPU

An "epoch" is one pass over the training split plus the validation pass, for both
implementations. The first epoch is a warm-up; the median of the following ones is reported.
Epochs alternate between the two implementations, so that both see the same machine load;
CPU seconds are printed next to wall seconds because a shared machine inflates the latter.

The reference is written here in the seed report's style: a DataLoader-like random shuffle,
``pad_sequence`` + ``pack_padded_sequence`` on every batch, the L2 penalty as an autograd term
summed over all parameters, ``clip_grad_norm_`` and torch's default ``Adam``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from hpsearch.config import TrainConfig, from_mapping
from hpsearch.training import Dataset, load_dataset
from hpsearch.training._data import PAD, Split
from hpsearch.training._model import RNNClassifier
from hpsearch.training._train import EpochStats, resolve_device, train

CONFIGS: dict[str, dict[str, object]] = {
    "default": {},  # the report's section 1.3 configuration
    "bilstm-attention-glove": {
        "cell": "lstm",
        "bidirectional": True,
        "pooling": "attention",
        "embedding_dim": 50,
        "embeddings": "glove-6b-50d",
    },
}


class ReferenceRNN(nn.Module):
    """The report's model: embed the padded batch, pack it, run the RNN, classify."""

    def __init__(
        self, cfg: TrainConfig, vocab_size: int, classes: int, embeddings: Tensor | None
    ) -> None:
        super().__init__()
        if embeddings is not None:
            self.embedding = nn.Embedding.from_pretrained(
                embeddings.clone(), freeze=cfg.freeze_embeddings, padding_idx=PAD
            )
        else:
            self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD)
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cfg.cell]
        self.rnn = cell(
            cfg.embedding_dim, cfg.hidden_dim, bidirectional=cfg.bidirectional, batch_first=True
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.pooling = cfg.pooling
        width = cfg.hidden_dim * (2 if cfg.bidirectional else 1)
        if cfg.pooling == "attention":
            self.query = nn.Parameter(torch.randn(1, 1, width) / width**0.5)
            self.attention = nn.MultiheadAttention(width, cfg.attention_heads, batch_first=True)
        self.fc = nn.Linear(width, classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        # lengths stay on the CPU: pack_padded_sequence wants them there.
        x = self.dropout(self.embedding(tokens))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(packed)
        if self.pooling == "attention":
            padded, _ = pad_packed_sequence(out, batch_first=True)
            mask = torch.arange(padded.shape[1])[None, :] >= lengths[:, None]
            mask = mask.to(padded.device)
            query = self.query.expand(padded.shape[0], -1, -1)
            sentence = self.attention(query, padded, padded, key_padding_mask=mask)[0][:, 0]
        else:
            h_n = hidden[0] if isinstance(hidden, tuple) else hidden
            sentence = torch.cat(list(h_n[-(2 if self.rnn.bidirectional else 1) :]), dim=1)
        return self.fc(self.dropout(sentence))


def _rows(split: Split) -> list[Tensor]:
    return [split.tokens[i, : int(n)] for i, n in enumerate(split.lengths)]


@dataclass(frozen=True)
class Timed:
    stats: EpochStats  # stats.seconds: wall-clock seconds of the epoch
    cpu: float  # CPU seconds of the epoch: unlike the wall clock, not inflated by waiting


def reference_epochs(
    cfg: TrainConfig, dataset: Dataset, embeddings: Tensor | None
) -> Iterator[Timed]:
    """The reference training, one epoch per ``next``.

    It keeps its own global-RNG state between epochs, so that interleaving it with hpsearch's
    epochs changes neither run's dropout masks.
    """
    caller_state = torch.get_rng_state()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model = ReferenceRNN(cfg, len(dataset.vocab), len(dataset.labels), embeddings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_rows, valid_rows = _rows(dataset.train), _rows(dataset.valid)
    own_state = torch.get_rng_state()
    for epoch in itertools.count(1):
        torch.set_rng_state(own_state)
        started, cpu_started = time.perf_counter(), time.process_time()
        model.train()
        total, correct = 0.0, 0
        for idx in torch.randperm(len(train_rows)).split(cfg.batch_size):
            tokens = pad_sequence([train_rows[i] for i in idx], batch_first=True).to(device)
            labels = dataset.train.labels[idx].to(device)
            logits = model(tokens, dataset.train.lengths[idx])
            loss = F.cross_entropy(logits, labels)
            loss = loss + cfg.alpha * sum(p.pow(2).sum() for p in model.parameters())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == labels).sum())
        model.eval()
        valid_loss, valid_correct = 0.0, 0
        with torch.no_grad():
            for idx in torch.arange(len(valid_rows)).split(cfg.batch_size):
                tokens = pad_sequence([valid_rows[i] for i in idx], batch_first=True).to(device)
                labels = dataset.valid.labels[idx].to(device)
                logits = model(tokens, dataset.valid.lengths[idx])
                valid_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                valid_correct += int((logits.argmax(1) == labels).sum())
        n_train, n_valid = len(train_rows), len(valid_rows)
        stats = EpochStats(
            epoch=epoch,
            train_loss=total / n_train,
            train_acc=correct / n_train,
            valid_loss=valid_loss / n_valid,
            valid_acc=valid_correct / n_valid,
            seconds=time.perf_counter() - started,
        )
        timed = Timed(stats, time.process_time() - cpu_started)
        own_state = torch.get_rng_state()
        torch.set_rng_state(caller_state)
        yield timed
        caller_state = torch.get_rng_state()


class Interleaved:
    """``on_epoch`` callback for hpsearch's ``train``: records hpsearch's epoch, then runs one
    reference epoch, so that both implementations see the same load on a shared machine."""

    def __init__(self, reference: Iterator[Timed] | None) -> None:
        self.ours: list[Timed] = []
        self.reference: list[Timed] = []
        self._reference_epochs = reference
        self._mark = time.process_time()

    def __call__(self, stats: EpochStats) -> None:
        self.ours.append(Timed(stats, time.process_time() - self._mark))
        if self._reference_epochs is not None:
            self.reference.append(next(self._reference_epochs))
        self._mark = time.process_time()


def summary(name: str, epochs: list[Timed]) -> float:
    """Print the medians after the warm-up epoch; return the median wall seconds."""
    timed = epochs[1:] or epochs
    wall = [t.stats.seconds for t in timed]
    median = statistics.median(wall)
    history = [t.stats for t in epochs]
    best = max(history, key=lambda s: s.valid_acc)
    print(
        f"{name:>10}: median {median:.3f} s/epoch wall (min {min(wall):.3f}), "
        f"{statistics.median(t.cpu for t in timed):.3f} s CPU, over {len(timed)} epochs; "
        f"valid_acc last {history[-1].valid_acc:.4f}, best {best.valid_acc:.4f} "
        f"at epoch {best.epoch}"
    )
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=4, help="including 1 warm-up epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-reference", action="store_true", help="time hpsearch only")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="both implementations on this device (cuda: dropout masks then come from the "
        "CUDA generator, which the two runs share, so their curves differ from the CPU's)",
    )
    parser.add_argument(
        "--glove-matrix",
        type=Path,
        help="the GloVe matrix of this vocabulary saved by device_check.py --save-glove-matrix "
        "(for a machine without gensim or the GloVe package)",
    )
    parser.add_argument(
        "--torch-rnn",
        action="store_true",
        help="hpsearch with nn.RNN instead of its CPU tanh RNN (training._rnn), to measure it",
    )
    args = parser.parse_args(argv)
    if args.torch_rnn:
        original_init = RNNClassifier.__init__

        def init_with_torch_rnn(self: RNNClassifier, *a: Any, **k: Any) -> None:
            original_init(self, *a, **k)
            self.fast_rnn = False

        RNNClassifier.__init__ = init_with_torch_rnn  # type: ignore[method-assign]

    torch.set_num_threads(args.threads)
    cfg = from_mapping(
        {**CONFIGS[args.config], "epochs": args.epochs, "seed": args.seed}
        | {"threads": args.threads, "device": args.device},
        source=f"--config {args.config}",
    )
    dataset = load_dataset(cfg, args.data_dir)
    embeddings = None
    if cfg.embeddings is not None and args.glove_matrix is not None:
        embeddings = torch.load(args.glove_matrix, weights_only=True)["matrix"]
    elif cfg.embeddings is not None:
        from hpsearch.training._embeddings import build_embedding_matrix

        embeddings, _ = build_embedding_matrix(dataset.vocab, cfg)
    print(
        f"config {args.config}, {args.device}, {args.threads} thread(s), "
        f"torch {torch.__version__}, {len(dataset.train)} train / {len(dataset.valid)} valid, "
        f"vocab {len(dataset.vocab)}"
    )
    reference = None if args.no_reference else reference_epochs(cfg, dataset, embeddings)
    timings = Interleaved(reference)
    train(cfg, dataset, embeddings=embeddings, on_epoch=timings)
    ours = summary("hpsearch", timings.ours)
    if timings.reference:
        theirs = summary("reference", timings.reference)
        # Each hpsearch epoch ran right next to its reference epoch: the median of the
        # per-pair ratios cancels the load changes that a shared VM goes through.
        pairs = list(zip(timings.ours, timings.reference, strict=True))[1:]
        paired = statistics.median(a.stats.seconds / b.stats.seconds for a, b in pairs)
        print(
            f"     ratio: {ours / theirs:.3f} of the medians, {paired:.3f} median of the "
            f"{len(pairs)} epoch pairs (hpsearch / reference, wall): {1 / paired:.2f}x faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
