"""BGRL loss, EMA target, schedules and the model's wiring."""

import math

import pytest
import torch
import torch.nn.functional as F

from bgrl_werank import bgrl_loss
from bgrl_werank.models import BGRL, GCNEncoder, MLPPredictor, build_bgrl, cosine_momentum, warmup_cosine_lr


def test_loss_value_by_hand():
    q1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y2 = torch.tensor([[1.0, 1.0], [0.0, -1.0]])  # cosines: 1/sqrt2, -1
    q2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    y1 = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # cosines: 1, 1
    expected = 2.0 - (1 / math.sqrt(2) - 1) / 2 - (1 + 1) / 2
    assert bgrl_loss(q1, y2, q2, y1).item() == pytest.approx(expected, rel=1e-6)


def test_loss_symmetric_and_bounded():
    torch.manual_seed(0)
    a, b, c, d = (torch.randn(10, 4) for _ in range(4))
    assert bgrl_loss(a, b, c, d).item() == pytest.approx(bgrl_loss(c, d, a, b).item(), rel=1e-6)
    assert bgrl_loss(a, a, c, c).item() == pytest.approx(0.0, abs=1e-6)
    assert bgrl_loss(a, -a, c, -c).item() == pytest.approx(4.0, abs=1e-5)


def test_minimising_loss_raises_cosine_and_stops_target_gradient():
    torch.manual_seed(1)
    q1 = torch.randn(32, 8, requires_grad=True)
    q2 = torch.randn(32, 8, requires_grad=True)
    y1 = torch.randn(32, 8, requires_grad=True)
    y2 = torch.randn(32, 8, requires_grad=True)
    before = F.cosine_similarity(q1, y2).mean().item()
    opt = torch.optim.SGD([q1, q2], lr=50.0)  # the loss averages over 32 nodes
    for _ in range(20):
        opt.zero_grad()
        bgrl_loss(q1, y2, q2, y1).backward()
        opt.step()
    assert F.cosine_similarity(q1, y2).mean().item() > before + 0.3
    assert y1.grad is None and y2.grad is None  # stop-gradient on targets


def test_schedules_endpoints():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert warmup_cosine_lr(0, 100, 10, 1e-3) == 0.0
    assert warmup_cosine_lr(5, 100, 10, 1e-3) == pytest.approx(5e-4)
    assert warmup_cosine_lr(10, 100, 10, 1e-3) == pytest.approx(1e-3)
    assert warmup_cosine_lr(55, 100, 10, 1e-3) == pytest.approx(5e-4)
    assert warmup_cosine_lr(100, 100, 10, 1e-3) == 0.0


def _model(target_init="reinit"):
    torch.manual_seed(0)
    return BGRL(GCNEncoder(6, [8, 4]), MLPPredictor(4, 16), target_init)


def test_ema_momentum_zero_copies_and_one_keeps():
    m = _model()
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.update_target_network(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, m.target_encoder.parameters()))
    m.update_target_network(0.0)
    assert all(torch.equal(a, b) for a, b in zip(m.online_encoder.parameters(), m.target_encoder.parameters()))


def test_ema_formula():
    m = _model()
    t0 = [p.clone() for p in m.target_encoder.parameters()]
    o = [p.clone() for p in m.online_encoder.parameters()]
    m.update_target_network(0.9)
    for a, b, c in zip(m.target_encoder.parameters(), t0, o):
        assert torch.allclose(a, 0.9 * b + 0.1 * c)


def test_target_reinit_vs_copy():
    m = _model("reinit")
    w_on, w_tg = m.online_encoder.convs[0].lin.weight, m.target_encoder.convs[0].lin.weight
    assert not torch.equal(w_on, w_tg)
    m = _model("copy")
    assert torch.equal(m.online_encoder.convs[0].lin.weight, m.target_encoder.convs[0].lin.weight)
    with pytest.raises(ValueError, match="target_init"):
        BGRL(GCNEncoder(6, [4]), MLPPredictor(4), "bogus")


def test_target_not_trained_and_not_in_optimizer():
    from bgrl_werank.augment import normalized_adjacency

    m = build_bgrl(6, [8, 4], predictor_hidden=16)
    params = m.trainable_parameters()
    target_ids = {id(p) for p in m.target_encoder.parameters()}
    assert not target_ids & {id(p) for p in params}
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=0.1)
    x = torch.randn(5, 6)
    adj = normalized_adjacency(torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]), 5)
    before = [p.clone() for p in m.target_encoder.parameters()]
    q1, q2, y1, y2 = m(x, adj, x, adj)
    bgrl_loss(q1, y2, q2, y1).backward()
    opt.step()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, m.target_encoder.parameters()))
    assert not y1.requires_grad and not y2.requires_grad


def test_encoder_layer_structure():
    enc = GCNEncoder(10, [32, 16])
    assert len(enc.convs) == 2 and enc.out_channels == 16
    # the reference's blocks: BatchNorm momentum 0.99 (PyTorch's convention) and one PReLU slope per layer
    assert all(n.momentum == 0.99 for n in enc.norms)
    assert all(isinstance(a, torch.nn.PReLU) and a.weight.numel() == 1 for a in enc.acts)
    per_channel = GCNEncoder(10, [32, 16], prelu="channel")
    assert [a.weight.numel() for a in per_channel.acts] == [32, 16]
    with pytest.raises(ValueError, match="prelu"):
        GCNEncoder(10, [32], prelu="bogus")
