"""A trained model applied to new text: tokenized and encoded exactly as in training, then
classified in length-sorted, packed batches.

Texts are sorted by length and cut into batches of similar lengths (as evaluation does), so a
batch pads little and packs for free; the probabilities are put back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hpsearch.config import TrainConfig
from hpsearch.training._batching import make_batch
from hpsearch.training._checkpoint import Checkpoint
from hpsearch.training._data import PAD, UNK, Vocab
from hpsearch.training._datasets import tokenize
from hpsearch.training._model import RNNClassifier

BATCH_SIZE = 512


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most probable classes of one text, most probable first."""

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]


class Classifier:
    """A trained model with what it needs to classify raw text: vocabulary, class names and
    its configuration (``hpsearch.load_model`` returns one)."""

    def __init__(
        self,
        model: RNNClassifier,
        config: TrainConfig,
        itos: Sequence[str],
        classes: Sequence[str],
        *,
        source: str = "",
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.classes: tuple[str, ...] = tuple(classes)
        self.vocab = Vocab(itos=list(itos), stoi={word: i for i, word in enumerate(itos)})
        self.source = source  # where it was loaded from, for messages

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, *, source: str = "") -> Classifier:
        return cls(
            checkpoint.model,
            checkpoint.config,
            checkpoint.itos,
            checkpoint.labels,
            source=source,
        )

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<Classifier{where}: {len(self.classes)} classes, {len(self.vocab)} words>"

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; unknown words are ``<unk>`` and an empty text is one
        ``<unk>`` (the model needs a step to read)."""
        ids = self.vocab.encode(tokenize(text, self.config.data, lowercase=self.config.lowercase))
        return ids or [UNK]

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Class probabilities, float32 [len(texts), len(classes)], rows in input order."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts, not one string")
        encoded = [self.encode(text) for text in texts]
        out = np.empty((len(encoded), len(self.classes)), dtype=np.float32)
        if not encoded:
            return out
        lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.int64)
        order = torch.argsort(lengths, descending=True, stable=True)
        for rows in torch.split(order, batch_size):
            chunk_lengths = lengths[rows]
            tokens = np.full((len(rows), int(chunk_lengths[0])), PAD, dtype=np.int64)
            for i, row in enumerate(rows.tolist()):
                tokens[i, : len(encoded[row])] = encoded[row]
            labels = torch.zeros(len(rows), dtype=torch.int64)  # unused by the forward pass
            logits = self.model(make_batch(torch.from_numpy(tokens), chunk_lengths, labels))
            out[rows.numpy()] = torch.softmax(logits, dim=1).numpy()
        return out

    def predict(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> list[str]:
        """The most probable class name of each text."""
        best = self.predict_proba(texts, batch_size=batch_size).argmax(axis=1)
        return [self.classes[i] for i in best.tolist()]

    def top(
        self, texts: Sequence[str], k: int = 1, *, batch_size: int = BATCH_SIZE
    ) -> list[Prediction]:
        """The ``k`` most probable classes of each text (1 <= k <= number of classes)."""
        if not 1 <= k <= len(self.classes):
            raise ValueError(f"k must be in [1, {len(self.classes)}], got {k}")
        probs = self.predict_proba(texts, batch_size=batch_size)
        # Stable sort on the negated row: equal probabilities keep class order.
        ranked = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            Prediction(
                labels=tuple(self.classes[i] for i in row),
                probabilities=tuple(float(p) for p in probs[n, row]),
            )
            for n, row in enumerate(ranked.tolist())
        ]
