"""WERank against an independent formula (via singular values), edge cases, gradients, validation."""

import numpy as np
import pytest
import torch

from bgrl_werank import WERank, encoder_weights, encoders, gram, werank_penalty
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder
from bgrl_werank.methods import BGRL, MLPPredictor


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: on a busy machine thread hand-offs cost far more than the work (600 Adam steps
    on an 8 x 16 matrix: 25 s with 2 threads, < 1 s with one). conftest restores the count."""
    torch.set_num_threads(1)


def reference(weights, alphas):
    """Independent formula: for w (out, in) with singular values s, the smaller-side Gram has
    eigenvalues s² (min(out, in) of them), so ‖G − I‖_F = sqrt(Σ (s² − 1)²)."""
    total = 0.0
    for w, a in zip(weights, alphas):
        s = np.linalg.svd(w.detach().double().numpy(), compute_uv=False)
        total += a * np.sqrt(np.sum((s**2 - 1.0) ** 2))
    return total


@pytest.mark.parametrize("shape", [(7, 13), (13, 7), (9, 9), (1, 5), (5, 1)])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0, 3.5])
def test_matches_independent_formula(shape, alpha):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64)
    got = werank_penalty([w], alpha).item()
    assert got == pytest.approx(reference([w], [alpha]), rel=1e-9, abs=1e-12)


def test_sum_over_layers_with_per_layer_alpha():
    torch.manual_seed(1)
    ws = [torch.randn(16, 32, dtype=torch.float64), torch.randn(64, 16, dtype=torch.float64), torch.randn(8, 8, dtype=torch.float64)]
    alphas = [0.5, 0.0, 2.0]
    assert werank_penalty(ws, alphas).item() == pytest.approx(reference(ws, alphas), rel=1e-9)
    # a single float is the same as repeating it
    assert werank_penalty(ws, 0.3).item() == pytest.approx(werank_penalty(ws, [0.3] * 3).item(), rel=1e-12)


def test_gram_uses_smaller_side():
    w = torch.randn(3, 10)
    assert gram(w).shape == (3, 3) and torch.allclose(gram(w), w @ w.T)
    assert gram(w.T).shape == (3, 3) and torch.allclose(gram(w.T), w @ w.T)


@pytest.mark.parametrize("shape", [(4, 10), (10, 4), (6, 6)])
def test_zero_for_orthonormal_rows_or_columns(shape):
    q, _ = torch.linalg.qr(torch.randn(max(shape), max(shape), dtype=torch.float64))
    w = q[: shape[0], : shape[1]]
    assert werank_penalty([w], 1.0).item() < 1e-10


def test_linear_in_alpha_and_zero_alpha_exactly_zero():
    w = torch.randn(5, 9)
    one = werank_penalty([w], 1.0)
    assert werank_penalty([w], 2.5).item() == pytest.approx(2.5 * one.item(), rel=1e-6)
    zero = werank_penalty([w], 0.0)
    assert zero.item() == 0.0


def test_gradient_matches_finite_differences():
    torch.manual_seed(2)
    for shape in [(5, 8), (8, 5)]:
        w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: werank_penalty([t], 0.7), (w,), eps=1e-6, atol=1e-6)


def test_gradient_closed_form():
    """d‖wwᵀ − I‖_F / dw = 2 (wwᵀ − I) w / ‖wwᵀ − I‖_F for a narrowing layer."""
    w = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    werank_penalty([w], 1.0).backward()
    d = w.detach() @ w.detach().T - torch.eye(4, dtype=torch.float64)
    expected = 2 * d @ w.detach() / torch.linalg.norm(d)
    assert torch.allclose(w.grad, expected, atol=1e-10)


def test_no_nan_gradient_at_orthonormal_point():
    w = torch.eye(6, requires_grad=True)
    p = werank_penalty([w], 1.0)
    p.backward()
    assert p.item() == 0.0
    assert torch.isfinite(w.grad).all() and w.grad.abs().max().item() == 0.0


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf"), [0.1, -1.0]])
def test_invalid_alpha(alpha):
    ws = [torch.randn(3, 3), torch.randn(3, 3)]
    with pytest.raises(ValueError, match="alpha"):
        werank_penalty(ws, alpha)


def test_length_mismatch_and_non_2d():
    with pytest.raises(ValueError, match="2 weight matrices"):
        werank_penalty([torch.randn(3, 3), torch.randn(3, 3)], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="2-D"):
        werank_penalty([torch.randn(3, 3, 3)], 0.1)
    with pytest.raises(ValueError, match="alpha"):
        WERank(alpha=-1.0)


@pytest.mark.parametrize("make", [FastGCNEncoder, lambda i, s: encoders.build("gcn", i, s)], ids=["fast", "plain"])
def test_encoder_weights_in_layer_order(make):
    enc = make(20, [16, 8])
    ws = encoder_weights(enc)
    assert [tuple(w.shape) for w in ws] == [(16, 20), (8, 16)]
    assert ws[0] is enc.convs[0].lin.weight  # the parameters themselves, so gradients flow
    pred = MLPPredictor(8, 32)
    assert [tuple(w.shape) for w in encoder_weights(pred)] == [(32, 8), (8, 32)]


@pytest.mark.parametrize("make", [FastGCNEncoder, lambda i, s: encoders.build("gcn", i, s)], ids=["fast", "plain"])
def test_method_regularised_weights(make):
    """What the trainer hands to werank_penalty: the online encoder's matrices in layer order, then the
    predictor's with include_heads; never the target network's, never BatchNorm or PReLU parameters."""
    m = BGRL(make(20, [16, 8]), MLPPredictor(8, 32))
    names = [n for n, _ in m.named_regularised_weights()]
    assert names == ["encoder.convs.0.lin.weight", "encoder.convs.1.lin.weight"]
    with_heads = m.named_regularised_weights(include_heads=True)
    assert [n for n, _ in with_heads] == names + ["predictor.net.0.weight", "predictor.net.2.weight"]
    params = dict(m.named_parameters())
    assert all(w is params[n] for n, w in with_heads)
    assert m.regularised_weights() == encoder_weights(m.encoder)
    assert [w for _, w in with_heads] == m.regularised_weights(include_heads=True)
    target = {id(p) for p in m.target_encoder.parameters()}
    assert not target & {id(w) for w in m.regularised_weights(True)}


def test_optimising_penalty_reaches_orthonormal():
    torch.manual_seed(3)
    w = torch.nn.Parameter(0.3 * torch.randn(8, 16))
    opt = torch.optim.Adam([w], lr=0.02)
    for _ in range(600):
        opt.zero_grad()
        werank_penalty([w], 1.0).backward()
        opt.step()
    s = torch.linalg.svdvals(w.detach())
    assert torch.allclose(s, torch.ones(8), atol=0.02)
