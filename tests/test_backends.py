"""Device and backend selection (bgrl_werank.backends): what `auto` picks, the one-line errors, the plain
backend on every device present, and what the fast backend's pieces must share with the plain ones."""

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from bgrl_werank import backends
from bgrl_werank.backends import BackendError, FastBackend, PlainBackend, PlainViews, resolve_backend, resolve_device
from bgrl_werank.config import build_config
from bgrl_werank.encoders import GNNEncoder
from bgrl_werank.encoders.fast_gcn import FastGCNEncoder
from bgrl_werank.methods import BGRL, GRACE, MLPPredictor
from bgrl_werank.ops import FastLinear, FastPReLU
from bgrl_werank.train.trainer import Trainer, build_method, fast_features, load_graph

from .conftest import TINY

CPU = torch.device("cpu")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs: thread hand-offs would cost more than the work (conftest restores the count)."""
    torch.set_num_threads(1)


def _cfg(*overrides):
    return build_config({}, list(overrides))


def _graph(n=50, f=30, e=300, seed=0, density=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g)
    if density is not None:
        x[x > density] = 0
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    return x, torch.cat([ei, ei.flip(0)], 1).unique(dim=1)


def _dense(x):
    return x if x.layout == torch.strided else x.to_dense()


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ------------------------------------------------------------------ which backend
def test_auto_picks_fast_for_the_default_config_on_cpu():
    cfg = _cfg("device=cpu")
    assert (cfg.backend, cfg.model.encoder, cfg.model.norm, cfg.model.activation) == ("auto", "gcn", "batch", "prelu")
    backend = resolve_backend(cfg)
    assert type(backend) is FastBackend and backend.device == CPU and backend.name == "fast"
    assert type(resolve_backend(_cfg("device=cpu", "backend=fast"))) is FastBackend
    assert type(resolve_backend(_cfg("device=cpu", "model.prelu=channel"))) is FastBackend  # both slope modes


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto means CUDA on this machine")
def test_auto_device_without_cuda_is_the_cpu_and_the_fast_backend():
    assert resolve_device("auto") == CPU
    assert type(resolve_backend(_cfg())) is FastBackend


@pytest.mark.parametrize("overrides", [
    ["model.norm=none"], ["model.norm=layer"], ["model.activation=relu"], ["model.activation=elu"],
    ["model.last_activation=false"], ["model.encoder=sage"], ["model.encoder=gat"], ["model.encoder=gin"],
    ["backend=plain"],
], ids=lambda o: o[0])
def test_auto_picks_plain_where_fast_does_not_apply(overrides):
    cfg = _cfg("device=cpu", *overrides)
    backend = resolve_backend(cfg)
    assert type(backend) is PlainBackend and backend.device == CPU and backend.name == "plain"
    if cfg.backend == "auto":
        assert backends.fast_unavailable(cfg.model, CPU)
    torch.manual_seed(0)
    method = build_method(cfg, 12, backend)
    assert isinstance(method.encoder, GNNEncoder) and method.encoder.conv == cfg.model.encoder


def test_auto_on_a_cuda_device_is_plain():
    """Decided from the device alone: no CUDA device is touched to pick the backend."""
    backend = resolve_backend(_cfg(), torch.device("cuda"))
    assert type(backend) is PlainBackend and backend.device.type == "cuda"


@pytest.mark.parametrize("overrides,why", [
    (["model.encoder=sage"], "gcn encoder only (model.encoder is sage)"),
    (["model.encoder=gat"], "gcn encoder only (model.encoder is gat)"),
    (["model.norm=none"], "model.norm=batch"),
    (["model.activation=relu"], "model.activation=prelu"),
    (["model.last_activation=false"], "model.last_activation=true"),
], ids=lambda o: o[0] if isinstance(o, list) else "")
def test_fast_where_it_does_not_apply_is_a_one_line_error(overrides, why):
    with pytest.raises(BackendError) as err:
        resolve_backend(_cfg("device=cpu", "backend=fast", *overrides))
    msg = _one_line(err)
    assert msg.startswith("backend=fast cannot run this run: ")
    assert why in msg  # why
    assert "use --set backend=plain or backend=auto" in msg  # and the fix
    assert isinstance(err.value, ValueError)


def test_fast_on_cuda_is_a_one_line_error():
    with pytest.raises(BackendError) as err:
        resolve_backend(_cfg("backend=fast"), torch.device("cuda"))
    msg = _one_line(err)
    assert "CPU only (device is cuda)" in msg and "backend=plain" in msg


def test_unknown_backend_and_device_names():
    cfg = _cfg("device=cpu")
    cfg.backend = "turbo"  # past config validation (which rejects it too)
    with pytest.raises(BackendError, match="backend must be auto, fast or plain, got 'turbo'"):
        resolve_backend(cfg)
    with pytest.raises(BackendError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    from bgrl_werank.config import ConfigError

    with pytest.raises(ConfigError, match="backend"):
        _cfg("backend=turbo")
    with pytest.raises(ConfigError, match="device"):
        _cfg("device=gpu")


# ------------------------------------------------------------------ which device
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_is_a_one_line_error(name):
    with pytest.raises(BackendError) as err:
        resolve_device(name)
    msg = _one_line(err)
    assert msg.startswith(f"device={name} but this machine has no CUDA device")
    assert "use --set device=cpu or device=auto" in msg
    with pytest.raises(BackendError):
        resolve_backend(_cfg(f"device={name}"))  # a config's device goes the same way


def test_cuda_index_beyond_the_device_count_is_a_one_line_error(monkeypatch):
    """Against a pretend two-GPU machine (nothing is allocated on a device here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(BackendError) as err:
        resolve_device("cuda:7")
    assert _one_line(err) == "device=cuda:7 but this machine has 2 CUDA device(s): use cuda:0 … cuda:1"
    assert type(resolve_backend(_cfg("device=cuda:1"))) is PlainBackend  # and auto is plain there


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_beyond_the_real_device_count():
    name = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(BackendError) as err:
        resolve_device(name)
    assert f"this machine has {torch.cuda.device_count()} CUDA device(s)" in _one_line(err)


# ------------------------------------------------------------------ the plain backend, on every device
def _step_cfg(device, *extra):
    return build_config({}, TINY + [f"device={device}", "backend=plain", "werank.alpha=0.05",
                                    "werank.include_heads=true", *extra])


@pytest.mark.parametrize("device", DEVICES)
def test_plain_backend_trains_end_to_end_on_each_device(tmp_path, device):
    cfg = _step_cfg(device)
    graph = load_graph(cfg)
    trainer = Trainer(cfg, graph, tmp_path, progress=False)
    assert type(trainer.backend) is PlainBackend and trainer.device.type == device
    assert all(p.device.type == device for p in trainer.method.parameters())
    assert all(b.device.type == device for b in trainer.method.buffers())
    assert type(trainer.method.predictor.net[0]) is nn.Linear  # stock modules on plain
    full = trainer.full_graph
    assert full.x.device.type == device and full.edge_index.dtype == torch.long
    assert torch.equal(_dense(full.x).cpu(), _dense(graph.x)) and torch.equal(full.edge_index.cpu(), graph.edge_index)
    before = [p.detach().clone() for p in trainer.method.encoder.parameters()]
    records = [trainer.step(epoch) for epoch in range(3)]
    for r in records:
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("loss", "ssl_loss", "werank"))
        assert r["loss"] == pytest.approx(r["ssl_loss"] + r["werank"], rel=1e-5)
    assert records[-1]["lr"] > 0 and 0.99 <= records[-1]["momentum"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.method.encoder.parameters()))  # it learned
    z = trainer.method.embed(full)
    assert z.shape == (graph.num_nodes, cfg.model.layer_sizes[-1]) and z.device.type == device
    assert torch.isfinite(z).all()
    trainer.save()
    again = Trainer(cfg, graph, tmp_path, progress=False)
    again.resume()  # a checkpoint written on the device loads back there
    assert again.epoch == 0 and all(torch.equal(a, b) for a, b in zip(again.method.parameters(), trainer.method.parameters()))
    if device != "cpu":  # the same first step as on the CPU, to rounding
        cpu = Trainer(_step_cfg("cpu"), load_graph(_step_cfg("cpu")), tmp_path / "cpu", progress=False)
        assert cpu.step(0)["loss"] == pytest.approx(records[0]["loss"], abs=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p_edge,p_feat", [(0.3, 0.4), (0.0, 0.5), (0.5, 0.0)])
def test_views_on_any_device_draw_the_cpu_views_random_numbers(device, p_edge, p_feat):
    """The same kept edges and the same feature mask as on the CPU, and the same generator state after."""
    x, ei = _graph(density=0.1)
    xs = fast_features(x)
    on_device = PlainViews(xs, ei, torch.device(device))
    on_cpu = PlainViews(xs, ei, CPU)
    g_dev, g_cpu = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(3):
        a, b = on_device.view(p_edge, p_feat, g_dev), on_cpu.view(p_edge, p_feat, g_cpu)
        assert a.x.device.type == device and a.edge_index.device.type == device
        assert torch.equal(a.edge_index.cpu(), b.edge_index)
        assert a.x.layout == b.x.layout and torch.equal(_dense(a.x.cpu()), _dense(b.x))
        assert torch.equal(g_dev.get_state(), g_cpu.get_state())
    # the plain views are those of the stock rule: each edge kept when its uniform is ≥ p, then one uniform per column
    g = torch.Generator().manual_seed(3)
    v = on_cpu.view(p_edge, p_feat, g)
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(ei.size(1), generator=g) >= p_edge if p_edge > 0 else torch.ones(ei.size(1), dtype=torch.bool)
    mask = torch.rand(x.size(1), generator=g) >= p_feat if p_feat > 0 else torch.ones(x.size(1), dtype=torch.bool)
    assert torch.equal(v.edge_index, ei[:, keep]) and torch.equal(_dense(v.x), x * mask)


@pytest.mark.parametrize("device", DEVICES)
def test_trainer_views_on_a_device_match_the_fast_backends(tmp_path, device):
    """An epoch's two views from the run's generator: the plain trainer on ``device`` and the fast one
    on the CPU keep the same edges and mask the same columns."""
    cfg = _step_cfg(device)
    graph = load_graph(cfg)
    plain = Trainer(cfg, graph, tmp_path / "p", progress=False)
    fast = Trainer(_step_cfg("cpu", "backend=fast"), graph, tmp_path / "f", progress=False)
    assert type(fast.backend) is FastBackend
    for _ in range(2):
        for pv, fv in zip(plain.make_views(), fast.make_views()):
            assert torch.equal(fv.x.materialize().to_dense(), _dense(pv.x.cpu()))
            ref = backends.normalized_adjacency(pv.edge_index.cpu(), graph.num_nodes).to_dense()
            assert torch.equal(fv.edge_index.mat.to_dense(), ref)
    assert torch.equal(plain.generator.get_state(), fast.generator.get_state())


# ------------------------------------------------------------------ the fast backend's pieces
def test_fast_prepare_swaps_the_heads_modules_and_keeps_their_values():
    torch.manual_seed(0)
    stock = BGRL(GNNEncoder("gcn", 12, [16, 8]), MLPPredictor(8, 24))
    ref = copy.deepcopy(stock)
    fast = FastBackend(CPU).prepare(stock)
    assert fast is stock  # in place
    kinds = {name: type(m) for name, m in fast.named_modules()}
    assert kinds["predictor.net.0"] is FastLinear and kinds["predictor.net.2"] is FastLinear
    assert kinds["predictor.net.1"] is FastPReLU
    assert all(t is FastPReLU for n, t in kinds.items() if n.startswith(("encoder.acts.", "target_encoder.acts.")))
    assert not any(type(m) in (nn.Linear, nn.PReLU) for m in fast.modules())
    assert kinds["encoder.norms.0"] is nn.BatchNorm1d  # the rest untouched
    a, b = fast.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # outputs and gradients equal to the stock modules'
    g = torch.Generator().manual_seed(1)
    h = torch.randn(40, 8, generator=g)
    h[0, :3] = 0.0  # PReLU's kink
    grad = torch.randn(40, 8, generator=g)
    outs = []
    for m in (fast.predictor, ref.predictor):
        x = h.clone().requires_grad_()
        out = m(x)
        outs.append((out, *torch.autograd.grad(out, (x, *m.parameters()), grad)))
    for got, want in zip(*outs):
        assert torch.allclose(got, want, atol=1e-5)
    # a method with other heads: GRACE's projection (Linear, ELU, Linear)
    grace = FastBackend(CPU).prepare(GRACE(GNNEncoder("gcn", 12, [16, 8]), projection_hidden=10))
    assert [type(m) for m in grace.projector.net] == [FastLinear, nn.ELU, FastLinear]
    # the plain backend leaves stock modules stock
    plain = PlainBackend(CPU).prepare(copy.deepcopy(ref))
    assert type(plain.predictor.net[0]) is nn.Linear and type(plain.predictor.net[1]) is nn.PReLU


@pytest.mark.parametrize("sparse", [True, False])
def test_full_graphs_of_both_backends_give_the_same_embeddings(sparse):
    """Same weights and BatchNorm statistics, eval mode: the fast backend's full graph (features as
    stored, normalised adjacency) and the plain one's (dense x, edge list) embed to the same values."""
    x, ei = _graph(density=0.08 if sparse else None)
    graph = SimpleNamespace(x=fast_features(x), edge_index=ei)
    assert (graph.x.layout == torch.sparse_csr) == sparse
    cfg = _cfg("device=cpu", "model.layer_sizes=[16, 8]", "method.bgrl.predictor_hidden=12")
    fast_backend, plain_backend = FastBackend(CPU), PlainBackend(CPU)
    torch.manual_seed(0)
    plain = build_method(cfg, x.size(1), plain_backend)
    fast = build_method(cfg, x.size(1), fast_backend)
    assert isinstance(fast.encoder, FastGCNEncoder)
    plain.train()
    with torch.no_grad():  # running statistics away from their initial values
        for view in (plain_backend.view_maker(graph).view(0.3, 0.3, torch.Generator().manual_seed(s)) for s in range(3)):
            plain.encoder(view.x, view.edge_index)
    fast.load_state_dict(plain.state_dict())
    plain.train(), fast.train()  # embed() switches to eval mode itself, and back
    full_fast, full_plain = fast_backend.full_graph(graph), plain_backend.full_graph(graph)
    assert isinstance(full_plain, Data) and torch.equal(_dense(full_plain.x), x)
    assert torch.equal(full_plain.edge_index, ei)
    z_fast, z_plain = fast.embed(full_fast), plain.embed(full_plain)
    assert fast.training and plain.training
    assert z_fast.shape == z_plain.shape == (x.size(0), 8)
    assert torch.allclose(z_fast, z_plain, atol=1e-5)
    assert not torch.allclose(z_plain, plain.encoder.train()(full_plain.x, full_plain.edge_index), atol=1e-3)  # eval ≠ train


def _takes_sparse_features() -> bool:
    import inspect

    return "sparse_features" in inspect.signature(PlainBackend).parameters


@pytest.mark.skipif(not _takes_sparse_features(), reason="PlainBackend has no sparse_features option in this tree")
@pytest.mark.parametrize("device", DEVICES)
def test_plain_backend_with_sparse_features_computes_the_dense_values(device):
    """Sparse CSR features kept sparse by the plain backend (gcn) give the loss, gradients and
    embeddings of the same features made dense."""
    x, ei = _graph(density=0.08)
    graph = SimpleNamespace(x=fast_features(x), edge_index=ei)
    assert graph.x.layout == torch.sparse_csr
    cfg = _cfg(f"device={device}", "backend=plain", "model.layer_sizes=[16, 8]", "method.bgrl.predictor_hidden=12")
    dev = torch.device(device)
    results = []
    for sparse in (True, False):
        backend = PlainBackend(dev, sparse_features=sparse)
        torch.manual_seed(0)
        method = build_method(cfg, x.size(1), backend)
        maker = backend.view_maker(graph)
        g = torch.Generator().manual_seed(4)
        v1, v2 = maker.view(0.2, 0.3, g), maker.view(0.3, 0.2, g)
        assert (v1.x.layout == torch.sparse_csr) == sparse
        method.train()
        loss = method.loss(v1, v2)["loss"]
        loss.backward()
        z = method.embed(backend.full_graph(graph))
        results.append((loss.detach(), z, {n: p.grad for n, p in method.named_parameters() if p.grad is not None}))
    (loss_s, z_s, grads_s), (loss_d, z_d, grads_d) = results
    assert torch.allclose(loss_s, loss_d, atol=1e-5)
    assert torch.allclose(z_s, z_d, atol=1e-5)
    assert grads_s.keys() == grads_d.keys() and grads_s
    for name in grads_s:
        assert torch.allclose(grads_s[name], grads_d[name], atol=1e-5, rtol=1e-4), name



def test_plain_backend_keeps_sparse_features_for_built_in_encoders_only(monkeypatch):
    """Every built-in encoder reads CSR features as they are; a registered one gets them dense."""
    from bgrl_werank import encoders

    x, ei = _graph(density=0.08)
    graph = SimpleNamespace(x=fast_features(x), edge_index=ei)
    for name in encoders.NAMES:
        default = PlainBackend(CPU)
        build_method(_cfg("device=cpu", "backend=plain", f"model.encoder={name}", "model.layer_sizes=[16, 8]"),
                     x.size(1), default)
        assert default.full_graph(graph).x.layout == torch.sparse_csr, name
        assert default.view_maker(graph).view(0.2, 0.3, torch.Generator().manual_seed(0)).x.layout == torch.sparse_csr
    monkeypatch.setattr(encoders, "_REGISTRY", dict(encoders._REGISTRY))
    encoders.register("mine", lambda i, sizes, **kw: GNNEncoder("sage", i, sizes, **kw))
    default = PlainBackend(CPU)
    build_method(_cfg("device=cpu", "backend=plain", "model.encoder=mine", "model.layer_sizes=[16, 8]"), x.size(1), default)
    assert default.full_graph(graph).x.layout == torch.strided  # a registered encoder may not take CSR


@pytest.mark.parametrize("name", ["cuda:x", "cuda:", "cuda:-1"])
def test_malformed_cuda_index_is_a_one_line_backend_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BackendError) as err:
        resolve_device(name)
    _one_line(err)


def test_cpu_only_products_are_never_handed_other_devices():
    """oneDNN's products (WERank's Gram matrices, FastLinear) take CPU tensors only; tensors on any other
    device — 'meta' stands in for CUDA here — go through plain matmul (a CUDA run would crash otherwise)."""
    from bgrl_werank.ops import linear, matmul_nt

    x, w = torch.empty(3, 4, device="meta"), torch.empty(5, 4, device="meta")
    assert matmul_nt(x, w).shape == (3, 5) and linear(x, w).shape == (3, 5)
