"""The fast path (sparse CSR features, adjacency normalised once per view) computes the same model
as a plain PyG implementation (dense features, GCNConv(normalize=True) on the edge list)."""

import torch
from torch import nn
from torch_geometric.nn import GCNConv

from bgrl_werank import bgrl_loss, werank_penalty
from bgrl_werank.augment import drop_edges, make_view, mask_features
from bgrl_werank.models import GCNEncoder, MLPPredictor
from bgrl_werank.train.trainer import fast_features


class PlainEncoder(nn.Module):
    """The reference structure written directly with PyG defaults."""

    def __init__(self, sizes):
        super().__init__()
        self.convs = nn.ModuleList(GCNConv(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(o, momentum=0.01) for o in sizes[1:])
        self.acts = nn.ModuleList(nn.PReLU(o) for o in sizes[1:])

    def forward(self, x, edge_index):
        for c, n, a in zip(self.convs, self.norms, self.acts):
            x = a(n(c(x, edge_index)))
        return x


def _graph(n=60, f=40, e=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g)
    x[x < 0.93] = 0  # ~7% dense: stored as sparse CSR by fast_features
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    ei = torch.cat([ei, ei.flip(0)], 1).unique(dim=1)
    return x, ei


def test_fast_features_goes_sparse_only_when_sparse():
    x, _ = _graph()
    assert fast_features(x).layout == torch.sparse_csr
    assert fast_features(torch.randn(5, 5)).layout == torch.strided


def test_same_loss_and_gradients_as_plain_implementation():
    torch.manual_seed(0)
    x, ei = _graph()
    sizes = [x.size(1), 32, 16]
    fast_enc, plain_enc = GCNEncoder(sizes[0], sizes[1:]), PlainEncoder(sizes)
    plain_enc.load_state_dict(fast_enc.state_dict())
    pred_fast = MLPPredictor(16, 24)
    pred_plain = MLPPredictor(16, 24)
    pred_plain.load_state_dict(pred_fast.state_dict())
    target = GCNEncoder(sizes[0], sizes[1:])
    target_plain = PlainEncoder(sizes)
    target_plain.load_state_dict(target.state_dict())

    # fast: views built by make_view (CSR features, normalised CSR adjacency)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    xf = fast_features(x)
    v1, v2 = make_view(xf, ei, 0.3, 0.2, g1), make_view(xf, ei, 0.2, 0.4, g2)
    q1, q2 = pred_fast(fast_enc(*v1)), pred_fast(fast_enc(*v2))
    with torch.no_grad():
        y1, y2 = target(*v1), target(*v2)
    loss_fast = bgrl_loss(q1, y2, q2, y1) + werank_penalty([c.lin.weight for c in fast_enc.convs], 0.05)
    loss_fast.backward()

    # plain: the same random draws applied to dense features and the edge list
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    views = []
    for g, (pe, pf) in ((g1, (0.3, 0.2)), (g2, (0.2, 0.4))):
        kept = drop_edges(ei, pe, g)
        views.append((mask_features(x, pf, g), kept))
    p1, p2 = pred_plain(plain_enc(*views[0])), pred_plain(plain_enc(*views[1]))
    with torch.no_grad():
        z1, z2 = target_plain(*views[0]), target_plain(*views[1])
    loss_plain = bgrl_loss(p1, z2, p2, z1) + werank_penalty([c.lin.weight for c in plain_enc.convs], 0.05)
    loss_plain.backward()

    assert torch.allclose(loss_fast, loss_plain, atol=1e-5)
    fast_grads = dict(fast_enc.named_parameters())
    for name, p in plain_enc.named_parameters():
        assert torch.allclose(fast_grads[name].grad, p.grad, atol=1e-5, rtol=1e-4), name
    for (n, a), (_, b) in zip(pred_fast.named_parameters(), pred_plain.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), n
