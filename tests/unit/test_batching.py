from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from hpsearch.training._batching import Batch, TrainBatches, _to_device, eval_batches, make_batch
from hpsearch.training._data import PAD, Split


def tiny_split(n: int = 103, max_len: int = 9, seed: int = 0) -> Split:
    """Random questions whose label is their row number, so every example is identifiable."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    tokens = torch.randint(2, 50, (n, max_len), generator=g)
    tokens[torch.arange(max_len) >= lengths[:, None]] = PAD
    return Split(tokens=tokens, lengths=lengths, labels=torch.arange(n))


def check_batch(batch: Batch, split: Split) -> None:
    rows = batch.labels  # labels are row numbers
    assert torch.equal(batch.lengths, split.lengths[rows])
    assert bool((batch.lengths[:-1] >= batch.lengths[1:]).all()), "not sorted descending"
    width = int(batch.lengths.max())
    assert batch.tokens.shape == (len(rows), width)  # trimmed to the batch's longest
    assert torch.equal(batch.tokens, split.tokens[rows, :width])
    assert torch.equal(batch.mask, batch.tokens != PAD)
    expected = pack_padded_sequence(batch.tokens, batch.lengths, batch_first=True)
    assert torch.equal(batch.packed_tokens, expected.data)
    assert torch.equal(batch.batch_sizes, expected.batch_sizes)
    assert batch.batch_sizes.device.type == "cpu"


def test_every_example_once_per_epoch_in_sorted_packable_batches() -> None:
    split = tiny_split()
    batches = TrainBatches(split, 10, seed=3)
    for epoch in (1, 2):
        epoch_batches = batches.epoch(epoch)
        assert len(epoch_batches) == len(batches) == 11  # ceil(103 / 10)
        seen = torch.cat([b.labels for b in epoch_batches])
        assert sorted(seen.tolist()) == list(range(len(split)))
        sizes = [len(b) for b in epoch_batches]
        assert max(sizes) <= 10 and max(sizes) - min(sizes) <= 1  # no tiny last batch
        for batch in epoch_batches:
            check_batch(batch, split)


def test_batches_are_bucketed_by_length() -> None:
    split = tiny_split(n=200)
    ranges = sorted(
        (int(b.lengths.min()), int(b.lengths.max()))
        for b in TrainBatches(split, 16, seed=0).epoch(1)
    )
    # Cut from one length-sorted order: batch length ranges touch but never interleave.
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high <= low


def order(batches: list[Batch]) -> list[list[int]]:
    return [b.labels.tolist() for b in batches]


def test_epochs_shuffle_differently_and_seeds_reproduce() -> None:
    split = tiny_split()
    first = TrainBatches(split, 8, seed=5)
    again = TrainBatches(split, 8, seed=5)
    other = TrainBatches(split, 8, seed=6)
    assert order(first.epoch(1)) == order(again.epoch(1))
    assert order(first.epoch(2)) == order(again.epoch(2))
    assert order(first.epoch(1)) != order(first.epoch(2))
    assert order(first.epoch(1)) != order(other.epoch(1))
    # Both the batch order and the membership change (ties broken at random).
    assert sorted(map(sorted, order(first.epoch(1)))) != sorted(map(sorted, order(first.epoch(2))))


def test_eval_batches_are_fixed_cover_everything_and_respect_size() -> None:
    split = tiny_split()
    batches = eval_batches(split, batch_size=32)
    assert [len(b) for b in batches] == [32, 32, 32, 7]
    assert sorted(torch.cat([b.labels for b in batches]).tolist()) == list(range(len(split)))
    assert order(batches) == order(eval_batches(split, batch_size=32))
    for batch in batches:
        check_batch(batch, split)


def test_make_batch_sorts_any_rows() -> None:
    split = tiny_split(n=12)
    batch = make_batch(split.tokens, split.lengths, split.labels)
    check_batch(batch, split)
    assert sorted(batch.labels.tolist()) == list(range(12))


def test_empty_split_is_refused() -> None:
    empty = Split(
        tokens=torch.zeros(0, 1, dtype=torch.long),
        lengths=torch.zeros(0, dtype=torch.long),
        labels=torch.zeros(0, dtype=torch.long),
    )
    with pytest.raises(ValueError, match="empty"):
        TrainBatches(empty, 4, seed=0)


def test_to_device_copies_each_field_once_and_keeps_every_value() -> None:
    split = tiny_split()
    batches = TrainBatches(split, 4, seed=0).epoch(1)
    moved = _to_device(batches, torch.device("cpu"), force=True)
    assert _to_device(batches, torch.device("cpu")) is batches  # nothing to do on the CPU
    for before, after in zip(batches, moved, strict=True):
        for name in ("tokens", "lengths", "labels", "mask", "packed_tokens", "batch_sizes"):
            old, new = getattr(before, name), getattr(after, name)
            assert torch.equal(old, new) and old.dtype == new.dtype, name
        assert after.batch_sizes is before.batch_sizes  # PackedSequence wants it on the CPU
    # One buffer per field for the whole epoch: every batch's tokens view the same storage.
    storages = {b.tokens.untyped_storage().data_ptr() for b in moved}
    assert len(storages) == 1
