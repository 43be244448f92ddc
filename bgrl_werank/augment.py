"""Graph augmentations: edge dropping and feature masking (pure functions, seeded by a Generator).

In this project a probability ``p`` is always the probability of *dropping* (an edge) or of
*masking* (a feature column); ``p = 0`` returns the input object itself, unchanged. Inputs are never
modified in place.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor


def _check_p(p: float, name: str) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p}")


def drop_edges(edge_index: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Drop each directed edge independently with probability ``p`` (the BGRL reference's rule).

    Args:
        edge_index: (2, E) long tensor.
        p: drop probability in [0, 1).
        generator: the random stream; the same generator state gives the same view.

    Returns:
        (2, E') edge index with the kept edges, in their original order (``edge_index`` itself when p = 0).
    """
    _check_p(p, "edge_drop_p")
    if p == 0.0:
        return edge_index
    keep = torch.rand(edge_index.size(1), generator=generator) >= p
    return edge_index[:, keep]


def feature_mask(num_features: int, p: float, generator: torch.Generator | None = None) -> Tensor:
    """A float (F,) mask of 0s and 1s; each column is zeroed with probability ``p``."""
    _check_p(p, "feat_mask_p")
    return (torch.rand(num_features, generator=generator) >= p).to(torch.float32)


def mask_features(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero whole feature columns, each with probability ``p``; one mask shared by all nodes.

    Works on dense and on sparse CSR features: for CSR the mask multiplies the stored values, which
    costs O(nnz) and never densifies X.

    Args:
        x: (N, F) features, dense or sparse CSR.
        p: mask probability in [0, 1).
        generator: the random stream.

    Returns:
        A new (N, F) tensor of the same layout (``x`` itself when p = 0).
    """
    _check_p(p, "feat_mask_p")
    if p == 0.0:
        return x
    mask = feature_mask(x.size(1), p, generator).to(x.dtype)
    if x.layout == torch.sparse_csr:
        cols = x.col_indices()
        return torch.sparse_csr_tensor(x.crow_indices(), cols, x.values() * mask[cols], size=x.shape)
    return x * mask


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """The GCN-normalised adjacency with self-loops, as a sparse CSR tensor ready for ``GCNConv``.

    Uses PyG's ``gcn_norm`` (self-loops added where missing, symmetric D^-1/2 (A + I) D^-1/2 with
    in-degrees) and stores the transpose (row = target node), which is what ``GCNConv`` expects
    when given a sparse matrix.

    Shapes:
        - edge_index: (2, E)
        - output: (N, N) sparse CSR, float32
    """
    ei, w = gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True)
    return to_torch_csr_tensor(ei.flip(0), w, size=(num_nodes, num_nodes))


def make_view(
    x: Tensor,
    edge_index: Tensor,
    edge_drop_p: float,
    feat_mask_p: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One augmented view: masked features and the normalised adjacency of the kept edges.

    Edges are drawn before features, so a view is a function of the generator state alone.
    """
    kept = drop_edges(edge_index, edge_drop_p, generator)
    xv = mask_features(x, feat_mask_p, generator)
    return xv, normalized_adjacency(kept, x.size(0))
