"""The RNN sentence classifier.

embedding -> dropout -> RNN/GRU/LSTM -> sentence embedding (pooling) -> dropout -> head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from hpsearch.config import TrainConfig
from hpsearch.training._batching import Batch
from hpsearch.training._data import PAD, UNK
from hpsearch.training._rnn import packed_tanh_rnn

_CELLS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNClassifier(nn.Module):
    """Classifies a batch of questions; ``forward(batch)`` returns logits [B, num_classes].

    Padding vs packing: with ``cfg.packed`` the RNN receives a ``PackedSequence`` and never
    sees a pad step, so every hidden state is that of a real token. With ``packed=False``
    (the report's section 1.1 baseline) the padded tensor goes through the RNN as it is: the
    forward direction runs over the pads *after* each question (harmless for outputs at real
    positions, which we read), but the backward direction starts on them.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        vocab_size: int,
        num_classes: int,
        embeddings: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.packed = cfg.packed
        self.pooling = cfg.pooling
        self.word_dropout = cfg.word_dropout
        self.directions = 2 if cfg.bidirectional else 1
        # The packed tanh RNN has a faster CPU implementation (``_rnn``); same weights.
        self.fast_rnn = cfg.cell == "rnn" and cfg.packed and not cfg.bidirectional
        if embeddings is not None:
            if tuple(embeddings.shape) != (vocab_size, cfg.embedding_dim):
                raise ValueError(
                    f"embeddings matrix has shape {tuple(embeddings.shape)}, expected "
                    f"({vocab_size}, {cfg.embedding_dim}) (vocabulary x embedding_dim)"
                )
            # A copy: from_pretrained would train the caller's matrix in place otherwise.
            self.embedding = nn.Embedding.from_pretrained(
                embeddings.to(torch.float32, copy=True),
                freeze=cfg.freeze_embeddings,
                padding_idx=PAD,
            )
        else:
            self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD)
            self.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = _CELLS[cfg.cell](
            cfg.embedding_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            bidirectional=cfg.bidirectional,
            # torch warns when dropout is set on a single layer, where it does nothing.
            dropout=cfg.rnn_dropout if cfg.num_layers > 1 else 0.0,
            batch_first=True,
        )
        width = cfg.hidden_dim * self.directions * (2 if cfg.pooling == "max_mean" else 1)
        if cfg.pooling == "attention":
            self.attention = AttentionPooling(width, cfg.attention_heads)
        layers: list[nn.Module] = []
        for _ in range(cfg.head_layers):
            layers.append(nn.Linear(width, cfg.head_hidden_dim))
            if cfg.head_batchnorm:
                layers.append(nn.BatchNorm1d(cfg.head_hidden_dim))
            layers += [nn.ReLU(), nn.Dropout(cfg.head_dropout)]
            width = cfg.head_hidden_dim
        layers.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, batch: Batch) -> Tensor:
        return self.head(self.dropout(self.encode(batch)))

    def encode(self, batch: Batch) -> Tensor:
        """Sentence embeddings [B, hidden_dim x directions]."""
        if self.packed:
            # Embedding the pre-packed token ids equals packing the embedded batch, without
            # ever embedding a pad or gathering on each forward.
            words = self.dropout(self.embedding(self._drop_words(batch.packed_tokens)))
            if self.fast_rnn and words.device.type == "cpu":
                data, final = packed_tanh_rnn(
                    self.rnn, words, batch.batch_sizes, training=self.training
                )
                if self.pooling == "last":
                    return final
                packed_out = PackedSequence(data, batch.batch_sizes)
            else:
                packed_out, hidden = self.rnn(PackedSequence(words, batch.batch_sizes))
                if self.pooling == "last":
                    return self._final_states(hidden)
            # Pads come back as zeros; the pooling masks them anyway.
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True)
        else:
            words = self.dropout(self.embedding(self._drop_words(batch.tokens)))
            outputs, hidden = self.rnn(words)
            if self.pooling == "last":
                return self._last_padded(outputs, batch.lengths)
        return self._pool(outputs, batch.mask, batch.lengths)

    def _drop_words(self, tokens: Tensor) -> Tensor:
        """In training, each real token becomes <unk> with probability ``word_dropout``."""
        if not self.training or self.word_dropout == 0.0:
            return tokens
        dropped = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
        return tokens.masked_fill(dropped & (tokens != PAD), UNK)

    def _final_states(self, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        # h_n of a packed run is, per direction, the state after the whole question: the
        # forward direction's at its last real token, the backward direction's at its first
        # (it read right to left). The last layer's directions feed the head, concatenated.
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h_n, c_n)
        last_layer = h_n[-self.directions :]  # [directions, B, H]
        return last_layer.transpose(0, 1).reshape(h_n.shape[1], -1)

    def _last_padded(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        # h_n would be the state after the trailing pads, so the forward direction is read at
        # position length-1 instead. The backward direction's "last" state is the one that
        # has read the whole question, at position 0 -- it started on the pads, which is the
        # baseline's defect that packing removes. Without pads both equal the packed path.
        hidden = self.rnn.hidden_size
        rows = torch.arange(outputs.shape[0], device=outputs.device)
        forward = outputs[rows, lengths - 1, :hidden]
        if self.directions == 1:
            return forward
        return torch.cat([forward, outputs[:, 0, hidden:]], dim=1)

    def _pool(self, outputs: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        # Every pooling masks pads explicitly: in the padded path their outputs are real RNN
        # states (of pad inputs), so they must not count.
        valid = mask.unsqueeze(-1)
        if self.pooling == "attention":
            return self.attention(outputs, mask)
        pooled = []  # max_mean: both, in this order
        if self.pooling in ("max", "max_mean"):
            pooled.append(outputs.masked_fill(~valid, float("-inf")).amax(dim=1))
        if self.pooling in ("mean", "max_mean"):
            summed = outputs.masked_fill(~valid, 0.0).sum(dim=1)
            pooled.append(summed / lengths.unsqueeze(1).to(outputs.dtype))
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)


class AttentionPooling(nn.Module):
    """Multi-head attention of one learned query per head over the RNN outputs, pads masked.

    The same function as ``nn.MultiheadAttention`` with a fixed (learned) query, computed
    without projecting every position to keys and values, which cost a third of a BiLSTM
    epoch: for one query, q . (W_k x + b_k) = (W_k^T q) . x + const, and the constant cancels
    in the softmax, so each head scores positions with one learned vector u_h; and since the
    weights sum to one, sum_i a_i (W_v x_i + b_v) = W_v (sum_i a_i x_i) + b_v, so each head
    projects a single pooled vector. Heads are concatenated and mixed by ``out``, as in
    ``nn.MultiheadAttention`` (tests/test_model.py checks the equivalence).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scores = nn.Linear(width, heads, bias=False)  # row h: u_h
        self.value_weight = nn.Parameter(torch.empty(heads, width, width // heads))
        self.value_bias = nn.Parameter(torch.zeros(width))
        self.out = nn.Linear(width, width)
        for head in self.value_weight:  # as nn.MultiheadAttention initialises its projections
            nn.init.xavier_uniform_(head)

    def forward(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """outputs [B, T, width], mask [B, T] (True on real tokens) -> [B, width]."""
        scores = self.scores(outputs).masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(scores, dim=1)  # [B, T, heads], over the positions
        pooled = torch.einsum("bth,btw->bhw", weights, outputs)  # per head: [B, heads, width]
        values = torch.einsum("bhw,hwd->bhd", pooled, self.value_weight)
        return self.out(values.flatten(1) + self.value_bias)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those that train)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
