"""The first layer of an encoder on sparse CSR features, without making the (N, F) matrix dense.

Bag-of-words features are mostly zeros (Coauthor Physics: 34 493 × 8 415, 0.4 % non-zero, 1.2 GB
dense). A first layer whose first operation on ``x`` is linear can start with the sparse × dense
product ``x·Wᵀ`` (O(nnz·out) time, an (N, out) result) and pass the projected features on. What
each of PyG's convolutions does with a ``torch.sparse_csr`` ``x`` (PyG 2.8, read in its sources):

* ``GCNConv`` and ``GATConv`` project first (``self.lin(x)``, PyG's ``Linear``, i.e. ``F.linear``,
  which takes CSR input), then propagate the projection; GAT's optional residual ``self.res(x)`` is
  a ``Linear`` too. They take CSR features as they are: :func:`conv_sparse_input` calls them unchanged.
* ``SAGEConv`` aggregates first (``propagate`` gathers rows of ``x``, which a CSR tensor does not
  support), then applies ``lin_l``; ``lin_r`` reads ``x`` directly. For a linear aggregation (mean,
  sum) ``agg(x)·W_lᵀ = agg(x·W_lᵀ)``, so here ``x·W_lᵀ`` is computed sparsely and aggregated by the
  layer's own ``propagate``; ``lin_l``'s bias is added after the aggregation (``agg(x)·Wᵀ + b``, as
  the layer computes: a node without neighbours gets ``b``, not ``agg(b) = 0``), then ``lin_r(x)``
  (sparse), then the optional L2 normalisation. With ``project=True`` the layer's own first step is
  ``relu(lin(x))`` (dense, read from CSR), so it is called unchanged.
* ``GINConv`` computes ``nn((1 + ε)·x + agg(x))``. When ``nn`` starts with an ``nn.Linear`` (the
  encoder's ``Linear → ReLU → Linear``) and the aggregation is linear (sum, mean), its first map
  distributes: ``((1 + ε)·x + agg(x))·W₁ᵀ + b₁ = (1 + ε)·(x·W₁ᵀ) + agg(x·W₁ᵀ) + b₁``; the rest of
  ``nn`` is applied to that.

The convention is the dense layer's: the same parameters, the same formula, values equal up to
floating-point summation order (``tests/test_sparse_input.py`` holds values and gradients to the
dense path for every encoder and method). Any other layer (a non-linear aggregation such as
``aggr="max"``, a GIN whose ``nn`` does not start with ``nn.Linear``, a registered convolution) gets
``x.to_dense()``: correct, at the dense cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.aggr import MeanAggregation, SumAggregation
from torch_geometric.nn.conv import MessagePassing

__all__ = ["conv_sparse_input", "keeps_sparse"]

# Aggregations that commute with a linear map of the node features: agg(x·Wᵀ) = agg(x)·Wᵀ.
_LINEAR_AGGREGATIONS = (MeanAggregation, SumAggregation)


def _linear_aggregation(conv: MessagePassing) -> bool:
    return type(conv.aggr_module) in _LINEAR_AGGREGATIONS


def _projects_first(conv: nn.Module) -> bool:
    """The layer's own forward reads a CSR ``x`` only through ``F.linear``."""
    return type(conv) in (GCNConv, GATConv) or (type(conv) is SAGEConv and conv.project)


def _sage_distributes(conv: nn.Module) -> bool:
    return type(conv) is SAGEConv and not conv.project and _linear_aggregation(conv)


def _gin_distributes(conv: nn.Module) -> bool:
    return (type(conv) is GINConv and _linear_aggregation(conv) and isinstance(conv.nn, nn.Sequential)
            and len(conv.nn) > 0 and isinstance(conv.nn[0], nn.Linear))


def keeps_sparse(conv: nn.Module) -> bool:
    """Whether :func:`conv_sparse_input` computes ``conv`` from CSR features without densifying them."""
    return _projects_first(conv) or _sage_distributes(conv) or _gin_distributes(conv)


def _materialize(linear: nn.Module, x: Tensor) -> None:
    """Initialise a lazily sized linear map (``in_channels=-1``) the way its first call would."""
    if isinstance(linear.weight, nn.parameter.UninitializedParameter):
        with torch.no_grad():
            linear(x)


def conv_sparse_input(conv: nn.Module, x: Tensor, edge_index: Tensor) -> Tensor:
    """``conv(x, edge_index)`` for sparse CSR ``x`` (N, F), computed as the module docstring says.

    Returns the dense (N, out) output of the layer; differentiable in the layer's parameters.
    """
    if _projects_first(conv):
        return conv(x, edge_index)
    if _sage_distributes(conv):
        _materialize(conv.lin_l, x)
        h = F.linear(x, conv.lin_l.weight)  # x·W_lᵀ, sparse × dense
        out = conv.propagate(edge_index, x=(h, h))  # = agg(x)·W_lᵀ
        if conv.lin_l.bias is not None:
            out = out + conv.lin_l.bias
        if conv.root_weight:
            out = out + conv.lin_r(x)
        if conv.normalize:
            out = F.normalize(out, p=2.0, dim=-1)
        return out
    if _gin_distributes(conv):
        first = conv.nn[0]
        _materialize(first, x)
        h = F.linear(x, first.weight)  # x·W₁ᵀ, sparse × dense
        out = conv.propagate(edge_index, x=(h, h)) + (1 + conv.eps) * h
        if first.bias is not None:
            out = out + first.bias
        return conv.nn[1:](out)
    return conv(x.to_dense(), edge_index)
