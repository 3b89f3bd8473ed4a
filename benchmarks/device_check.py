"""Every model option trains on a device, and its checkpoint scores the same on the CPU.

    python benchmarks/device_check.py --device cuda --data-dir ../shared/data/trec
    python benchmarks/device_check.py --device cuda --glove-matrix glove.pt   # no gensim there

The test suite runs on the CPU (CI has no GPU); this is the check for the CUDA path, run by
hand on a machine with one: each variant (every cell, packing, pooling, head and optimiser
option, GloVe vectors frozen and fine-tuned) trains two epochs on the device; the best
epoch's weights must score the same on the device as after ``save_checkpoint`` and
``load_checkpoint`` on the CPU (within half a point: cuDNN and the CPU kernels sum in
different orders). Exit status 1 if any variant fails.

``--glove-matrix`` takes the embedding matrix of this vocabulary saved on another machine
(``--save-glove-matrix`` there writes it), for a device without gensim or the GloVe package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hpsearch.config import TrainConfig
from hpsearch.training import load_checkpoint, load_dataset, save_checkpoint
from hpsearch.training._train import evaluate, train

GLOVE: dict[str, Any] = {"embeddings": "glove-6b-50d", "embedding_dim": 50}
VARIANTS: dict[str, dict[str, Any]] = {
    "rnn packed (1.3)": {},
    "rnn padded": {"packed": False},
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "bi-rnn": {"bidirectional": True},
    "rnn 2 layers": {"num_layers": 2, "rnn_dropout": 0.2},
    "mean pool": {"pooling": "mean"},
    "max pool": {"pooling": "max"},
    "attention 2 heads": {"pooling": "attention", "attention_heads": 2},
    "fc head, batch norm": {"head_layers": 2, "head_batchnorm": True, "head_dropout": 0.2},
    "glove frozen": {**GLOVE, "freeze_embeddings": True},
    "glove bilstm attention": {
        **GLOVE,
        "cell": "lstm",
        "bidirectional": True,
        "pooling": "attention",
    },
    "adamw": {"optimizer": "adamw", "weight_decay": 0.01},
    "sgd, l1": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "regularizer": "l1"},
    "rmsprop": {"optimizer": "rmsprop", "lr": 1e-3},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "mps", "cpu"])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    glove = parser.add_mutually_exclusive_group()
    glove.add_argument("--glove-matrix", type=Path, help="use this saved matrix for GloVe")
    glove.add_argument("--save-glove-matrix", type=Path, help="write the matrix here, then exit")
    args = parser.parse_args(argv)

    base = TrainConfig(**GLOVE, device="cpu")
    if args.save_glove_matrix is not None:
        from hpsearch.training._embeddings import build_embedding_matrix

        dataset = load_dataset(base, args.data_dir)
        matrix, found = build_embedding_matrix(dataset.vocab, base)
        torch.save({"matrix": matrix, "found": found}, args.save_glove_matrix)
        print(f"wrote {args.save_glove_matrix}: {tuple(matrix.shape)}, {found} words found")
        return 0

    name = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    print(f"torch {torch.__version__}, {name}", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for label, fields in VARIANTS.items():
            cfg = TrainConfig(**{**fields, "epochs": args.epochs, "device": args.device})
            try:
                failures += not check(label, cfg, args, Path(tmp) / "checkpoint.pt")
            except Exception as exc:  # report every variant, then fail
                failures += 1
                print(f"FAIL {label}: {type(exc).__name__}: {exc}", flush=True)
    print(f"{failures} of {len(VARIANTS)} variants failed")
    return 1 if failures else 0


def check(label: str, cfg: TrainConfig, args: argparse.Namespace, path: Path) -> bool:
    dataset = load_dataset(cfg, args.data_dir)
    embeddings = None
    if cfg.embeddings is not None:
        if args.glove_matrix is not None:
            embeddings = torch.load(args.glove_matrix, weights_only=True)["matrix"]
        else:
            from hpsearch.training._embeddings import build_embedding_matrix

            embeddings, _ = build_embedding_matrix(dataset.vocab, cfg)
    started = time.perf_counter()
    result = train(cfg, dataset, embeddings=embeddings)
    per_epoch = (time.perf_counter() - started) / cfg.epochs
    device = next(result.model.parameters()).device
    result.model.load_state_dict(result.best_state)
    _, on_device = evaluate(result.model, dataset.valid, device)
    save_checkpoint(path, result.model, cfg, dataset.vocab)
    _, on_cpu = evaluate(load_checkpoint(path).model, dataset.valid, "cpu")
    ok = (
        device.type == args.device
        and abs(on_device - result.best_valid_acc) < 0.005
        and abs(on_device - on_cpu) < 0.005
    )
    print(
        f"{'ok  ' if ok else 'FAIL'} {label:24s} {device}: best valid {result.best_valid_acc:.4f} "
        f"(epoch {result.best_epoch}), reloaded {on_device:.4f}, checkpoint on cpu {on_cpu:.4f}, "
        f"{per_epoch:.2f} s/epoch",
        flush=True,
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
