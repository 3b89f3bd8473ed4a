"""Training: one configuration, epoch by epoch; the whole loop reads top to bottom in ``train``.

Why the loop looks the way it does (benchmarks/epoch.py measures it):

* With torch's default Adam, the step over the ~0.9M weights (mostly the embedding) costs
  more than the RNN's forward and backward together. The L2 penalty gives every weight a
  gradient every step, so no exact sparse update exists; the fused (single pass) kernels of
  Adam/AdamW/SGD/Adagrad are used instead, far cheaper on CPU.
* The penalty alpha * sum(w^2) (or alpha * sum|w|) over all parameters is not an autograd
  term: its exact gradient, 2 * alpha * w (or alpha * sign(w)), is written into the gradient
  buffers before the backward pass, which accumulates the data gradient on top. The same
  gradient as autograd's (tests/test_train.py checks it), without a graph over all weights.
  ``EpochStats.train_loss`` is therefore the cross-entropy alone (comparable with
  ``valid_loss``); ``EpochStats.penalty`` reports the penalty's value.
* The gradient buffers persist across steps and, on the CPU, the embedding emits a sparse
  gradient, which autograd adds in place into the dense buffer: no [vocab x dim] allocation,
  zero-fill and copy per step. Writing the penalty gradient doubles as the zeroing.
* Batches come length-bucketed and pre-packed (``_batching``), and nothing is read back
  to the host per batch: losses stay tensors until the end of the epoch, where a non-finite
  one is located and reported as ``TrainingDiverged``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.training._batching import Batch, TrainBatches, eval_batches
from hpsearch.training._data import Split
from hpsearch.training._datasets import Dataset, load_dataset
from hpsearch.training._model import RNNClassifier, count_parameters


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: a property of the hyperparameters, not a bug."""


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    # mean cross-entropy over the epoch's examples (label smoothing in, penalty not)
    train_loss: float
    train_acc: float  # on the training batches as trained (dropout on, weights moving)
    valid_loss: float
    valid_acc: float
    seconds: float  # training and validation of this epoch
    penalty: float = 0.0  # alpha * sum(w^2) or alpha * sum|w| after the epoch; 0 for "none"
    valid_f1: float = math.nan  # macro-F1 over the classes in the labels or the predictions

    def score(self, metric: str) -> float:
        """The validation score ``metric`` names (a config's ``metric``)."""
        return self.valid_f1 if metric == "macro_f1" else self.valid_acc


@dataclass(frozen=True)
class TrainResult:
    history: list[EpochStats]
    best_valid_acc: float  # the best epoch's (the epoch the config's metric chose)
    best_epoch: int
    best_state: dict[str, Tensor]  # CPU copy of the best epoch's weights
    model: RNNClassifier  # holds the LAST epoch's weights; load best_state for the best
    num_parameters: int
    seconds: float
    test_acc: float | None = None  # best-epoch weights on the test set, when asked for
    best_score: float = math.nan  # the config's metric at the best epoch
    best_valid_f1: float = math.nan
    test_f1: float | None = None  # macro-F1 beside test_acc


def resolve_device(name: str, *, source: str = "config") -> torch.device:
    """``auto``: cuda, then mps, then cpu; an explicit device must be available (errors
    name ``source``, where the device was set)."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"{source}: device: {name!r} is not available here; use auto or cpu")
    return torch.device(name)


def make_optimizer(
    cfg: TrainConfig, params: Sequence[torch.nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """The configured optimiser; fused kernels where torch has them for this device."""
    fused = True if device.type in ("cpu", "cuda") else None
    decay = cfg.weight_decay
    match cfg.optimizer:
        case "sgd":
            return torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=decay, fused=fused
            )
        case "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=decay, fused=fused)
        case "adamw":  # weight_decay is decoupled here; 0.0 unless set (torch's default is 0.01)
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=decay, fused=fused)
        case "adagrad":
            return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=decay, fused=fused)
        case "adadelta":
            return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=decay, foreach=True)
        case "rmsprop":
            return torch.optim.RMSprop(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=decay, foreach=True
            )
    raise AssertionError(f"unhandled optimizer {cfg.optimizer!r}")  # pragma: no cover


def make_schedule(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, *, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule, or None for a constant lr."""
    if cfg.lr_schedule == "constant":
        return None
    # Half a cosine from lr (step 0) to 0 (after the last step of the last epoch).
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    )


@torch.no_grad()
def set_penalty_grad(
    regularizer: str, alpha: float, params: Sequence[Tensor], grads: Sequence[Tensor]
) -> None:
    """Overwrite ``grads`` with the penalty's exact gradient (zero for "none")."""
    if regularizer == "none" or alpha == 0.0:
        torch._foreach_zero_(list(grads))
    elif regularizer == "l2":  # d/dw alpha * w^2 = 2 * alpha * w
        for p, g in zip(params, grads, strict=True):
            torch.mul(p, 2.0 * alpha, out=g)
    else:  # d/dw alpha * |w| = alpha * sign(w), with sign(0) = 0 as autograd's abs has it
        for p, g in zip(params, grads, strict=True):
            torch.sign(p, out=g)
        torch._foreach_mul_(list(grads), alpha)


@torch.no_grad()
def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` (same formula), minus its rescaling pass over every
    gradient when the norm is already within ``max_norm``, which is most steps."""
    grads = list(grads)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coef = max_norm / (total + 1e-6)
    if coef.device.type == "cpu":  # reading the norm is free on CPU, a stall on a GPU
        if coef < 1.0:
            torch._foreach_mul_(grads, coef)
    else:
        torch._foreach_mul_(grads, coef.clamp(max=1.0))


@torch.no_grad()
def penalty_value(regularizer: str, alpha: float, params: Sequence[Tensor]) -> float:
    """alpha * sum(w^2) (l2) or alpha * sum|w| (l1) over ``params``."""
    if regularizer == "none" or not params:
        return 0.0
    order = 2.0 if regularizer == "l2" else 1.0
    norms = torch.stack(torch._foreach_norm(list(params), order))
    total = norms.pow(2).sum() if regularizer == "l2" else norms.sum()
    return alpha * float(total)


@torch.no_grad()
def evaluate(
    model: RNNClassifier, data: Split | Sequence[Batch], device: torch.device | str
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on a split or prepared batches."""
    loss, acc, _ = scores(model, data, device)
    return loss, acc


@torch.no_grad()
def scores(
    model: RNNClassifier, data: Split | Sequence[Batch], device: torch.device | str
) -> tuple[float, float, float]:
    """(mean cross-entropy, accuracy, macro-F1) of ``model`` on a split or prepared batches.

    Macro-F1 averages each class's F1 over the classes that occur in the labels or the
    predictions (as scikit-learn does), from one confusion matrix kept on the device."""
    batches = eval_batches(data, device) if isinstance(data, Split) else data
    was_training = model.training
    model.eval()
    k = model.num_classes
    loss = torch.zeros((), device=device)
    confusion = torch.zeros(k * k, dtype=torch.long, device=device)
    count = 0
    for batch in batches:
        logits = model(batch)
        loss += F.cross_entropy(logits, batch.labels, reduction="sum")
        confusion += torch.bincount(batch.labels * k + logits.argmax(dim=1), minlength=k * k)
        count += len(batch)
    model.train(was_training)
    if count == 0:
        return math.nan, math.nan, math.nan
    return float(loss) / count, *_accuracy_and_macro_f1(confusion.view(k, k))


def _accuracy_and_macro_f1(confusion: Tensor) -> tuple[float, float]:
    """From a confusion matrix (rows: true class, columns: predicted)."""
    hits = confusion.diagonal().double()
    actual, predicted = confusion.sum(dim=1).double(), confusion.sum(dim=0).double()
    present = (actual + predicted) > 0
    f1 = 2 * hits[present] / (actual[present] + predicted[present])
    return float(hits.sum() / actual.sum()), float(f1.mean())


def train(
    cfg: TrainConfig,
    dataset: Dataset,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    embeddings: Tensor | None = None,
) -> TrainResult:
    """Train ``cfg`` on ``dataset``; ``on_epoch`` sees every epoch and may raise to stop."""
    started = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # weights, dropout; batch order has its own generator
    device = resolve_device(cfg.device)

    model = RNNClassifier(cfg, len(dataset.vocab), len(dataset.labels), embeddings).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    # Persistent dense gradients: backward accumulates into them in place, and the sparse
    # embedding gradient (only the rows of the batch's words) is scattered straight in.
    # Only on the CPU: on CUDA, adding a sparse gradient coalesces it, two host syncs per
    # step, so dense gradients are the faster choice there; MPS has no sparse gradients.
    sparse_ok = device.type == "cpu"
    model.embedding.sparse = model.embedding.weight.requires_grad and sparse_ok
    for p in params:
        p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    optimizer = make_optimizer(cfg, params, device)
    train_batches = TrainBatches(dataset.train, cfg.batch_size, seed=cfg.seed, device=device)
    schedule = make_schedule(cfg, optimizer, steps=cfg.epochs * len(train_batches))
    valid_batches = eval_batches(dataset.valid, device)

    history: list[EpochStats] = []
    best: EpochStats | None = None
    best_state: dict[str, Tensor] = {}
    for epoch in range(1, cfg.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        losses: list[Tensor] = []
        sizes: list[int] = []
        correct = torch.zeros((), dtype=torch.long, device=device)
        for batch in train_batches.epoch(epoch):
            # The penalty's gradient goes in first and replaces last step's gradient;
            # backward then adds the data gradient: grad = d(CE + penalty)/dw.
            set_penalty_grad(cfg.regularizer, cfg.alpha, params, grads)
            logits = model(batch)
            loss = F.cross_entropy(logits, batch.labels, label_smoothing=cfg.label_smoothing)
            loss.backward()
            if cfg.grad_clip is not None:  # on the total gradient, penalty included
                clip_grad_norm(grads, cfg.grad_clip)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            losses.append(loss.detach())
            sizes.append(len(batch))
            correct += (logits.detach().argmax(dim=1) == batch.labels).sum()

        batch_losses = torch.stack(losses)
        finite = torch.isfinite(batch_losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            raise TrainingDiverged(
                f"loss became {float(batch_losses[bad])} at epoch {epoch}, batch {bad + 1}; "
                + ("lower lr or grad_clip" if cfg.grad_clip else "lower lr or enable grad_clip")
            )
        valid_loss, valid_acc, valid_f1 = scores(model, valid_batches, device)
        if not math.isfinite(valid_loss):
            raise TrainingDiverged(
                f"validation loss became {valid_loss} after epoch {epoch}; lower lr"
                + ("" if cfg.grad_clip else " or enable grad_clip")
            )
        n = len(dataset.train)
        weights = torch.tensor(sizes, dtype=batch_losses.dtype, device=device)
        stats = EpochStats(
            epoch=epoch,
            train_loss=float(batch_losses @ weights) / n,  # per example, not per batch
            train_acc=float(correct) / n,
            valid_loss=valid_loss,
            valid_acc=valid_acc,
            seconds=time.perf_counter() - epoch_started,
            penalty=penalty_value(cfg.regularizer, cfg.alpha, list(model.parameters())),
            valid_f1=valid_f1,
        )
        history.append(stats)
        # Strictly better: ties keep the earlier, cheaper epoch.
        if best is None or stats.score(cfg.metric) > best.score(cfg.metric):
            best = stats
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(stats)  # may raise (optuna.TrialPruned): it propagates as is

    # Hand back an ordinary module: dense gradients again, no buffers held.
    model.embedding.sparse = False
    for p in params:
        p.grad = None
    assert best is not None, "epochs >= 1"
    return TrainResult(
        history=history,
        best_valid_acc=best.valid_acc,
        best_epoch=best.epoch,
        best_state=best_state,
        model=model,
        num_parameters=count_parameters(model),
        seconds=time.perf_counter() - started,
        best_score=best.score(cfg.metric),
        best_valid_f1=best.valid_f1,
    )


def train_from_config(
    cfg: TrainConfig,
    data_dir: Path | None = None,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    with_test: bool = False,
    on_data: Callable[[Dataset, int | None], None] | None = None,
    save: Path | None = None,
    warn: bool = True,
) -> tuple[TrainResult, Dataset]:
    """Load the data (and pretrained vectors, if configured) and train ``cfg``.

    ``on_data`` gets the dataset and how many vocabulary words the vectors cover (None
    without vectors) before the first epoch. With ``with_test`` the best epoch's weights are
    scored on the test set (``test_acc``); with ``save`` they are written as a checkpoint.
    ``warn``: as ``load_dataset``'s.
    """
    dataset = load_dataset(cfg, data_dir, with_test=with_test, warn=warn)
    embeddings, found = None, None
    if cfg.embeddings is not None:
        from hpsearch.training._embeddings import (
            build_embedding_matrix,  # gensim: import only if used
        )

        embeddings, found = build_embedding_matrix(dataset.vocab, cfg)
    if on_data is not None:
        on_data(dataset, found)
    result = train(cfg, dataset, on_epoch=on_epoch, embeddings=embeddings)
    if with_test and dataset.test is not None:
        best = copy.deepcopy(result.model)
        best.load_state_dict(result.best_state)
        device = next(best.parameters()).device
        _, test_acc, test_f1 = scores(best, dataset.test, device)
        result = dataclasses.replace(result, test_acc=test_acc, test_f1=test_f1)
    if save is not None:
        save_best(save, result, cfg, dataset)
    return result, dataset


def save_best(path: Path, result: TrainResult, cfg: TrainConfig, dataset: Dataset) -> None:
    """Write the best epoch's weights of ``result`` as a checkpoint at ``path``."""
    from hpsearch.training._checkpoint import save_checkpoint

    result.model.load_state_dict(result.best_state)
    save_checkpoint(
        path,
        result.model,
        cfg,
        dataset.vocab,
        {"best_epoch": result.best_epoch},
        labels=dataset.labels,
    )
