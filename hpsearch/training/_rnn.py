"""The plain tanh RNN over a packed batch, with a hand-written backward, for the CPU.

Why not ``nn.RNN``: on the CPU a packed ``nn.RNN`` runs every time step as separate input and
hidden projections, an add and a tanh, each one recorded by autograd, and its backward replays
all of them and accumulates four weight gradients per step. For this model (hidden 200, batches
of 32 questions of ~10 words) those small per-step operations, not the arithmetic, are most of
an epoch. Here the input projection of every token of the batch is one matrix product, each
step is one in-place ``addmm`` + ``tanh``, and the backward through time needs per step only
the hidden-state gradient (a multiply by ``1 - h^2`` and one product with ``W_hh``); the
weight gradients are then one product each over all steps together. It computes the same
function as ``nn.RNN`` with the same parameters (tests/test_rnn.py compares outputs and every
gradient), so checkpoints and the CUDA path, where cuDNN is faster, still use ``nn.RNN``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def packed_tanh_rnn(
    rnn: nn.RNNBase, data: Tensor, batch_sizes: Tensor, *, training: bool
) -> tuple[Tensor, Tensor]:
    """Run ``rnn`` (tanh, unidirectional, zero initial state) over a packed sequence.

    ``data`` [N, input] in ``PackedSequence`` order, rows of each step sorted longest first,
    ``batch_sizes`` [T] on the CPU. Returns the last layer's outputs [N, hidden] in the same
    order and its final state [B, hidden]: the output at each question's last word.
    """
    if rnn.mode != "RNN_TANH" or rnn.bidirectional or rnn.proj_size:
        raise ValueError("packed_tanh_rnn runs only a unidirectional tanh nn.RNN")
    sizes = [int(b) for b in batch_sizes.tolist()]
    out = data
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout > 0:  # as nn.RNN: between layers, not after the last
            out = F.dropout(out, rnn.dropout, training)
        weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh")]
        if rnn.bias:
            biases = [getattr(rnn, f"{name}_l{layer}") for name in ("bias_ih", "bias_hh")]
        else:
            biases = [torch.zeros(rnn.hidden_size, dtype=data.dtype, device=data.device)] * 2
        out = _PackedTanhRNN.apply(out, sizes, *weights, *biases)
    # A question of length L ends at step L - 1: its final state is its row of that step.
    if sizes[-1] == sizes[0]:  # one length (most length-bucketed batches): the last step
        return out, out[-sizes[0] :]
    steps = torch.tensor(sizes)
    starts = torch.cumsum(steps, 0) - steps
    rows = torch.arange(sizes[0])
    lengths = (steps.unsqueeze(0) > rows.unsqueeze(1)).sum(1)
    final = out[(starts[lengths - 1] + rows).to(out.device)]
    return out, final


class _PackedTanhRNN(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        sizes: list[int],
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
    ) -> Tensor:
        # out starts as the input projection of every token; each step then adds the
        # previous hidden state's projection and applies tanh in place. The rows alive at
        # step t are the first sizes[t] rows of step t - 1 (questions sorted longest first).
        out = torch.addmm(b_ih + b_hh, x, w_ih.t())
        w_hh_t = w_hh.t()
        prev = out[: sizes[0]].tanh_()
        offset = sizes[0]
        for size in sizes[1:]:
            step = out[offset : offset + size]
            step.addmm_(prev[:size], w_hh_t).tanh_()
            prev, offset = step, offset + size
        ctx.sizes = sizes
        ctx.save_for_backward(x, out, w_ih, w_hh)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, out, w_ih, w_hh = ctx.saved_tensors
        sizes: list[int] = ctx.sizes
        # d tanh(a) / da = 1 - tanh(a)^2, for every step at once.
        deriv = torch.addcmul(torch.ones_like(out), out, out, value=-1.0)
        grad_h = grad_out.clone()  # gains, step by step, the gradient from the next step
        grad_a = torch.empty_like(out)  # gradient of each step's pre-activation
        end = out.shape[0]
        for t in range(len(sizes) - 1, -1, -1):
            size = sizes[t]
            start = end - size
            step_grad = torch.mul(grad_h[start:end], deriv[start:end], out=grad_a[start:end])
            if t > 0:  # into the previous step's first `size` rows, which fed this step
                before = start - sizes[t - 1]
                grad_h[before : before + size].addmm_(step_grad, w_hh)
            end = start
        # Weight gradients: one product over all steps. Step t's pre-activation saw the
        # previous step's first sizes[t] rows as the hidden state.
        first = sizes[0]
        if sizes[-1] == first:  # one length: the previous rows are simply one step back
            prev = out[: out.shape[0] - first]
        else:
            steps = torch.tensor(sizes)
            starts = torch.cumsum(steps, 0) - steps
            step_of_row = torch.repeat_interleave(torch.arange(1, len(sizes)), steps[1:])
            row_in_step = torch.arange(first, out.shape[0]) - starts[step_of_row]
            prev = out[(starts[step_of_row - 1] + row_in_step).to(out.device)]
        grad_x = grad_a @ w_ih if ctx.needs_input_grad[0] else None
        grad_w_ih = grad_a.t() @ x
        grad_w_hh = grad_a[first:].t() @ prev
        grad_b = grad_a.sum(0)
        # Two tensors: autograd may adopt a returned gradient as a parameter's .grad.
        return grad_x, None, grad_w_ih, grad_w_hh, grad_b, grad_b.clone()
