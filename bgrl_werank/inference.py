"""Layer-by-layer inference over node batches (``eval.inference: layerwise``), for graphs whose
whole-graph forward pass does not fit in memory.

A full forward pass holds, per layer, the messages of every edge (E × width for SAGE, GAT and GIN,
plus GAT's per-edge attention) and the autograd-free intermediates of every node. Here each layer
is computed for ``batch_size`` target nodes at a time, from the previous layer's output of all nodes
(one N × width tensor, kept on the CPU), so the peak beyond the layer outputs is that of one batch:
its in-edges and their sources. In eval mode every norm (BatchNorm with its running statistics,
LayerNorm) and activation acts on each node by itself, so batching them changes nothing; the
convolutions are computed as PyG defines them:

* ``gcn`` (PyG ``GCNConv`` and the fast backend's encoder): Â·(H·Wᵀ) + b, with Â normalised once
  for the whole graph (PyG's ``gcn_norm`` with the layer's own settings; the fast backend's graph
  carries Â already) and H·Wᵀ computed in row batches, then one CSR row block of Â per batch —
  degrees are the whole graph's, which a per-batch edge list would get wrong. The first layer
  projects, per block, only the rows of X that block's rows of Â read, so that no N × width
  product is held beside its output;
* ``sage``, ``gat``, ``gin`` (``SAGEConv``, ``GATConv``, ``GINConv``): the layer itself, called in
  PyG's bipartite form ``conv((x_src, x_dst), edge_index, size)`` on a batch's in-edges, with the
  batch's targets first among the sources, so that GAT's added self-loops (source i → target i for
  i < number of targets) are each target's own.

The result equals the full forward pass within float tolerance (the sums are the same, in another
order): tests/test_inference.py checks every encoder, BatchNorm in eval mode, LayerNorm, the fast
backend, sparse features, batch sizes from 1 to more than N.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from .sampling import csr_rows, in_edge_csr


class InferenceError(ValueError):
    """The encoder cannot be computed layer by layer here; the one-line message says what to use."""


def _layers(encoder: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    convs, norms, acts = (getattr(encoder, name, None) for name in ("convs", "norms", "acts"))
    if convs is None or norms is None or acts is None or not (len(convs) == len(norms) == len(acts)):
        raise InferenceError(f"eval.inference=layerwise computes encoders made of convs/norms/acts layers "
                             f"(gcn, sage, gat, gin); {type(encoder).__name__} is not one: use eval.inference=full")
    for conv in convs:
        if not isinstance(conv, (GCNConv, SAGEConv, GATConv, GINConv)):
            raise InferenceError(f"eval.inference=layerwise computes GCNConv, SAGEConv, GATConv and GINConv layers, "
                                 f"not {type(conv).__name__}; use eval.inference=full")
    return list(zip(convs, norms, acts))


def _gather(x: Tensor, index: Tensor) -> Tensor:
    return csr_rows(x, index).to_dense() if x.layout == torch.sparse_csr else x.index_select(0, index)


def _linear(x: Tensor, weight: Tensor) -> Tensor:
    """x·Wᵀ for a dense or sparse CSR block of rows."""
    if x.layout == torch.sparse_csr:
        return torch.sparse.mm(x, weight.t())
    return x @ weight.t()


class _InEdges:
    """The graph's edges grouped by target (an in-edge CSR), for the in-edges of a range of targets."""

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        self.rowptr, order = in_edge_csr(edge_index, num_nodes)
        self.src, self.dst = edge_index[0].index_select(0, order), edge_index[1].index_select(0, order)
        self.mark = torch.full((num_nodes,), -1, dtype=torch.int64, device=edge_index.device)

    def block(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """``(sources, edge_index)`` for targets ``start … stop - 1``: the global ids of the sources, the
        targets first, then the other sources; the in-edges in local ids (source row, target row)."""
        lo, hi = int(self.rowptr[start]), int(self.rowptr[stop])
        src, dst = self.src[lo:hi], self.dst[lo:hi]
        targets = torch.arange(start, stop, device=src.device)
        outside = src[(src < start) | (src >= stop)]
        others = torch.unique(outside)
        sources = torch.cat([targets, others])
        self.mark[sources] = torch.arange(sources.numel(), device=src.device)
        local = torch.stack([self.mark.index_select(0, src), dst - start])
        self.mark[sources] = -1
        return sources, local


def _gcn_adjacency(conv: GCNConv, edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """Â as PyG's ``GCNConv`` builds it from an edge list, as a CSR matrix with row = target."""
    if conv.normalize:
        ei, w = gcn_norm(edge_index, None, num_nodes, conv.improved, conv.add_self_loops, conv.flow, dtype)
    else:
        ei, w = edge_index, torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    if conv.flow == "source_to_target":
        ei = ei.flip(0)
    return to_torch_csr_tensor(ei, w, size=(num_nodes, num_nodes))


@torch.no_grad()
def layerwise_forward(encoder: nn.Module, x: Tensor, edge_index: Tensor, batch_size: int,
                      store: torch.device | str = "cpu") -> Tensor:
    """``encoder(x, edge_index)`` computed layer by layer over batches of ``batch_size`` target nodes.

    Args:
        encoder: a :class:`~bgrl_werank.encoders.GNNEncoder` (``gcn``, ``sage``, ``gat``, ``gin``) or the
            fast backend's :class:`~bgrl_werank.encoders.fast_gcn.FastGCNEncoder`; run in eval mode.
        x: (N, F) features, dense or sparse CSR.
        edge_index: (2, E) edge list, or for the fast encoder the normalised adjacency (CSR, row = target).
        batch_size: target nodes per batch (≥ 1).
        store: where each layer's output for all nodes is kept (default the CPU: the part that grows with N).

    Returns:
        (N, out_channels) on ``store``.
    """
    from .encoders.fast_gcn import FastGCNEncoder

    if batch_size < 1:
        raise InferenceError(f"eval.inference_batch_size must be >= 1, got {batch_size}")
    layers = _layers(encoder)
    was_training = encoder.training
    encoder.eval()
    try:
        n = x.size(0)
        device = next(encoder.parameters()).device
        adjacency = None
        in_edges = None
        if isinstance(encoder, FastGCNEncoder):
            adjacency = edge_index.mat if hasattr(edge_index, "mat") else edge_index
            if hasattr(x, "x"):  # a view's Features (the encoder accepts them too); no mask at inference
                x = x.x.mat if hasattr(x.x, "mat") else x.x
        # Memory: each layer's output for all nodes is written batch by batch into one preallocated
        # (N, width) tensor (no list of parts and concatenated copy), and the previous layer's output
        # is released as soon as nothing reads it: the first GCN layer holds only its output, a later
        # one N x (input + output width) at most, as do the other convolutions.
        h = x
        ranges = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
        for conv, norm, act in layers:
            if isinstance(conv, GCNConv):
                if adjacency is None:
                    adjacency = _gcn_adjacency(conv, edge_index.to(device), n, torch.float32)

                def finish(z: Tensor) -> Tensor:  # Â·(H·Wᵀ) of a block of rows -> the layer's output rows
                    return act(norm(z if conv.bias is None else z + conv.bias))

                if h is x:
                    # The input stays the caller's: Â·(X·Wᵀ) would hold X·Wᵀ for all nodes beside the
                    # output, so each block projects only the rows of X its rows of Â read (the same
                    # products and sums), and the layer holds only its output.
                    def first_rows(a: int, b: int) -> Tensor:
                        rows = csr_rows(adjacency, torch.arange(a, b, device=adjacency.device))
                        read, local = torch.unique(rows.col_indices(), return_inverse=True)
                        sub = torch.sparse_csr_tensor(rows.crow_indices(), local, rows.values(), size=(b - a, read.numel()))
                        xw = _linear(_rows(x, read).to(device), conv.lin.weight)
                        return finish(torch.sparse.mm(sub.to(device), xw))

                    h = _fill(n, ranges, first_rows, store)
                else:
                    hw = _fill(n, ranges, lambda a, b: _linear(_block(h, a, b, device), conv.lin.weight), store)
                    h = None  # the previous layer's output is read no more
                    hw_dev = hw.to(device)

                    def rows_of(a: int, b: int) -> Tensor:
                        rows = csr_rows(adjacency, torch.arange(a, b, device=adjacency.device)).to(device)
                        return finish(torch.sparse.mm(rows, hw_dev))

                    h = _fill(n, ranges, rows_of, store)
                    del hw, hw_dev
            else:
                if in_edges is None:
                    in_edges = _InEdges(edge_index.to(store), n)

                def rows_of(a: int, b: int) -> Tensor:
                    sources, local = in_edges.block(a, b)
                    x_src = _gather(h, sources.to(h.device)).to(device)
                    z = conv((x_src, x_src[: b - a]), local.to(device), size=(sources.numel(), b - a))
                    return act(norm(z))

                h = _fill(n, ranges, rows_of, store)
        return h
    finally:
        encoder.train(was_training)


def _fill(n: int, ranges: list[tuple[int, int]], rows_of: Any, store: torch.device | str) -> Tensor:
    """One (n, width) tensor on ``store`` from ``rows_of(a, b)`` for each range of rows, written in place
    (its dtype and width those of the first block)."""
    out = None
    for a, b in ranges:
        block = rows_of(a, b)
        if out is None:
            out = torch.empty((n, *block.shape[1:]), dtype=block.dtype, device=store)
        out[a:b] = block.to(store)
    return out


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of ``x`` (sparse CSR rows stay sparse)."""
    return csr_rows(x, index) if x.layout == torch.sparse_csr else x.index_select(0, index)


def _block(h: Tensor, start: int, stop: int, device: torch.device) -> Tensor:
    """Rows ``start … stop - 1`` of ``h`` on ``device`` (sparse CSR rows stay sparse)."""
    if h.layout == torch.sparse_csr:
        return csr_rows(h, torch.arange(start, stop, device=h.device)).to(device)
    return h[start:stop].to(device)


def embed(encoder: nn.Module, data: Any, inference: str = "full", batch_size: int = 4096) -> Tensor:
    """Frozen representations of ``data`` (``.x``, ``.edge_index``) by ``encoder`` in eval mode:
    one whole-graph forward pass (``full``) or :func:`layerwise_forward` (``layerwise``)."""
    if inference == "layerwise":
        return layerwise_forward(encoder, data.x, data.edge_index, batch_size)
    if inference != "full":
        raise InferenceError(f"eval.inference must be full or layerwise, got {inference!r}")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            return encoder(data.x, data.edge_index)
    finally:
        encoder.train(was_training)
