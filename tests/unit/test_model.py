from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.training._batching import Batch, make_batch
from hpsearch.training._checkpoint import load_checkpoint, save_checkpoint
from hpsearch.training._data import PAD, UNK, Split, Vocab
from hpsearch.training._datasets import Dataset
from hpsearch.training._model import AttentionPooling, RNNClassifier, count_parameters
from hpsearch.training._train import train

VOCAB = 20
CLASSES = 6
CELLS = ("rnn", "gru", "lstm")
POOLINGS = ("last", "mean", "max", "attention", "max_mean")


def tiny_cfg(**changes: object) -> TrainConfig:
    base = {"embedding_dim": 8, "hidden_dim": 6, "dropout": 0.0, "device": "cpu"}
    return TrainConfig().replace(**{**base, **changes})


def model_for(cfg: TrainConfig, seed: int = 0) -> RNNClassifier:
    torch.manual_seed(seed)
    return RNNClassifier(cfg, VOCAB, CLASSES).eval()


def rows(*lengths: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    tokens = torch.randint(2, VOCAB, (len(lengths), width), generator=g)
    lens = torch.tensor(lengths)
    tokens[torch.arange(width) >= lens[:, None]] = PAD
    return tokens, lens


def batch_of(tokens: torch.Tensor, lengths: torch.Tensor) -> Batch:
    # Labels carry the row number so results can be put back in input order.
    return make_batch(tokens, lengths, torch.arange(len(lengths)))


def in_input_order(model: RNNClassifier, batch: Batch) -> torch.Tensor:
    out = model(batch)
    return out[torch.argsort(batch.labels)]


@pytest.mark.parametrize(
    ("cell", "bidirectional", "pooling", "packed"),
    list(itertools.product(CELLS, (False, True), POOLINGS, (True, False))),
)
def test_output_shapes(cell: str, bidirectional: bool, pooling: str, packed: bool) -> None:
    cfg = tiny_cfg(
        cell=cell, bidirectional=bidirectional, pooling=pooling, packed=packed, num_layers=2
    )
    model = model_for(cfg)
    batch = batch_of(*rows(5, 3, 1, 4))
    width = 6 * (2 if bidirectional else 1) * (2 if pooling == "max_mean" else 1)
    assert model.encode(batch).shape == (4, width)
    assert model(batch).shape == (4, CLASSES)


@pytest.mark.parametrize(
    ("cell", "bidirectional", "pooling", "packed"),
    [
        *itertools.product(CELLS, (False, True), POOLINGS, (True,)),
        # Unpacked, the forward direction reaches pads only after the real tokens.
        *itertools.product(CELLS, (False,), POOLINGS, (False,)),
    ],
)
def test_pooling_ignores_padding(
    cell: str, bidirectional: bool, pooling: str, packed: bool
) -> None:
    cfg = tiny_cfg(cell=cell, bidirectional=bidirectional, pooling=pooling, packed=packed)
    model = model_for(cfg)
    tokens, lengths = rows(6, 2, 4, 1)
    batched = in_input_order(model, batch_of(tokens, lengths))
    for i, n in enumerate(lengths.tolist()):
        alone = model(batch_of(tokens[i : i + 1, :n], lengths[i : i + 1]))
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-5, atol=1e-6)


def test_max_mean_pooling_concatenates_max_and_mean() -> None:
    both = model_for(tiny_cfg(cell="gru", pooling="max_mean"))
    batch = batch_of(*rows(5, 3, 1))
    pooled = both.encode(batch)
    for half, pooling in ((pooled[:, :6], "max"), (pooled[:, 6:], "mean")):
        one = model_for(tiny_cfg(cell="gru", pooling=pooling))
        one.rnn.load_state_dict(both.rnn.state_dict())
        one.embedding.load_state_dict(both.embedding.state_dict())
        torch.testing.assert_close(half, one.encode(batch))


def test_word_dropout_turns_real_tokens_into_unk_in_training_only() -> None:
    model = model_for(tiny_cfg(word_dropout=0.5))
    tokens, _ = rows(40, 30, 10)
    torch.manual_seed(0)
    model.train()
    dropped = model._drop_words(tokens)
    changed = dropped != tokens
    assert torch.all(dropped[changed] == UNK)
    assert not torch.any(changed[tokens == PAD])  # pads stay pads
    share = float(changed.sum()) / float((tokens != PAD).sum())
    assert 0.35 < share < 0.65
    model.eval()
    assert torch.equal(model._drop_words(tokens), tokens)
    assert torch.equal(model_for(tiny_cfg()).train()._drop_words(tokens), tokens)


def test_padded_path_backward_direction_sees_pads() -> None:
    # The report's baseline defect, kept on purpose for packed=False: without packing the
    # backward direction starts on the pads, so padding changes the result.
    model = model_for(tiny_cfg(bidirectional=True, packed=False))
    tokens, lengths = rows(6, 2)
    batched = in_input_order(model, batch_of(tokens, lengths))
    alone = model(batch_of(tokens[1:, :2], lengths[1:]))
    assert not torch.allclose(batched[1:], alone, atol=1e-4)


@pytest.mark.parametrize(
    ("cell", "bidirectional", "pooling"),
    list(itertools.product(CELLS, (False, True), POOLINGS)),
)
def test_packed_and_padded_agree_without_padding(
    cell: str, bidirectional: bool, pooling: str
) -> None:
    cfg = tiny_cfg(cell=cell, bidirectional=bidirectional, pooling=pooling)
    packed = model_for(cfg)
    padded = RNNClassifier(cfg.replace(packed=False), VOCAB, CLASSES).eval()
    padded.load_state_dict(packed.state_dict())
    batch = batch_of(*rows(5, 5, 5))
    torch.testing.assert_close(packed(batch), padded(batch), rtol=1e-5, atol=1e-6)


def test_attention_pooling_equals_multihead_attention_with_a_learned_query() -> None:
    torch.manual_seed(0)
    width, heads, d = 8, 2, 4
    mha = nn.MultiheadAttention(width, heads, batch_first=True)
    with torch.no_grad():  # nonzero biases, so that the test covers them
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    query = torch.randn(width)
    pooling = AttentionPooling(width, heads)
    w_q, w_k, w_v = mha.in_proj_weight.split(width)
    b_q, _, b_v = mha.in_proj_bias.split(width)
    q = (w_q @ query + b_q).view(heads, d)
    with torch.no_grad():
        for h in range(heads):
            rows = slice(h * d, (h + 1) * d)
            pooling.scores.weight[h] = w_k[rows].t() @ q[h] / d**0.5
            pooling.value_weight[h] = w_v[rows].t()
        pooling.value_bias.copy_(b_v)
        pooling.out.load_state_dict(mha.out_proj.state_dict())

    outputs = torch.randn(3, 5, width)
    lengths = torch.tensor([5, 2, 3])
    mask = torch.arange(5) < lengths[:, None]
    expected, _ = mha(query.expand(3, 1, width), outputs, outputs, key_padding_mask=~mask)
    torch.testing.assert_close(pooling(outputs, mask), expected[:, 0])


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_cpu_tanh_rnn_path_equals_nn_rnn(pooling: str, num_layers: int) -> None:
    # The packed plain RNN runs hpsearch.rnn on the CPU; the model must not notice.
    model = model_for(tiny_cfg(cell="rnn", pooling=pooling, num_layers=num_layers))
    assert model.fast_rnn
    batch = batch_of(*rows(5, 5, 3, 1, 4))
    fast = model(batch)
    model.fast_rnn = False
    torch.testing.assert_close(fast, model(batch))
    assert not model_for(tiny_cfg(cell="rnn", bidirectional=True)).fast_rnn
    assert not model_for(tiny_cfg(cell="rnn", packed=False)).fast_rnn
    assert not model_for(tiny_cfg(cell="gru")).fast_rnn


def test_fc_head_with_batchnorm() -> None:
    cfg = tiny_cfg(head_layers=2, head_hidden_dim=7, head_batchnorm=True, head_dropout=0.1)
    model = model_for(cfg)
    kinds = [type(m) for m in model.head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    batch = batch_of(*rows(3, 2, 4))
    model.train()
    model(batch).sum().backward()  # batch statistics in training
    assert model.head[1].num_batches_tracked.item() == 1
    model.eval()
    assert model(batch).shape == (3, CLASSES)


def test_count_parameters() -> None:
    model = model_for(tiny_cfg())  # rnn, emb 8, hidden 6
    embedding, rnn, head = VOCAB * 8, 6 * 8 + 6 * 6 + 6 + 6, 6 * CLASSES + CLASSES
    assert count_parameters(model) == embedding + rnn + head
    frozen = model_for(tiny_cfg(freeze_embeddings=True))
    assert count_parameters(frozen, trainable_only=True) == rnn + head


def test_pretrained_embeddings_are_copied_and_checked() -> None:
    matrix = torch.randn(VOCAB, 8)
    matrix[PAD] = 0
    model = RNNClassifier(tiny_cfg(freeze_embeddings=True), VOCAB, CLASSES, matrix)
    assert torch.equal(model.embedding.weight, matrix)
    assert model.embedding.weight.data_ptr() != matrix.data_ptr()  # training must not alter it
    assert not model.embedding.weight.requires_grad
    assert model.embedding.padding_idx == PAD
    with pytest.raises(ValueError, match=r"\(20, 8\)"):
        RNNClassifier(tiny_cfg(), VOCAB, CLASSES, torch.randn(VOCAB, 9))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = tiny_cfg(cell="lstm", pooling="attention", head_layers=1, head_batchnorm=True)
    model = model_for(cfg)
    vocab = Vocab(itos=["<pad>", "<unk>", *(f"w{i}" for i in range(VOCAB - 2))], stoi={})
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, cfg, vocab, {"valid_acc": 0.5, "epoch": 3})
    # Plain tensors and containers only: readable without unpickling any class.
    assert set(torch.load(path, weights_only=True)) >= {"state_dict", "config", "itos"}
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    assert loaded.itos == vocab.itos
    assert loaded.extra == {"valid_acc": 0.5, "epoch": 3}
    assert not loaded.model.training
    batch = batch_of(*rows(4, 2, 3))
    torch.testing.assert_close(loaded.model(batch), model(batch), rtol=0, atol=0)


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an hpsearch checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def tiny_dataset(n_train: int = 48, n_valid: int = 16) -> Dataset:
    def split(n: int, seed: int) -> Split:
        tokens, lengths = rows(*torch.randint(1, 7, (n,)).tolist(), seed=seed)
        return Split(tokens=tokens, lengths=lengths, labels=tokens[:, 0] % CLASSES)

    torch.manual_seed(0)
    itos = ["<pad>", "<unk>", *(f"w{i}" for i in range(VOCAB - 2))]
    vocab = Vocab(itos=itos, stoi={w: i for i, w in enumerate(itos)})
    return Dataset(vocab, split(n_train, 1), split(n_valid, 2), None, {})


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_trains_one_epoch(cell: str) -> None:
    cfg = tiny_cfg(cell=cell, epochs=1, batch_size=8, lr=0.01, bidirectional=True)
    result = train(cfg, tiny_dataset())
    (stats,) = result.history
    assert stats.train_loss > 0 and 0 <= stats.valid_acc <= 1
    assert result.num_parameters == count_parameters(result.model)
