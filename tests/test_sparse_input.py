"""Sparse CSR features through every built-in encoder (bgrl_werank.encoders.sparse_input): the same values
and gradients as the dense features, for each layer with its options, for every method × encoder on a
CSBM graph with sparse features and on Cora's real features, and no (N, F) dense tensor is ever made."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv

from bgrl_werank import encoders, methods
from bgrl_werank.backends import PlainBackend
from bgrl_werank.config import build_config
from bgrl_werank.data import load_dataset
from bgrl_werank.encoders.sparse_input import conv_sparse_input, keeps_sparse
from bgrl_werank.train.trainer import build_method, fast_features

from .conftest import missing_data

CPU = torch.device("cpu")
N, F = 50, 37  # F differs from every other size here, so a dense (N, F) tensor is recognisable


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _features(n=N, f=F, density=0.08, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g)
    x[x > density] = 0
    return x, x.to_sparse_csr()


def _edges(n=N, e=150, seed=1):
    """Random directed edges; the last five nodes are isolated (no in-edges: SAGE's bias case)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 5, (2, e), generator=g)
    return ei[:, ei[0] != ei[1]]


class _DenseNF(TorchDispatchMode):
    """Records every strided (N, F) or (F, N) tensor any aten operation returns (autograd's too)."""

    def __init__(self, n: int, f: int) -> None:
        super().__init__()
        self.shapes, self.seen = {(n, f), (f, n)}, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and tuple(t.shape) in self.shapes:
                self.seen.append(str(func))
        return out


def _close(a, b, what, scale=None):
    """Float32 agreement; the absolute tolerance scales with ``scale`` (default: the largest |b|), so
    that entries that are mathematically 0 (a bias before BatchNorm) are compared to the rest."""
    a, b = a.detach(), b.detach()
    scale = (float(b.abs().max()) if b.numel() else 1.0) if scale is None else scale
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * max(1.0, scale), msg=lambda m: f"{what}: {m}")


def _gin_mlp(first):
    return nn.Sequential(first, nn.ReLU(), nn.Linear(12, 12))


_MAKE = {
    "gcn": lambda: GCNConv(F, 12),
    "gat": lambda: GATConv(F, 6, heads=2),
    "gat_residual": lambda: GATConv(F, 6, heads=2, residual=True),
    "sage": lambda: SAGEConv(F, 12),
    "sage_sum_normalize": lambda: SAGEConv(F, 12, aggr="sum", normalize=True),
    "sage_no_root": lambda: SAGEConv(F, 12, root_weight=False),
    "sage_project": lambda: SAGEConv(F, 12, project=True),
    "sage_lazy": lambda: SAGEConv(-1, 12),
    "gin": lambda: GINConv(_gin_mlp(nn.Linear(F, 12))),
    "gin_train_eps_mean": lambda: GINConv(_gin_mlp(nn.Linear(F, 12)), train_eps=True, eps=0.3, aggr="mean"),
    "gin_lazy": lambda: GINConv(_gin_mlp(nn.LazyLinear(12))),
    "sage_max": lambda: SAGEConv(F, 12, aggr="max"),  # not linear: densified
}


def _layer(kind):
    torch.manual_seed(0)
    return _MAKE[kind]()


LAYERS = list(_MAKE)


@pytest.mark.parametrize("kind", LAYERS)
def test_each_layer_on_sparse_features_equals_the_dense_layer(kind):
    """Values and parameter gradients of conv_sparse_input(conv, csr) = conv(dense); only the non-linear
    aggregation makes an (N, F) dense tensor, in the forward or the backward pass."""
    x, xs = _features()
    ei = _edges()
    dense, sparse = _layer(kind), _layer(kind)
    torch.manual_seed(5)
    out_d = dense(x, ei)  # a lazy layer is initialised by its first call, from the same seed
    torch.manual_seed(5)
    spy = _DenseNF(N, F)
    with spy:
        out_s = conv_sparse_input(sparse, xs, ei)
        weights = torch.randn(out_d.shape)
        (out_s * weights).sum().backward()
    (out_d * weights).sum().backward()
    _close(out_s, out_d, "output")
    assert out_s.abs().sum() > 0
    for (name, p_d), (_, p_s) in zip(dense.named_parameters(), sparse.named_parameters()):
        assert p_s.grad is not None and p_d.grad is not None, name
        _close(p_s.grad, p_d.grad, f"grad of {name}")
    assert keeps_sparse(sparse) == (kind != "sage_max")
    if kind == "sage_max":
        assert "aten._to_dense.default" in spy.seen  # the fallback densifies x
    elif kind == "sage_project":  # x is read sparsely, but the layer's own projection is (N, F) wide
        assert "aten._to_dense.default" not in spy.seen and "aten.addmm.default" in spy.seen
    else:
        assert not spy.seen, spy.seen


def _cfg(method, encoder, *extra):
    sizes = "[16, 8]"
    over = [f"method.name={method}", f"model.encoder={encoder}", f"model.layer_sizes={sizes}", "model.heads=2",
            "method.bgrl.predictor_hidden=12", "method.grace.projection_hidden=12", "device=cpu", "backend=plain", *extra]
    if method == "cca_ssg":
        over.append("model.last_activation=false")
    return build_config({}, over)


def _step(cfg, graph, sparse):
    """One loss + backward on two views, then the eval-mode embeddings, on the plain backend."""
    backend = PlainBackend(CPU, sparse_features=sparse)
    torch.manual_seed(0)
    method = build_method(cfg, graph.x.size(1), backend)
    maker = backend.view_maker(graph)
    g = torch.Generator().manual_seed(4)
    v1, v2 = maker.view(0.2, 0.3, g), maker.view(0.3, 0.2, g)
    assert (v1.x.layout == torch.sparse_csr) == sparse
    method.train()
    terms = method.loss(v1, v2)
    terms["loss"].backward()
    z = method.embed(backend.full_graph(graph))
    grads = {n: p.grad for n, p in method.named_parameters() if p.grad is not None}
    return v1, {k: v.detach() for k, v in terms.items()}, z, grads


def _same_as_dense(cfg, graph):
    v_s, terms_s, z_s, grads_s = _step(cfg, graph, True)
    v_d, terms_d, z_d, grads_d = _step(cfg, graph, False)
    assert torch.equal(v_s.x.to_dense(), v_d.x)  # the same masked view, sparse or dense
    assert terms_s.keys() == terms_d.keys()
    for k in terms_s:
        _close(terms_s[k], terms_d[k], f"loss term {k}")
    _close(z_s, z_d, "embeddings")
    assert grads_s.keys() == grads_d.keys() and any(k.startswith("encoder.convs.0.") for k in grads_s)
    largest = max(float(g.abs().max()) for g in grads_d.values())
    for name in grads_s:
        _close(grads_s[name], grads_d[name], f"grad of {name}", scale=largest)


def _csbm_graph():
    data = load_dataset("csbm", csbm=dict(num_nodes=150, num_classes=3, num_features=60, feature_density=0.05,
                                          avg_degree=5, seed=2), row_normalize=True)
    assert data.x.layout == torch.sparse_csr
    return copy.copy(data)


@pytest.mark.parametrize("encoder", encoders.NAMES)
@pytest.mark.parametrize("method", methods.names()[:5])
def test_every_method_and_encoder_on_sparse_csbm_features_equals_dense(method, encoder):
    _same_as_dense(_cfg(method, encoder), _csbm_graph())


@pytest.mark.realdata
@pytest.mark.parametrize("encoder", encoders.NAMES)
@pytest.mark.parametrize("method", methods.names()[:5])
def test_every_method_and_encoder_on_cora_sparse_features_equals_dense(method, encoder):
    import os
    from pathlib import Path

    from bgrl_werank.data import datasets

    spec, root = datasets._SPECS["cora"], Path(os.environ.get("BGRL_WERANK_DATA") or "/nonexistent")
    if not all((root / spec.subdir / f).is_file() for f in spec.raw_files):
        missing_data(f"needs Cora under BGRL_WERANK_DATA (looked in {root})")
    data = load_dataset("cora", root, row_normalize=True, sparse_x=True, download=False)
    data.x = fast_features(data.x)
    assert data.x.layout == torch.sparse_csr and data.x.shape == (2708, 1433)
    _same_as_dense(_cfg(method, encoder), data)
