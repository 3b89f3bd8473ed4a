"""hpsearch.rnn computes what nn.RNN computes, gradients included."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence

from hpsearch.training._rnn import packed_tanh_rnn

LENGTHS = [9, 9, 7, 6, 6, 4, 2, 1]  # descending, with ties and a one-word question
ONE_LENGTH = [6, 6, 6]  # most length-bucketed batches: a shortcut in the code


def packed_input(input_size: int, lengths: list[int] = LENGTHS) -> PackedSequence:
    torch.manual_seed(0)
    seqs = [torch.randn(n, input_size, dtype=torch.float64) for n in lengths]
    return pack_sequence(seqs)


@pytest.mark.parametrize(
    ("layers", "bias", "lengths"),
    [(1, True, LENGTHS), (2, True, LENGTHS), (3, False, LENGTHS), (1, True, ONE_LENGTH)],
)
def test_outputs_final_states_and_gradients_match_nn_rnn(
    layers: int, bias: bool, lengths: list[int]
) -> None:
    rnn = nn.RNN(5, 7, num_layers=layers, bias=bias).double()
    packed = packed_input(5, lengths)
    x = packed.data.clone().requires_grad_()
    ref_out, ref_h = rnn(PackedSequence(x, packed.batch_sizes))
    x_fast = packed.data.clone().requires_grad_()
    out, final = packed_tanh_rnn(rnn, x_fast, packed.batch_sizes, training=True)
    torch.testing.assert_close(out, ref_out.data)
    torch.testing.assert_close(final, ref_h[-1])

    # A loss that reads every output and the final states, so both paths' gradients flow.
    torch.manual_seed(1)
    w_out, w_h = torch.randn_like(out), torch.randn_like(final)
    inputs = [*rnn.parameters()]
    ref = torch.autograd.grad((ref_out.data * w_out).sum() + (ref_h[-1] * w_h).sum(), [x, *inputs])
    fast = torch.autograd.grad((out * w_out).sum() + (final * w_h).sum(), [x_fast, *inputs])
    names = ["input", *(n for n, _ in rnn.named_parameters())]
    for name, a, b in zip(names, ref, fast, strict=True):
        torch.testing.assert_close(b, a, msg=f"gradient of {name} differs")


@pytest.mark.parametrize("lengths", [LENGTHS, ONE_LENGTH, [1]])
def test_gradcheck(lengths: list[int]) -> None:
    rnn = nn.RNN(3, 4).double()
    packed = packed_input(3, lengths)
    x = packed.data.clone().requires_grad_()

    def run(x: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return packed_tanh_rnn(rnn, x, packed.batch_sizes, training=False)

    assert torch.autograd.gradcheck(run, (x, *rnn.parameters()))


def test_gradients_accumulate_into_existing_buffers() -> None:
    # Training keeps persistent .grad buffers; the two biases must get separate tensors.
    rnn = nn.RNN(3, 4).double()
    packed = packed_input(3)
    for _ in range(2):
        out, _ = packed_tanh_rnn(rnn, packed.data, packed.batch_sizes, training=True)
        out.sum().backward()
    assert rnn.bias_ih_l0.grad is not rnn.bias_hh_l0.grad
    torch.testing.assert_close(rnn.bias_ih_l0.grad, rnn.bias_hh_l0.grad)


def test_inter_layer_dropout_only_in_training() -> None:
    rnn = nn.RNN(3, 4, num_layers=2, dropout=0.5).double()
    packed = packed_input(3)
    ref_out, _ = rnn.eval()(packed)
    out, _ = packed_tanh_rnn(rnn, packed.data, packed.batch_sizes, training=False)
    torch.testing.assert_close(out, ref_out.data)
    torch.manual_seed(0)
    dropped, _ = packed_tanh_rnn(rnn, packed.data, packed.batch_sizes, training=True)
    assert not torch.allclose(dropped, out)


@pytest.mark.parametrize("kwargs", [{"bidirectional": True}, {"nonlinearity": "relu"}])
def test_refuses_what_it_does_not_compute(kwargs: dict[str, object]) -> None:
    rnn = nn.RNN(3, 4, **kwargs)  # type: ignore[arg-type]
    packed = packed_input(3)
    with pytest.raises(ValueError, match="unidirectional tanh"):
        packed_tanh_rnn(rnn, packed.data.float(), packed.batch_sizes, training=False)
