"""Augmentations: dropped fractions, identity at p = 0, inputs untouched, reproducibility."""

import pytest
import torch

from bgrl_werank.augment import drop_edges, make_view, mask_features, normalized_adjacency


def _edges(e=20000, n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


@pytest.mark.parametrize("p", [0.1, 0.4, 0.8])
def test_dropped_edge_fraction(p):
    ei = _edges()
    kept = drop_edges(ei, p, torch.Generator().manual_seed(1))
    frac = 1 - kept.size(1) / ei.size(1)
    assert abs(frac - p) < 0.02  # 20000 Bernoulli draws: std ~0.0035


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_masked_column_fraction_dense_and_sparse(p):
    x = torch.rand(50, 4000) + 0.1
    xm = mask_features(x, p, torch.Generator().manual_seed(2))
    cols_zero = (xm == 0).all(0).float().mean().item()
    assert abs(cols_zero - p) < 0.04
    # one mask shared by all nodes: every column is either all zero or untouched
    untouched = (xm == x).all(0)
    assert bool((untouched | (xm == 0).all(0)).all())
    xs = x.to_sparse_csr()
    xsm = mask_features(xs, p, torch.Generator().manual_seed(2))
    assert xsm.layout == torch.sparse_csr
    assert torch.equal(xsm.to_dense(), xm)  # same generator state → same mask in both layouts


def test_p_zero_is_identity():
    ei = _edges(100, 10)
    x = torch.randn(10, 5)
    assert drop_edges(ei, 0.0) is ei
    assert mask_features(x, 0.0) is x


def test_inputs_not_mutated():
    ei = _edges(500, 50)
    x = torch.randn(50, 30)
    ei0, x0 = ei.clone(), x.clone()
    make_view(x, ei, 0.5, 0.5, torch.Generator().manual_seed(0))
    make_view(x.to_sparse_csr(), ei, 0.5, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(ei, ei0) and torch.equal(x, x0)


def test_same_generator_same_view_and_different_seeds_differ():
    ei = _edges(500, 50)
    x = torch.randn(50, 30)
    v1 = make_view(x, ei, 0.3, 0.3, torch.Generator().manual_seed(7))
    v2 = make_view(x, ei, 0.3, 0.3, torch.Generator().manual_seed(7))
    v3 = make_view(x, ei, 0.3, 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(v1[0], v2[0]) and torch.equal(v1[1].to_dense(), v2[1].to_dense())
    assert not torch.equal(v1[1].to_dense(), v3[1].to_dense())


def test_invalid_probability():
    with pytest.raises(ValueError, match="edge_drop_p"):
        drop_edges(_edges(10, 5), 1.0)
    with pytest.raises(ValueError, match="feat_mask_p"):
        mask_features(torch.randn(3, 3), -0.1)


def test_normalized_adjacency_matches_formula():
    """D^-1/2 (A + I) D^-1/2 on a 4-node path, written out by hand."""
    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    a = torch.zeros(4, 4)
    a[ei[0], ei[1]] = 1
    a_hat = a + torch.eye(4)
    d = a_hat.sum(1).rsqrt()
    expected = d[:, None] * a_hat * d[None, :]
    assert torch.allclose(normalized_adjacency(ei, 4).to_dense(), expected, atol=1e-6)
