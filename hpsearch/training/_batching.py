"""Length-bucketed batches, built as ready-to-pack tensors.

Each batch holds questions of (nearly) the same length, sorted longest first and trimmed to
its longest question, together with everything ``PackedSequence`` needs: the token ids
already in packed (time-major) order and the per-step batch sizes. The model then packs for
free: it embeds ``packed_tokens`` directly instead of embedding pads and gathering them away
with ``pack_padded_sequence`` on every forward, which the seed report found costly.

Training batches change every epoch: questions are sorted by (length, random tie-break), cut
into batches, and the batch order is shuffled, all from a generator seeded with
``seed + epoch``, so a run is reproducible and every epoch sees different batches. An
epoch's batches are built once, before its first step; the split's tensors themselves are
encoded once per process (``_data``).

On a GPU the batches are built on the CPU and an epoch's worth is copied over at once, one
copy per field (``_to_device``): a copy per tensor per batch would be five host syncs per
step, and a CUDA epoch of this small model is bound by the host, not the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from hpsearch.training._data import Split

EVAL_BATCH_SIZE = 512  # no gradients kept, so larger batches only save per-batch overhead


@dataclass(frozen=True)
class Batch:
    """One batch, sorted by length descending (as ``PackedSequence`` requires)."""

    tokens: Tensor  # int64 [B, T], T = longest length in the batch, right-padded with PAD
    lengths: Tensor  # int64 [B], descending
    labels: Tensor  # int64 [B]
    mask: Tensor  # bool [B, T], True on real tokens
    packed_tokens: Tensor  # int64 [sum(lengths)]: tokens in PackedSequence.data order
    batch_sizes: Tensor  # int64 [T] on CPU (PackedSequence insists): sequences alive per step

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_batch(
    tokens: Tensor, lengths: Tensor, labels: Tensor, device: torch.device | str = "cpu"
) -> Batch:
    """A batch from padded rows in any order; rows are re-sorted by length, descending."""
    order = torch.argsort(lengths, descending=True, stable=True)
    return _to_device([_gather(tokens, lengths, labels, order)], torch.device(device))[0]


def _gather(tokens: Tensor, lengths: Tensor, labels: Tensor, rows: Tensor) -> Batch:
    """Batch of ``rows`` (already sorted by length, descending), on the CPU."""
    batch_lengths = lengths[rows]
    width = int(batch_lengths[0])
    batch_tokens = tokens[rows, :width]
    mask = torch.arange(width) < batch_lengths[:, None]
    # Time-major boolean indexing yields step 0 of every row, then step 1 of the rows still
    # running, ...: exactly PackedSequence.data order because rows are sorted descending.
    packed_tokens = batch_tokens.t()[mask.t()]
    batch_sizes = mask.sum(dim=0)
    return Batch(
        tokens=batch_tokens,
        lengths=batch_lengths,
        labels=labels[rows],
        mask=mask,
        packed_tokens=packed_tokens,
        batch_sizes=batch_sizes,
    )


_MOVED = tuple(f.name for f in fields(Batch) if f.name != "batch_sizes")  # stays on the CPU


def _to_device(batches: list[Batch], device: torch.device, *, force: bool = False) -> list[Batch]:
    """CPU ``batches`` on ``device``: per field, one buffer and one copy for all of them; each
    batch's tensors are views into the buffers. ``force`` does it on the CPU too (tests)."""
    if (device.type == "cpu" and not force) or not batches:
        return batches
    views: list[dict[str, Tensor]] = [{} for _ in batches]
    for name in _MOVED:
        parts = [getattr(b, name) for b in batches]
        flat = torch.cat([t.reshape(-1) for t in parts]).to(device)
        pieces = flat.split([t.numel() for t in parts])
        for out, piece, part in zip(views, pieces, parts, strict=True):
            out[name] = piece.view(part.shape)
    return [Batch(**v, batch_sizes=b.batch_sizes) for v, b in zip(views, batches, strict=True)]


class TrainBatches:
    """The training split as shuffled, length-bucketed batches; one list per epoch.

    Batches are cut with ``tensor_split`` into ``ceil(N / batch_size)`` near-equal parts
    (sizes differ by at most one), so there is never a tiny last batch: a batch of one
    would break BatchNorm in the head and give one noisy step per epoch.
    """

    def __init__(
        self, split: Split, batch_size: int, *, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        if len(split) == 0:
            raise ValueError("cannot batch an empty split")
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self.num_batches = -(-len(split) // batch_size)
        # Integer lengths scaled so that a random tie-break in [0, 1) never crosses lengths.
        self._length_keys = split.lengths.to(torch.float64)

    def __len__(self) -> int:
        return self.num_batches

    def epoch(self, epoch: int) -> list[Batch]:
        """The batches of ``epoch``; the same (seed, epoch) always gives the same batches."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.split)
        keys = self._length_keys + torch.rand(n, generator=generator, dtype=torch.float64)
        order = torch.argsort(keys, descending=True)
        chunks = torch.tensor_split(order, self.num_batches)
        shuffled = torch.randperm(self.num_batches, generator=generator).tolist()
        s = self.split
        batches = [_gather(s.tokens, s.lengths, s.labels, chunks[i]) for i in shuffled]
        return _to_device(batches, self.device)


def eval_batches(
    split: Split, device: torch.device | str = "cpu", batch_size: int = EVAL_BATCH_SIZE
) -> list[Batch]:
    """Fixed length-bucketed batches for evaluation, longest first; built once per split."""
    order = torch.argsort(split.lengths, descending=True, stable=True)
    batches = [
        _gather(split.tokens, split.lengths, split.labels, rows)
        for rows in torch.split(order, batch_size)
    ]
    return _to_device(batches, torch.device(device))
