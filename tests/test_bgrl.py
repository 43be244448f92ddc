"""BGRL (bgrl_werank.methods.BGRL): its loss, EMA target, schedules and wiring, on both encoders."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from bgrl_werank import bgrl_loss, encoders, methods
from bgrl_werank.backends import FastBackend, PlainBackend
from bgrl_werank.config import build_config
from bgrl_werank.ema import cosine_momentum, ema_update
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder
from bgrl_werank.methods import BGRL, MLPPredictor
from bgrl_werank.schedules import learning_rate, warmup_cosine_lr
from bgrl_werank.train.trainer import build_method

CPU = torch.device("cpu")
ENCODERS = ["plain", "fast"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs: thread start-up would cost more than the work (conftest restores the count)."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------ the loss
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


# ------------------------------------------------------------------ schedules
def test_schedules_endpoints():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert warmup_cosine_lr(0, 100, 10, 1e-3) == 0.0
    assert warmup_cosine_lr(5, 100, 10, 1e-3) == pytest.approx(5e-4)
    assert warmup_cosine_lr(10, 100, 10, 1e-3) == pytest.approx(1e-3)
    assert warmup_cosine_lr(55, 100, 10, 1e-3) == pytest.approx(5e-4)
    assert warmup_cosine_lr(100, 100, 10, 1e-3) == 0.0


def test_cosine_momentum_formula_and_range():
    """m(k) = 1 − (1 − m₀)(1 + cos(πk/K))/2: rises monotonically from m₀ to 1, clamped outside [0, K]."""
    values = [cosine_momentum(k, 40, 0.9) for k in range(41)]
    for k, m in enumerate(values):
        assert m == pytest.approx(1 - 0.1 * (1 + math.cos(math.pi * k / 40)) / 2, abs=1e-12)
    assert all(a < b for a, b in zip(values, values[1:]))
    assert cosine_momentum(-3, 40, 0.9) == values[0] and cosine_momentum(99, 40, 0.9) == values[-1]
    assert cosine_momentum(7, 40, 1.0) == 1.0
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0, 0.99)


def test_warmup_cosine_lr_shape():
    lrs = [warmup_cosine_lr(k, 50, 10, 0.2) for k in range(51)]
    assert lrs[:11] == pytest.approx([0.02 * k for k in range(11)])  # linear warmup to the base rate
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # then a strictly decreasing cosine to 0
    assert lrs[30] == pytest.approx(0.1)  # half way through the decay: half the rate
    assert warmup_cosine_lr(80, 50, 10, 0.2) == 0.0
    assert warmup_cosine_lr(0, 50, 0, 0.2) == pytest.approx(0.2)  # no warmup: starts at the base rate
    assert learning_rate("warmup_cosine", 5, 50, 10, 0.2) == warmup_cosine_lr(5, 50, 10, 0.2)
    assert learning_rate("constant", 5, 50, 10, 0.2) == 0.2
    with pytest.raises(ValueError, match="schedule"):
        learning_rate("bogus", 5, 50, 10, 0.2)


# ------------------------------------------------------------------ the model
def _encoder(kind, in_channels=6, sizes=(8, 4), **kwargs):
    if kind == "fast":
        return FastGCNEncoder(in_channels, list(sizes), **kwargs)
    return encoders.build("gcn", in_channels, list(sizes), **kwargs)


def _model(kind="plain", target_init="reinit", momentum=0.99):
    torch.manual_seed(0)
    return BGRL(_encoder(kind), MLPPredictor(4, 16), momentum=momentum, target_init=target_init)


def _views(kind, n=12, f=6, seed=0):
    """Two views of a small random graph, as the backend's encoder reads them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g)
    ei = torch.randint(0, n, (2, 40), generator=g)
    backend = FastBackend(CPU) if kind == "fast" else PlainBackend(CPU)
    maker = backend.view_maker(Data(x=x, edge_index=ei))
    return maker.view(0.2, 0.3, g), maker.view(0.3, 0.1, g)


@pytest.mark.parametrize("kind", ENCODERS)
def test_ema_momentum_zero_copies_and_one_keeps(kind):
    m = _model(kind)
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.update_target_network(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, m.target_encoder.parameters()))
    m.update_target_network(0.0)
    assert all(torch.equal(a, b) for a, b in zip(m.online_encoder.parameters(), m.target_encoder.parameters()))


@pytest.mark.parametrize("kind", ENCODERS)
def test_ema_formula(kind):
    """θ_t ← m·θ_t + (1 − m)·θ_o: m is the weight of the OLD target value; buffers are not averaged."""
    m = _model(kind)
    with torch.no_grad():  # BatchNorm statistics that differ, to see that they are left alone
        for norm in m.online_encoder.norms:
            norm.running_mean.fill_(3.0)
    t0 = [p.clone() for p in m.target_encoder.parameters()]
    o = [p.clone() for p in m.online_encoder.parameters()]
    buffers = [b.clone() for b in m.target_encoder.buffers()]
    assert len(t0) == len(o) == len(list(m.online_encoder.parameters()))
    m.update_target_network(0.9)
    for a, b, c in zip(m.target_encoder.parameters(), t0, o):
        assert torch.allclose(a, 0.9 * b + 0.1 * c)
        assert not a.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(m.target_encoder.buffers(), buffers))
    assert all(torch.equal(a, b) for a, b in zip(m.online_encoder.parameters(), o))  # online untouched


def test_ema_update_function():
    target = [torch.full((3,), 2.0), torch.full((2, 2), -1.0)]
    online = [torch.full((3,), 4.0), torch.full((2, 2), 1.0)]
    ema_update(target, online, 0.75)
    assert torch.allclose(target[0], torch.full((3,), 0.75 * 2.0 + 0.25 * 4.0))
    assert torch.allclose(target[1], torch.full((2, 2), 0.75 * -1.0 + 0.25 * 1.0))
    assert torch.equal(online[0], torch.full((3,), 4.0))
    with pytest.raises(ValueError, match="momentum"):
        ema_update(target, online, 1.5)
    with pytest.raises(ValueError, match="2 target tensors but 1 online"):
        ema_update(target, online[:1], 0.5)
    ema_update([], [], 0.5)  # nothing to do


@pytest.mark.parametrize("kind", ENCODERS)
def test_target_reinit_vs_copy(kind):
    m = _model(kind, "reinit")
    w_on, w_tg = m.online_encoder.convs[0].lin.weight, m.target_encoder.convs[0].lin.weight
    assert not torch.equal(w_on, w_tg)
    assert m.online_encoder is m.encoder
    m = _model(kind, "copy")
    on, tg = m.online_encoder.state_dict(), m.target_encoder.state_dict()
    assert list(on) == list(tg) and all(torch.equal(on[k], tg[k]) for k in on)
    assert all(a is not b for a, b in zip(m.online_encoder.parameters(), m.target_encoder.parameters()))
    with pytest.raises(ValueError, match="target_init"):
        BGRL(_encoder(kind), MLPPredictor(4), target_init="bogus")
    with pytest.raises(ValueError, match="momentum"):
        BGRL(_encoder(kind), MLPPredictor(4), momentum=1.5)


@pytest.mark.parametrize("kind", ENCODERS)
def test_target_not_trained_and_not_in_optimizer(kind):
    m = _model(kind)
    m.train()
    params = m.trainable_parameters()
    target_ids = {id(p) for p in m.target_encoder.parameters()}
    assert not target_ids & {id(p) for p in params}
    assert {id(p) for p in params} == {id(p) for p in (*m.encoder.parameters(), *m.predictor.parameters())}
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    assert m.frozen_modules() == [m.target_encoder]
    assert m.heads == {"predictor": m.predictor}
    opt = torch.optim.AdamW(params, lr=0.1)
    v1, v2 = _views(kind)
    before = [p.clone() for p in m.target_encoder.parameters()]
    y = m.target_encoder(v1.x, v1.edge_index)
    assert not y.requires_grad
    m.loss(v1, v2)["loss"].backward()
    assert all(p.grad is not None for p in m.encoder.convs[0].parameters())
    opt.step()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, m.target_encoder.parameters()))


def test_predictor_shape():
    pred = MLPPredictor(16, 32)
    lin1, act, lin2 = pred.net
    assert type(lin1) is torch.nn.Linear and (lin1.in_features, lin1.out_features) == (16, 32)
    assert type(act) is torch.nn.PReLU and act.weight.numel() == 1  # one slope, as the reference
    assert type(lin2) is torch.nn.Linear and (lin2.in_features, lin2.out_features) == (32, 16)
    assert pred(torch.randn(7, 16)).shape == (7, 16)
    assert MLPPredictor(16).net[0].out_features == 512  # the reference's hidden size
    # BGRL's default predictor maps the encoder's output size back to itself
    m = BGRL(_encoder("plain", sizes=(8, 5)), predictor_hidden=24)
    assert (m.predictor.net[0].in_features, m.predictor.net[0].out_features, m.predictor.net[2].out_features) == (5, 24, 5)
    assert BGRL(_encoder("plain", sizes=(8, 5))).predictor.net[0].out_features == 512
    own = torch.nn.Linear(5, 5)
    assert BGRL(_encoder("plain", sizes=(8, 5)), predictor=own).predictor is own
    with pytest.raises(ValueError, match="out_channels"):
        BGRL(torch.nn.Linear(3, 3))


def test_config_reaches_the_method():
    cfg = build_config({}, ["model.layer_sizes=[8, 4]", "method.bgrl.predictor_hidden=24", "method.bgrl.momentum=0.9",
                            "method.bgrl.target_init=copy", "device=cpu"])
    for backend in (FastBackend(CPU), PlainBackend(CPU)):
        m = build_method(cfg, 6, backend)
        assert isinstance(m, BGRL) and m.base_momentum == 0.9 and m.predictor.net[0].out_features == 24
        assert all(torch.equal(a, b) for a, b in zip(m.encoder.parameters(), m.target_encoder.parameters()))
    old = build_config({}, ["model.layer_sizes=[8, 4]", "model.predictor_hidden=24", "optim.momentum=0.9", "device=cpu"])
    assert (old.method.bgrl.predictor_hidden, old.method.bgrl.momentum) == (24, 0.9)  # the old key names still read
    assert isinstance(methods.build("bgrl", _encoder("plain")), BGRL)


@pytest.mark.parametrize("kind", ENCODERS)
def test_step_end_returns_the_momentum_and_updates_the_target(kind):
    m = _model(kind, momentum=0.9)
    for step in (0, 3, 10):
        with torch.no_grad():
            for p in m.online_encoder.parameters():
                p.add_(0.5)  # as if the optimizer had moved the online weights
        t0 = [p.clone() for p in m.target_encoder.parameters()]
        o = [p.clone() for p in m.online_encoder.parameters()]
        logged = m.step_end(step, 10)
        mom = cosine_momentum(step, 10, 0.9)
        assert logged == {"momentum": mom} and m.momentum_at(step, 10) == mom
        for a, b, c in zip(m.target_encoder.parameters(), t0, o):
            assert torch.allclose(a, mom * b + (1 - mom) * c)
    assert mom == 1.0  # the last step: the target stays where it is


@pytest.mark.parametrize("kind", ENCODERS)
def test_sequential_backward_gives_the_gradients_of_the_whole_loss(kind):
    """BGRL.backward back-propagates each view's term as soon as it is formed; the gradients, the
    returned terms and the BatchNorm statistics are those of loss()["loss"].backward()."""
    whole = _model(kind)
    seq = copy.deepcopy(whole)
    whole.train(), seq.train()
    v1, v2 = _views(kind)
    terms = whole.loss(v1, v2)
    terms["loss"].backward()
    got = seq.backward(v1, v2)
    assert set(got) == {"loss", "view1", "view2"}
    for k in got:
        assert not got[k].requires_grad
        assert torch.allclose(got[k], terms[k].detach(), atol=1e-6), k
    assert torch.allclose(terms["loss"], terms["view1"] + terms["view2"])
    b = dict(seq.named_parameters())
    for name, p in whole.named_parameters():
        if p.grad is None:
            assert b[name].grad is None, name
            continue
        assert torch.allclose(p.grad, b[name].grad, atol=1e-6, rtol=1e-5), name
    sa, sb = whole.state_dict(), seq.state_dict()
    for name in sa:
        assert torch.allclose(sa[name].float(), sb[name].float(), atol=1e-6), name


def test_embed_uses_the_online_encoder_in_eval_mode():
    m = _model("plain")
    m.train()
    v1, _ = _views("plain")
    z = m.embed(v1)
    assert m.training and m.encoder.training  # modes put back
    m.encoder.eval()
    with torch.no_grad():
        assert torch.equal(z, m.encoder(v1.x, v1.edge_index))
    other = copy.deepcopy(m.target_encoder)
    with torch.no_grad():
        assert torch.equal(m.embed(v1, other), other.eval()(v1.x, v1.edge_index))


@pytest.mark.parametrize("kind", ENCODERS)
def test_encoder_layer_structure(kind):
    enc = _encoder(kind, 10, (32, 16))
    assert len(enc.convs) == 2 and enc.out_channels == 16
    # the reference's blocks: BatchNorm momentum 0.99 (PyTorch's convention) and one PReLU slope per layer
    assert all(isinstance(n, torch.nn.BatchNorm1d) and n.momentum == 0.99 for n in enc.norms)
    assert all(isinstance(a, torch.nn.PReLU) and a.weight.numel() == 1 for a in enc.acts)
    per_channel = _encoder(kind, 10, (32, 16), prelu="channel")
    assert [a.weight.numel() for a in per_channel.acts] == [32, 16]
    with pytest.raises(ValueError, match="prelu"):
        _encoder(kind, 10, (32,), prelu="bogus")
