from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.training._batching import make_batch
from hpsearch.training._data import PAD, Split, Vocab
from hpsearch.training._datasets import Dataset
from hpsearch.training._model import RNNClassifier
from hpsearch.training._train import (
    EpochStats,
    TrainingDiverged,
    clip_grad_norm,
    evaluate,
    make_schedule,
    penalty_value,
    resolve_device,
    set_penalty_grad,
    train,
    train_from_config,
)

VOCAB = 24


def tiny_dataset(n_train: int = 64, n_valid: int = 32) -> Dataset:
    """A learnable toy task: the class is the last word's id modulo 6."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        lengths = torch.randint(1, 8, (n,), generator=g)
        tokens = torch.randint(2, VOCAB, (n, 7), generator=g)
        tokens[torch.arange(7) >= lengths[:, None]] = PAD
        last = tokens[torch.arange(n), lengths - 1]
        return Split(tokens=tokens, lengths=lengths, labels=last % 6)

    itos = ["<pad>", "<unk>", *(f"w{i}" for i in range(VOCAB - 2))]
    vocab = Vocab(itos=itos, stoi={w: i for i, w in enumerate(itos)})
    return Dataset(vocab, split(n_train), split(n_valid), None, {})


DATA = tiny_dataset()


def tiny_cfg(**changes: object) -> TrainConfig:
    base = {
        "embedding_dim": 8,
        "hidden_dim": 12,
        "batch_size": 8,
        "epochs": 3,
        "lr": 0.01,
        "device": "cpu",
    }
    return TrainConfig().replace(**{**base, **changes})


def history_values(history: list[EpochStats]) -> list[tuple[float, ...]]:
    return [(s.train_loss, s.train_acc, s.valid_loss, s.valid_acc, s.penalty) for s in history]


# --- the penalty ---------------------------------------------------------------------------


def autograd_penalty(regularizer: str, alpha: float, model: torch.nn.Module) -> torch.Tensor:
    """The report's definition, literally: alpha * sum over all parameters."""
    if regularizer == "l2":
        return alpha * sum(p.pow(2).sum() for p in model.parameters())
    return alpha * sum(p.abs().sum() for p in model.parameters())


@pytest.mark.parametrize("regularizer", ["l1", "l2"])
def test_penalty_gradient_and_value_match_autograd(regularizer: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0  # |w| at 0: both sides use the subgradient 0
    params = list(model.parameters())
    expected = autograd_penalty(regularizer, 0.03, model)
    expected.backward()
    wanted = [p.grad.clone() for p in params]
    grads = [torch.full_like(p, 7.0) for p in params]  # stale values must be overwritten
    set_penalty_grad(regularizer, 0.03, params, grads)
    for got, want in zip(grads, wanted, strict=True):
        torch.testing.assert_close(got, want)
    assert penalty_value(regularizer, 0.03, params) == pytest.approx(
        float(expected.detach()), rel=1e-6
    )


def test_no_penalty_zeroes_gradients() -> None:
    params = [torch.randn(3, 2), torch.randn(4)]
    grads = [torch.ones(3, 2), torch.ones(4)]
    set_penalty_grad("none", 0.5, params, grads)
    assert all(not g.any() for g in grads)
    assert penalty_value("none", 0.5, params) == 0.0


@pytest.mark.parametrize("regularizer", ["l1", "l2"])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_training_step_equals_autograd_penalty(regularizer: str, clip: float | None) -> None:
    """The trainer's mechanism (penalty gradient written first, sparse embedding gradient
    accumulated in place, cheap clipping) gives the report's gradient exactly."""
    cfg = tiny_cfg(dropout=0.0, regularizer=regularizer, alpha=0.01, grad_clip=clip)
    torch.manual_seed(0)
    ours = RNNClassifier(cfg, VOCAB, 6)
    reference = copy.deepcopy(ours)
    batch = make_batch(DATA.train.tokens[:8], DATA.train.lengths[:8], DATA.train.labels[:8])

    loss = F.cross_entropy(reference(batch), batch.labels)
    (loss + autograd_penalty(regularizer, cfg.alpha, reference)).backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)

    ours.embedding.sparse = True
    params = list(ours.parameters())
    for p in params:
        p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    pointers = [g.data_ptr() for g in grads]
    for _ in range(2):  # the second round proves the buffers are reset, not accumulated
        set_penalty_grad(regularizer, cfg.alpha, params, grads)
        F.cross_entropy(ours(batch), batch.labels).backward()
        if clip is not None:
            clip_grad_norm(grads, clip)
    assert [p.grad.data_ptr() for p in params] == pointers  # updated in place
    assert not ours.embedding.weight.grad.is_sparse
    for (name, p), q in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("max_norm", [0.01, 1e6])
def test_clip_grad_norm_matches_torch(max_norm: float) -> None:
    grads = [torch.randn(5, 3), torch.randn(7)]
    expected = [g.clone() for g in grads]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in expected]
    for p, g in zip(params, expected, strict=True):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    clip_grad_norm(grads, max_norm)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


# --- the loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "adadelta", "adagrad", "rmsprop"])
def test_every_optimizer_trains(optimizer: str) -> None:
    cfg = tiny_cfg(optimizer=optimizer, momentum=0.5 if optimizer in ("sgd", "rmsprop") else 0.0)
    torch.manual_seed(cfg.seed)
    initial = RNNClassifier(cfg, VOCAB, 6).state_dict()
    result = train(cfg, DATA)
    assert len(result.history) == 3
    assert all(0 < s.train_loss < 10 for s in result.history)
    moved = [k for k, v in result.model.state_dict().items() if not torch.equal(v, initial[k])]
    assert "embedding.weight" in moved and "rnn.weight_hh_l0" in moved


def test_same_seed_same_history_other_seed_differs() -> None:
    cfg = tiny_cfg(dropout=0.2)
    first, second = train(cfg, DATA), train(cfg, DATA)
    assert history_values(first.history) == history_values(second.history)
    for key, value in first.best_state.items():
        assert torch.equal(value, second.best_state[key]), key
    other = train(cfg.replace(seed=1), DATA)
    assert history_values(other.history) != history_values(first.history)


def test_cosine_schedule_falls_from_lr_to_zero_over_all_steps() -> None:
    cfg = tiny_cfg(lr_schedule="cosine", lr=0.4)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = make_schedule(cfg, optimizer, steps=10)
    assert schedule is not None
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen[0] == pytest.approx(0.4) and seen[5] == pytest.approx(0.2)
    assert seen == sorted(seen, reverse=True)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert make_schedule(tiny_cfg(), optimizer, steps=10) is None


@pytest.mark.parametrize(
    "change", [{"lr_schedule": "cosine"}, {"label_smoothing": 0.1}, {"word_dropout": 0.2}]
)
def test_each_regularising_option_changes_training_and_its_default_does_not(
    change: dict[str, object],
) -> None:
    base = train(tiny_cfg(), DATA)
    field = next(iter(change))
    default = train(tiny_cfg(**{field: TrainConfig().to_dict()[field]}), DATA)
    assert history_values(default.history) == history_values(base.history)
    other = train(tiny_cfg(**change), DATA)
    assert history_values(other.history) != history_values(base.history)


def test_label_smoothing_is_torchs_smoothed_cross_entropy() -> None:
    cfg = tiny_cfg(label_smoothing=0.2, epochs=1, dropout=0.0, lr=1e-12)
    torch.manual_seed(cfg.seed)
    model = RNNClassifier(cfg, VOCAB, 6)
    result = train(cfg, DATA)  # lr ~0: the weights barely move during the one epoch
    batch = make_batch(DATA.train.tokens, DATA.train.lengths, DATA.train.labels)
    with torch.no_grad():
        expected = F.cross_entropy(model(batch), batch.labels, label_smoothing=0.2)
        plain = F.cross_entropy(model(batch), batch.labels)
    assert result.history[0].train_loss == pytest.approx(float(expected), rel=1e-4)
    assert abs(float(plain) - float(expected)) > 1e-3


def test_callback_gets_every_epoch_and_its_exception_propagates() -> None:
    seen: list[EpochStats] = []
    result = train(tiny_cfg(), DATA, on_epoch=seen.append)
    assert seen == result.history
    assert [s.epoch for s in seen] == [1, 2, 3]
    assert all(s.seconds > 0 and s.penalty > 0 for s in seen)

    class Stop(Exception):
        pass

    calls: list[int] = []

    def stop_at_two(stats: EpochStats) -> None:
        calls.append(stats.epoch)
        if stats.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(tiny_cfg(epochs=5), DATA, on_epoch=stop_at_two)
    assert calls == [1, 2]


def test_non_finite_loss_raises_training_diverged() -> None:
    cfg = tiny_cfg(optimizer="sgd", lr=1e6, grad_clip=None)
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+, batch \d+; lower lr or enable"):
        train(cfg, DATA)


def test_best_state_is_the_best_epochs_weights() -> None:
    cfg = tiny_cfg(epochs=6, lr=0.1)
    result = train(cfg, DATA)
    accs = [s.valid_acc for s in result.history]
    assert result.best_valid_acc == max(accs)
    assert result.best_epoch == accs.index(max(accs)) + 1  # the first of equals
    assert result.best_epoch < cfg.epochs, "pick a toy setting whose best epoch is not the last"
    # Epoch k trains identically whatever the epoch budget, so a run stopped at the best
    # epoch ends with exactly the best weights.
    stopped = train(cfg.replace(epochs=result.best_epoch), DATA)
    final = result.model.state_dict()
    assert any(not torch.equal(v, final[k]) for k, v in result.best_state.items())
    for key, value in stopped.model.state_dict().items():
        assert result.best_state[key].device.type == "cpu"
        assert torch.equal(result.best_state[key], value), key
    model = copy.deepcopy(result.model)
    model.load_state_dict(result.best_state)
    assert evaluate(model, DATA.valid, "cpu")[1] == result.best_valid_acc


def test_evaluate_matches_a_direct_computation() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(tiny_cfg(), VOCAB, 6)
    model.train()
    loss, acc = evaluate(model, DATA.valid, "cpu")
    assert model.training  # mode restored
    model.eval()
    split = DATA.valid
    with torch.no_grad():
        logits = model(make_batch(split.tokens, split.lengths, split.labels))
    labels = make_batch(split.tokens, split.lengths, split.labels).labels
    assert loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(1) == labels).float().mean()))


def test_frozen_embeddings_stay_put() -> None:
    cfg = tiny_cfg(freeze_embeddings=True)
    torch.manual_seed(cfg.seed)
    initial = RNNClassifier(cfg, VOCAB, 6).embedding.weight.detach().clone()
    result = train(cfg, DATA)
    assert torch.equal(result.model.embedding.weight, initial)


def test_unavailable_device_is_a_config_error() -> None:
    assert resolve_device("cpu").type == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device: 'cuda' is not available"):
        resolve_device("cuda")


def test_train_from_config_scores_the_test_set(trec_dir: Path) -> None:
    cfg = TrainConfig(epochs=1, embedding_dim=16, hidden_dim=16, threads=1, device="cpu")
    result, dataset = train_from_config(cfg, trec_dir, with_test=True)
    assert dataset.test is not None and len(dataset.test) == 500
    assert result.test_acc is not None and 0.2 < result.test_acc <= 1.0
    plain, _ = train_from_config(cfg, trec_dir)
    assert plain.test_acc is None


def test_train_from_config_uses_the_pretrained_matrix(
    trec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hpsearch.training._embeddings

    matrices: list[torch.Tensor] = []

    def fake_matrix(vocab: Vocab, cfg: TrainConfig) -> tuple[torch.Tensor, int]:
        matrices.append(torch.randn(len(vocab), cfg.embedding_dim))
        return matrices[-1], len(vocab)

    monkeypatch.setattr(hpsearch.training._embeddings, "build_embedding_matrix", fake_matrix)
    cfg = TrainConfig(
        epochs=1,
        embedding_dim=4,
        hidden_dim=4,
        embeddings="glove-6b-50d",
        freeze_embeddings=True,
        device="cpu",
    )
    result, _ = train_from_config(cfg, trec_dir)
    (matrix,) = matrices
    assert torch.equal(result.model.embedding.weight, matrix)
