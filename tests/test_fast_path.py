"""The fast backend computes the same model as the plain one (bgrl_werank.backends.PlainBackend: stock
PyG GCNConv(normalize=True) on edge lists, dense features masked by copying, nn.Linear, nn.PReLU).

The references here are the plain backend's modules driven by stock formulas written out in this
file: the BGRL loss through ``F.cosine_similarity`` and WERank through ``torch.linalg.matrix_norm``,
both differentiated by autograd (the library's closed-form versions are what is being checked)."""

import pytest
import torch
import torch.nn.functional as F

from bgrl_werank import werank_penalty
from bgrl_werank.augment import Features, ViewBuilder, make_view, normalized_adjacency
from bgrl_werank.backends import FastBackend, FastViews, PlainBackend, PlainViews
from bgrl_werank.config import build_config
from bgrl_werank.losses.werank import _frobenius_distance_to_identity, _frobenius_distance_to_identity_autograd
from bgrl_werank.methods import bgrl as bgrl_module
from bgrl_werank.ops import FastLinear, FastPReLU, SparseOperand, csr_matmul, prelu, sparse_matmul
from bgrl_werank.train.trainer import Trainer, build_method, fast_features, load_graph

from .conftest import TINY

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """The graphs here are tiny: with several threads on a busy machine, thread hand-offs cost 50x the
    work (a 240-node step: 1 s vs 17 ms). conftest puts the count back; test_kernels covers 2 threads."""
    torch.set_num_threads(1)


def _graph(n=60, f=40, e=400, seed=0, loops=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g)
    x[x < 0.93] = 0  # ~7% dense: stored as sparse CSR by fast_features
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    ei = torch.cat([ei, ei.flip(0)], 1).unique(dim=1)
    if loops:
        ei = torch.cat([ei, torch.tensor([[3, 9], [3, 9]])], 1)
    return x, ei


# ------------------------------------------------------------------ the independent references
def stock_bgrl_term(q, y):
    """1 − cos(q, sg(y)), averaged over nodes, through F.cosine_similarity and autograd."""
    return 1.0 - F.cosine_similarity(q, y.detach(), dim=-1).mean()


def stock_bgrl_loss(method, view1, view2):
    """BGRL's symmetrised loss from a method's modules, in the order BGRL.loss runs them (targets first)."""
    with torch.no_grad():
        y1 = method.target_encoder(view1.x, view1.edge_index)
        y2 = method.target_encoder(view2.x, view2.edge_index)
    q1 = method.predictor(method.encoder(view1.x, view1.edge_index))
    q2 = method.predictor(method.encoder(view2.x, view2.edge_index))
    return stock_bgrl_term(q1, y2) + stock_bgrl_term(q2, y1)


def stock_werank(weights, alpha):
    """Σ α ‖G − I‖_F with G the smaller side's Gram, through torch.linalg.matrix_norm and autograd."""
    weights = list(weights)
    total = weights[0].new_zeros(())
    for w in weights:
        g = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
        total = total + alpha * torch.linalg.matrix_norm(g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device))
    return total


def bgrl_weight_matrices(method, include_heads):
    """The matrices WERank acts on, listed by hand: every encoder layer's, then the predictor's."""
    weights = [conv.lin.weight for conv in method.encoder.convs]
    if include_heads:
        weights += [m.weight for m in method.predictor.net if isinstance(m, torch.nn.Linear)]
    return weights


def _cfg(*overrides):
    return build_config({}, ["model.layer_sizes=[32, 16]", "method.bgrl.predictor_hidden=24", "device=cpu", *overrides])


def _fast_and_plain(cfg, in_channels):
    """The run's method on each backend from the same seed; their state dicts must be equal."""
    torch.manual_seed(0)
    fast = build_method(cfg, in_channels, FastBackend(CPU))
    torch.manual_seed(0)
    plain = build_method(cfg, in_channels, PlainBackend(CPU))
    a, b = fast.state_dict(), plain.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name  # same initialisation from the same seed
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in plain.named_parameters()]
    return fast, plain


def _dense(x):
    return x if x.layout == torch.strided else x.to_dense()


def _assert_same_views(fast_view, plain_view, num_nodes):
    """A fast view (Features + normalised adjacency) and a plain one (x + kept edges) are the same view."""
    feats, adj = fast_view.x, fast_view.edge_index
    assert isinstance(feats, Features) and isinstance(adj, SparseOperand)
    assert torch.equal(feats.materialize().to_dense(), _dense(plain_view.x))
    ref = normalized_adjacency(plain_view.edge_index, num_nodes).to_dense()
    assert torch.equal(adj.mat.to_dense(), ref)
    assert torch.equal(adj.mat_t.to_dense(), ref.t())


def test_fast_features_goes_sparse_only_when_sparse():
    x, _ = _graph()
    assert fast_features(x).layout == torch.sparse_csr
    assert fast_features(torch.randn(5, 5)).layout == torch.strided


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("p_edge,p_feat", [(0.0, 0.0), (0.3, 0.4), (0.6, 0.0), (0.0, 0.5)])
def test_fast_and_plain_views_are_the_same_augmentation(sparse, p_edge, p_feat):
    """FastViews and PlainViews with generators in the same state: the same kept edges, the same
    masked columns, and the same number of draws (so the next view is the same too)."""
    x, ei = _graph(loops=True)  # input self-loops must not change the result
    if not sparse:
        x = x + 0.01
    fast_views = FastViews(fast_features(x), ei)
    assert (fast_views.builder.features.__class__.__name__ == "MaskableCSR") == sparse
    plain_views = PlainViews(fast_features(x), ei, CPU)  # features as the trainer stores them
    dense_views = PlainViews(x, ei, CPU)  # and as the reference has them: dense, masked by copying
    gens = [torch.Generator().manual_seed(11) for _ in range(3)]
    g_fast, g_plain, g_dense = gens
    for _ in range(2):
        fv = fast_views.view(p_edge, p_feat, g_fast)
        pv = plain_views.view(p_edge, p_feat, g_plain)
        dv = dense_views.view(p_edge, p_feat, g_dense)
        _assert_same_views(fv, pv, x.size(0))
        _assert_same_views(fv, dv, x.size(0))
        assert dv.x.layout == torch.strided
        assert torch.equal(g_fast.get_state(), g_plain.get_state())
        assert torch.equal(g_fast.get_state(), g_dense.get_state())
    if p_edge == 0.0 and p_feat == 0.0:  # nothing drawn, nothing changed
        assert torch.equal(g_fast.get_state(), torch.Generator().manual_seed(11).get_state())
        assert torch.equal(pv.edge_index, ei) and torch.equal(_dense(pv.x), x)
    assert torch.equal(ei, _graph(loops=True)[1])  # input untouched


@pytest.mark.parametrize("sparse,prelu", [(True, "shared"), (False, "shared"), (True, "channel"), (False, "channel")])
@pytest.mark.parametrize("include_heads", [False, True])
def test_same_loss_and_gradients_as_plain_backend(sparse, prelu, include_heads):
    """One BGRL step, fast backend (library loss + closed-form WERank) vs plain backend (stock
    formulas through autograd), from the same seed and views: equal loss, gradients and statistics."""
    x, ei = _graph()
    if not sparse:
        x = x + 0.01  # dense features take the dense first layer
    fast, plain = _fast_and_plain(_cfg(f"model.prelu={prelu}"), x.size(1))
    assert type(fast.predictor.net[0]) is FastLinear and type(plain.predictor.net[0]) is torch.nn.Linear
    assert type(fast.predictor.net[1]) is FastPReLU and type(plain.predictor.net[1]) is torch.nn.PReLU
    names = [n for n, _ in fast.named_regularised_weights(include_heads)]
    assert names == [n for n, _ in plain.named_regularised_weights(include_heads)]
    assert all(a is b for a, b in zip(plain.regularised_weights(include_heads), bgrl_weight_matrices(plain, include_heads)))

    fast_views = FastViews(fast_features(x), ei)
    g = torch.Generator().manual_seed(5)
    f1, f2 = fast_views.view(0.3, 0.2, g), fast_views.view(0.2, 0.4, g)
    assert (f1.x.mask is None) == sparse
    plain_views = PlainViews(x, ei, CPU)
    g = torch.Generator().manual_seed(5)
    p1, p2 = plain_views.view(0.3, 0.2, g), plain_views.view(0.2, 0.4, g)
    _assert_same_views(f1, p1, x.size(0))
    _assert_same_views(f2, p2, x.size(0))

    fast.train(), plain.train()
    loss_fast = fast.loss(f1, f2)["loss"] + werank_penalty(fast.regularised_weights(include_heads), 0.05)
    loss_plain = stock_bgrl_loss(plain, p1, p2) + stock_werank(bgrl_weight_matrices(plain, include_heads), 0.05)
    loss_fast.backward()
    loss_plain.backward()

    assert torch.allclose(loss_fast, loss_plain, atol=1e-5)
    plain_params = dict(plain.named_parameters())
    for name, p in fast.named_parameters():
        if p.grad is None:
            assert plain_params[name].grad is None, name
            continue
        assert plain_params[name].grad is not None, name
        assert torch.allclose(p.grad, plain_params[name].grad, atol=1e-5, rtol=1e-4), name
    assert all(p.grad is None for p in fast.target_encoder.parameters())
    # and the BatchNorm running statistics (online and target) moved the same way
    plain_state = plain.state_dict()
    for name, a in fast.state_dict().items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.allclose(a.float(), plain_state[name].float(), atol=1e-5), name


@pytest.mark.parametrize("p_edge,p_feat", [(0.0, 0.0), (0.3, 0.4), (0.6, 0.0)])
def test_view_builder_gives_make_view_views(p_edge, p_feat):
    x, ei = _graph(loops=True)  # input self-loops must not change the result
    xs = fast_features(x)
    builder = ViewBuilder(xs, ei)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    feats, adj = builder.view(p_edge, p_feat, g1)
    x_ref, adj_ref = make_view(xs, ei, p_edge, p_feat, g2)
    assert torch.equal(feats.materialize().to_dense(), x_ref.to_dense())
    assert torch.equal(adj.mat.to_dense(), adj_ref.to_dense())
    assert torch.equal(adj.mat_t.to_dense(), adj_ref.to_dense().t())
    assert torch.equal(g1.get_state(), g2.get_state())  # the same number of draws
    assert torch.equal(ei, _graph(loops=True)[1])  # input untouched


@pytest.mark.parametrize("channels", [1, 7])
def test_prelu_matches_torch(channels):
    x = torch.randn(50, 7, requires_grad=True)
    x.data[0, :3] = 0.0  # the kink: torch's rule is slope a at x = 0
    w = torch.full((channels,), 0.25).uniform_(-0.5, 0.5).requires_grad_()
    g = torch.randn(50, 7)
    ref = torch.nn.functional.prelu(x, w)
    ref_grads = torch.autograd.grad(ref, (x, w), g)
    out = prelu(x, w)
    grads = torch.autograd.grad(out, (x, w), g)
    assert torch.equal(out, ref)
    assert torch.equal(grads[0], ref_grads[0])
    assert torch.allclose(grads[1], ref_grads[1], atol=1e-6)


def test_sparse_matmul_values_and_gradient():
    x, _ = _graph()
    s = x.to_sparse_csr()
    h = torch.randn(x.size(1), 9, requires_grad=True)
    out = sparse_matmul(SparseOperand.of(s), h)
    assert torch.allclose(out, x @ h, atol=1e-6)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, h, g)
    assert torch.allclose(grad, x.t() @ g, atol=1e-5)
    assert torch.allclose(csr_matmul(s, h.detach()), x @ h.detach(), atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (6, 6)])
def test_werank_closed_form_gradient_matches_autograd(shape):
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    fast = torch.autograd.grad(_frobenius_distance_to_identity(w), w)[0]
    ref = torch.autograd.grad(_frobenius_distance_to_identity_autograd(w), w)[0]
    assert torch.allclose(fast, ref, atol=1e-12)
    assert torch.autograd.gradcheck(_frobenius_distance_to_identity, (w,))
    # and against the stock formula of this file (matrix_norm through autograd)
    w2 = w.detach().clone().requires_grad_()
    stock = torch.autograd.grad(stock_werank([w2], 1.0), w2)[0]
    assert torch.allclose(fast, stock, atol=1e-10)


def _trainer_cfg(sparse, *extra):
    dims = ["data.csbm.feature_density=0.05", "data.csbm.num_features=200"] if sparse else []
    return build_config({}, TINY + dims + ["device=cpu", "werank.alpha=0.05", *extra])


@pytest.mark.parametrize("backend", ["fast", "plain"])
@pytest.mark.parametrize("sparse", [True, False])
def test_trainer_step_has_the_gradients_of_the_whole_stock_loss(tmp_path, sparse, backend):
    """Trainer.step back-propagates the two BGRL halves and WERank one after another (BGRL.backward,
    then the penalty); on either backend the summed gradients must equal those of the whole loss
    written with stock formulas on the plain backend's modules, from the same seed and views."""
    cfg = _trainer_cfg(sparse, "werank.include_heads=true", f"backend={backend}")
    graph = load_graph(cfg)
    assert (graph.x.layout == torch.sparse_csr) == sparse
    trainer = Trainer(cfg, graph, tmp_path, progress=False)
    assert trainer.backend.name == backend
    record = trainer.step(0)  # epoch 0 of the warm-up: lr = 0, so the weights stay where they were

    torch.manual_seed(cfg.seed)
    ref = build_method(cfg, graph.x.size(1), PlainBackend(CPU))
    gen = torch.Generator().manual_seed(cfg.seed)
    views = PlainViews(_dense(graph.x), graph.edge_index, CPU)  # the reference: dense features masked by copying
    v1, v2 = [views.view(v.edge_drop_p, v.feat_mask_p, gen) for v in cfg.augment]
    assert torch.equal(gen.get_state(), trainer.generator.get_state())  # the trainer drew the same numbers
    ref.train()
    ssl = stock_bgrl_loss(ref, v1, v2)
    reg = stock_werank(bgrl_weight_matrices(ref, True), 0.05)
    (ssl + reg).backward()

    assert record["loss"] == pytest.approx((ssl + reg).item(), abs=1e-5)
    assert record["ssl_loss"] == pytest.approx(ssl.item(), abs=1e-5)
    assert record["werank"] == pytest.approx(reg.item(), abs=1e-6)
    assert record["lr"] == 0.0
    got = dict(trainer.method.named_parameters())
    assert list(got) == [n for n, _ in ref.named_parameters()]
    for name, p in ref.named_parameters():
        if p.grad is None:
            assert got[name].grad is None, name
            continue
        assert torch.allclose(got[name].grad, p.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("sparse", [True, False])
def test_fast_trainer_follows_the_plain_trainer_for_many_steps(tmp_path, sparse, monkeypatch):
    """Twelve real steps (lr > 0 from epoch 1) of Trainer on the fast backend, on the plain backend,
    and on the plain backend with the stock loss, stock WERank and PyTorch's default AdamW, from the
    same seed: the logged losses agree to float32 rounding at every step. State carried between steps
    (optimizer moments, EMA target, BatchNorm statistics, anything cached) has to be right for this
    to hold; a first-layer transpose kept across optimizer steps, for one, is off by ~0.1 from step 3.
    (Parameters are not compared: Adam turns rounding-level differences in near-zero gradients into
    step-sized ones, so single weights may differ by ~lr while the losses stay equal.)"""
    cfg = _trainer_cfg(sparse, "train.epochs=20")
    graph = load_graph(cfg)
    fast = Trainer(cfg, graph, tmp_path / "fast", progress=False, backend=FastBackend(CPU))
    plain = Trainer(cfg, graph, tmp_path / "plain", progress=False, backend=PlainBackend(CPU))
    stock = Trainer(cfg, graph, tmp_path / "stock", progress=False, backend=PlainBackend(CPU))
    stock.penalty = stock_werank
    stock.optimizer = torch.optim.AdamW(stock.method.trainable_parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    a, b = fast.method.state_dict(), plain.method.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    calls = []

    def counted_stock_term(q, y):
        calls.append(q.shape)
        return stock_bgrl_term(q, y)

    for epoch in range(12):
        rf, rp = fast.step(epoch), plain.step(epoch)
        with monkeypatch.context() as m:  # BGRL.backward's loss term, for the stock trainer only
            m.setattr(bgrl_module, "bgrl_loss_term", counted_stock_term)
            rs = stock.step(epoch)
        for r in (rp, rs):
            assert rf["loss"] == pytest.approx(r["loss"], abs=1e-4), epoch
            assert rf["werank"] == pytest.approx(r["werank"], abs=1e-4), epoch
            assert rf["momentum"] == r["momentum"] and rf["lr"] == r["lr"], epoch
    assert rf["lr"] > 0
    assert len(calls) == 2 * 12  # the stock trainer did use the stock loss


# ---------------------------------------------------------------------------------------------------
# the building blocks of the fast path, each against the plain PyTorch operation it replaces


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_linear_values_and_gradients(bias):
    from bgrl_werank.ops import linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 13, generator=g, requires_grad=True)
    w = torch.randn(7, 13, generator=g, requires_grad=True)
    b = torch.randn(7, generator=g, requires_grad=True) if bias else None
    out = linear(x, w, b)
    ref = torch.nn.functional.linear(x, w, b)
    assert torch.allclose(out, ref, atol=1e-5)
    grad = torch.randn(out.shape, generator=g)
    inputs = (x, w, b) if bias else (x, w)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    for a, e in zip(got, want):
        assert torch.allclose(a, e, atol=1e-5)
    with torch.no_grad():  # the no-grad path (target network) gives the same values
        assert torch.allclose(linear(x, w, b), ref, atol=1e-5)


def test_linear_gradcheck_float64():
    from bgrl_werank.ops import linear

    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear, (x, w, b))


def test_onednn_switch_is_honoured(monkeypatch):
    from bgrl_werank import ops

    monkeypatch.setattr(ops, "_ONEDNN", None)
    monkeypatch.setenv("BGRL_WERANK_ONEDNN", "0")
    assert ops.onednn_matmul_enabled() is False
    x, w = torch.randn(5, 3), torch.randn(2, 3)
    assert torch.allclose(ops.matmul_nt(x, w), x @ w.t())
    monkeypatch.setattr(ops, "_ONEDNN", None)  # the next caller decides again


@pytest.mark.parametrize("p", [0.0, 0.4, 0.9])
def test_maskable_csr_drops_exactly_the_masked_columns(p):
    from bgrl_werank.augment import MaskableCSR

    x, _ = _graph()
    dense = fast_features(x).to_dense()
    maskable = MaskableCSR(fast_features(x))
    keep = torch.rand(x.size(1), generator=torch.Generator().manual_seed(3)) >= p
    op = maskable.masked(keep)
    expected = dense * keep.to(dense.dtype)
    assert torch.equal(op.mat.to_dense(), expected)
    assert torch.equal(op.mat_t.to_dense(), expected.t())
    assert op.mat._nnz() == int((expected != 0).sum())  # dropped, not stored as zeros
    assert torch.equal(maskable.full.mat.to_dense(), dense)  # the full matrix is untouched


def test_sparse_linear_values_and_gradient():
    from bgrl_werank.ops import sparse_linear, transposed

    x, _ = _graph()
    s = SparseOperand.of(x.to_sparse_csr())
    w = torch.randn(9, x.size(1), requires_grad=True)
    out = sparse_linear(s, w)
    assert torch.allclose(out, x @ w.t(), atol=1e-5)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, w, g)
    assert torch.allclose(grad, g.t() @ x, atol=1e-5)
    assert torch.equal(transposed(w), w.detach().t()) and transposed(w).is_contiguous()


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_after_bias_is_batch_norm_of_the_sum(training):
    from bgrl_werank.ops import batch_norm_after_bias

    g = torch.Generator().manual_seed(1)
    z = torch.randn(30, 6, generator=g, requires_grad=True)
    bias = (torch.randn(6, generator=g) * 3).requires_grad_()
    fast, plain = torch.nn.BatchNorm1d(6, momentum=0.1), torch.nn.BatchNorm1d(6, momentum=0.1)
    with torch.no_grad():
        for m in (fast, plain):
            m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
            m.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(3))
            m.running_mean.fill_(0.3)
            m.running_var.fill_(2.0)
    fast.train(training)
    plain.train(training)
    out = batch_norm_after_bias(z, bias, fast)
    ref = plain(z + bias)
    assert torch.allclose(out, ref, atol=1e-5)
    grad = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad(out, (z, bias, fast.weight, fast.bias), grad)
    want = torch.autograd.grad(ref, (z, bias, plain.weight, plain.bias), grad)
    for a, e in zip(got, want):
        assert torch.allclose(a, e, atol=1e-5)
    if training:
        assert torch.equal(got[1], torch.zeros(6))  # exactly 0: BatchNorm cancels the bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(fast, name).float(), getattr(plain, name).float(), atol=1e-6), name


def test_bgrl_loss_term_closed_form_matches_autograd_through_cosine_similarity():
    from bgrl_werank.losses.bgrl import bgrl_loss_term

    g = torch.Generator().manual_seed(4)
    q = torch.randn(25, 8, generator=g, dtype=torch.float64)
    q[3] = 0.0  # a zero prediction: the norm clamp applies
    q[4] = 1e-12
    q.requires_grad_()
    y = torch.randn(25, 8, generator=g, dtype=torch.float64)
    y[5] = 0.0
    loss = bgrl_loss_term(q, y)
    ref = 1.0 - torch.nn.functional.cosine_similarity(q, y, dim=-1).mean()
    assert torch.allclose(loss, ref, atol=1e-12)
    (got,) = torch.autograd.grad(loss, q)
    (want,) = torch.autograd.grad(ref, q)
    assert torch.allclose(got, want, atol=1e-9)
    y6 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: bgrl_loss_term(t, y6), (torch.randn(6, 5, generator=g, dtype=torch.float64).requires_grad_(),))


def test_fused_adamw_takes_the_same_steps_as_the_default():
    from bgrl_werank.train.trainer import make_optimizer

    g = torch.Generator().manual_seed(5)
    a = [torch.nn.Parameter(torch.randn(20, 7, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fast = make_optimizer(a, 1e-2, 1e-5)
    plain = torch.optim.AdamW(b, lr=1e-2, weight_decay=1e-5)
    for _ in range(5):
        for p, r in zip(a, b):
            grad = torch.randn(p.shape, generator=g)
            p.grad, r.grad = grad, grad.clone()
        fast.step()
        plain.step()
    for p, r in zip(a, b):
        assert torch.allclose(p, r, atol=1e-6)


# the feature-major first weight (encoders.fast_gcn.store_feature_major)


def _feature_major(w: torch.Tensor) -> torch.Tensor:
    return w.detach().t().contiguous().t().requires_grad_(w.requires_grad)


@pytest.mark.parametrize("shape", [(37, 70), (70, 37), (19, 19), (5, 9)])
@pytest.mark.parametrize("layout", ["row-major", "feature-major"])
def test_werank_blocked_gram_and_gradient_in_either_layout(shape, layout):
    """The block-triangle Gram and the closed-form gradient, against float64 autograd through w·wᵀ;
    the gradient comes back in the weight's own strides (so it accumulates without a copy)."""
    from bgrl_werank.losses.werank import _symmetric_gram

    g = torch.Generator().manual_seed(3)
    w = torch.randn(*shape, generator=g)
    if layout == "feature-major":
        w = _feature_major(w)
    w.requires_grad_()
    r = w if shape[0] <= shape[1] else w.t()
    gram = _symmetric_gram(r.detach())
    assert torch.equal(gram, gram.t())
    assert torch.allclose(gram.double(), r.detach().double() @ r.detach().double().t(), atol=1e-4)
    (grad,) = torch.autograd.grad(_frobenius_distance_to_identity(w), w)
    w64 = w.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(_frobenius_distance_to_identity_autograd(w64), w64)
    assert torch.allclose(grad.double(), ref, atol=1e-4, rtol=1e-4)
    assert grad.stride() == w.stride()


def test_werank_blocked_gradcheck_float64():
    w = torch.randn(18, 25, dtype=torch.float64, requires_grad=True)  # 18 rows: four Gram blocks
    assert torch.autograd.gradcheck(_frobenius_distance_to_identity, (w,))
    assert torch.autograd.gradcheck(_frobenius_distance_to_identity, (_feature_major(w),))


def test_linear_and_sparse_linear_with_a_feature_major_weight():
    from bgrl_werank.ops import linear, sparse_linear, transposed

    x, _ = _graph()
    w_row = torch.randn(9, x.size(1), requires_grad=True)
    w_fm = _feature_major(w_row)
    assert transposed(w_fm).is_contiguous() and transposed(w_fm).data_ptr() == w_fm.data_ptr()  # no copy
    s = SparseOperand.of(x.to_sparse_csr())
    for fn, inp in ((sparse_linear, s), (linear, x)):
        outs, grads = [], []
        for w in (w_row, w_fm):
            out = fn(inp, w)
            (grad,) = torch.autograd.grad(out, w, torch.ones_like(out))
            outs.append(out)
            grads.append(grad)
        assert grads[1].stride() == w_fm.stride(), fn.__name__  # accumulates without a copy
        assert torch.allclose(outs[0], outs[1], atol=1e-5)
        assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_encoder_first_weight_is_feature_major_and_draws_the_row_major_values():
    from torch_geometric.nn import GCNConv

    from bgrl_werank import encoders
    from bgrl_werank.encoders.fast_gcn import FastGCNEncoder

    torch.manual_seed(0)
    enc = FastGCNEncoder(30, [8, 4])
    w = enc.convs[0].lin.weight
    assert w.shape == (8, 30) and w.t().is_contiguous() and not w.is_contiguous()
    assert enc.convs[1].lin.weight.is_contiguous()
    torch.manual_seed(1)
    enc.reset_parameters()
    assert enc.convs[0].lin.weight is w and w.t().is_contiguous()
    ref = GCNConv(30, 8)  # a row-major weight, given the same draw
    torch.manual_seed(1)
    ref.reset_parameters()
    assert torch.equal(w, ref.lin.weight)
    plain = encoders.build("gcn", 30, [8, 4])  # the plain backend's encoder re-drawn from the same seed
    torch.manual_seed(1)
    plain.reset_parameters()
    assert plain.convs[0].lin.weight.is_contiguous()
    a, b = enc.state_dict(), plain.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_row_major_optimizer_state_is_given_the_parameters_layout_on_load(tmp_path):
    """Fused AdamW pairs parameter and moments as flat memory: moments saved in row-major order
    (checkpoints from before the feature-major first weight) must be re-laid out on load."""
    from bgrl_werank.train.trainer import make_optimizer, match_state_layouts

    g = torch.Generator().manual_seed(2)
    row = torch.nn.Parameter(torch.randn(12, 30, generator=g))
    fm = torch.nn.Parameter(row.detach().t().contiguous().t())
    opt_row, opt_fm = make_optimizer([row], 1e-2, 1e-4), make_optimizer([fm], 1e-2, 1e-4)
    row.grad = torch.randn(12, 30, generator=g)
    opt_row.step()
    torch.save(opt_row.state_dict(), tmp_path / "opt.pt")  # as a checkpoint holds it
    opt_fm.load_state_dict(torch.load(tmp_path / "opt.pt"))
    match_state_layouts(opt_fm)
    assert all(v.stride() == fm.stride() for v in opt_fm.state[fm].values() if v.shape == fm.shape)
    with torch.no_grad():
        fm.copy_(row)
    grad = torch.randn(12, 30, generator=g)
    row.grad, fm.grad = grad.clone(), _feature_major(grad)
    opt_row.step()
    opt_fm.step()
    assert torch.allclose(row, fm, atol=1e-7)


@pytest.mark.parametrize("cache_bytes, blocks", [(None, 1), (10**9, 1), (110_000, 4), (250_000, 2), (1_000, 1)])
def test_column_blocked_csr_matmul_is_the_same_product(monkeypatch, cache_bytes, blocks):
    """Blocks of h's columns (where h does not fit the cache) give the unblocked sums bit for bit."""
    from bgrl_werank import ops

    x, _ = _graph(n=200, f=50)
    s = x.to_sparse_csr()
    h = torch.randn(200, 300)  # 240 kB; a block may fill 0.6 of the cache and must be >= 64 columns
    want = ops.csr_matmul(s, h)
    calls = []
    plain = ops.csr_matmul
    monkeypatch.setattr(ops, "csr_matmul", lambda m, b: calls.append(b.shape[1]) or plain(m, b))
    monkeypatch.setattr(ops, "last_level_cache_bytes", lambda: cache_bytes)
    out = ops.csr_matmul_in_column_blocks(s, h)
    assert len(calls) == blocks and sum(calls) == 300
    assert torch.equal(out, want)
    assert out.is_contiguous()
