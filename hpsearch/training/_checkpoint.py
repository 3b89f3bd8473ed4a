"""Checkpoints: a trained model's weights, configuration, vocabulary and class names, as plain
tensors and containers (never pickled code), and the configuration read back from one.

A checkpoint is all a prediction needs: the configuration says how texts become tokens
(``data.tokenizer``, ``lowercase``, ``data.max_length``), the vocabulary maps them to indices
and ``labels`` names the model's outputs. Checkpoints written before labels were stored are
TREC's six coarse classes (the only dataset there was).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpsearch import config as config_mod
from hpsearch import files
from hpsearch.config import TrainConfig, from_mapping
from hpsearch.errors import ConfigError
from hpsearch.training._data import Vocab
from hpsearch.training._datasets import TREC_COARSE
from hpsearch.training._model import RNNClassifier

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    model: RNNClassifier  # in eval mode, on the CPU
    config: TrainConfig
    itos: list[str]  # the vocabulary, index -> word
    extra: dict[str, Any]
    labels: tuple[str, ...] = TREC_COARSE  # class names, index -> label


def save_checkpoint(
    path: Path,
    model: RNNClassifier,
    cfg: TrainConfig,
    vocab: Vocab,
    extra: dict[str, Any] | None = None,
    *,
    labels: Sequence[str] = TREC_COARSE,
) -> None:
    """Save weights, config, vocabulary and class names as plain tensors and containers (no
    pickled code): everything ``predict`` needs to classify new text without the data.

    ``extra`` must hold only plain values (numbers, strings, lists, dicts, tensors), so that
    ``torch.load(weights_only=True)`` can read it back.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": cfg.to_dict(),
        "itos": list(vocab.itos),
        "num_classes": model.num_classes,
        "labels": list(labels),
        "extra": dict(extra or {}),
    }
    # Never a half-written checkpoint under the real name, nor a stray temporary file.
    files.write_with(Path(path), lambda target: torch.save(payload, target))


def load_checkpoint(path: Path) -> Checkpoint:
    """Rebuild the model of a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # unpickling errors have no common base class
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: not a readable hpsearch checkpoint: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{path}: not an hpsearch checkpoint (format {CHECKPOINT_FORMAT} expected)"
        )
    try:
        cfg = from_mapping(payload["config"], source=f"{path}: config")
        itos = [str(word) for word in payload["itos"]]
        num_classes = int(payload["num_classes"])
        labels = tuple(str(label) for label in payload.get("labels", TREC_COARSE))
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} class names for a model of {num_classes} outputs")
        model = RNNClassifier(cfg, len(itos), num_classes)
        model.load_state_dict(payload["state_dict"])
    except KeyError as exc:
        raise ConfigError(f"{path}: damaged hpsearch checkpoint: no {exc}") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: damaged hpsearch checkpoint: {reason}") from None
    model.eval()
    extra = dict(payload.get("extra") or {})
    return Checkpoint(model=model, config=cfg, itos=itos, extra=extra, labels=labels)


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file, export or ``train --save`` checkpoint as a mapping; a checkpoint gives
    ``{"config": ...}``, the shape of an export."""
    if files.is_zip(path):  # torch.save's format
        return {"config": load_checkpoint(path).config.to_dict()}
    expected = "a YAML/JSON config, an hpsearch export or a train --save checkpoint"
    return files.read_mapping(path, expected=expected)


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """``config.load`` that also takes a checkpoint: its recorded configuration is read."""
    return config_mod.load(path, overrides, reader=read_config_file)
