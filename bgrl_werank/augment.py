"""Graph augmentations: edge dropping and feature masking (pure functions, seeded by a Generator).

In this project a probability ``p`` is always the probability of *dropping* (an edge) or of
*masking* (a feature column); ``p = 0`` returns the input object itself, unchanged. Inputs are never
modified in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from . import kernels
from .ops import SparseOperand


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


@dataclass(frozen=True)
class Features:
    """A view's node features: the graph's own matrix and a column mask applied in the first layer.

    Dense features keep the whole X and carry the mask: X·diag(m)·Wᵀ = X·(W·diag(m))ᵀ, so masking
    the first weight's columns gives the same product as masking X's columns, without copying X.
    Sparse features come with the mask already applied (``mask`` None): the masked columns' non-zeros
    are dropped from X and from its transpose (see :class:`MaskableCSR`), so the first layer skips
    them instead of multiplying them by zero.
    """

    x: Tensor | SparseOperand  # (N, F) dense, or sparse with its transpose
    mask: Tensor | None  # (F,) float 0/1 for dense x, or None for no (or already applied) masking

    def materialize(self) -> Tensor:
        """The masked features as an ordinary tensor (what :func:`mask_features` returns)."""
        x = self.x.mat if isinstance(self.x, SparseOperand) else self.x
        if self.mask is None:
            return x
        if x.layout == torch.sparse_csr:
            cols = x.col_indices()
            return torch.sparse_csr_tensor(x.crow_indices(), cols, x.values() * self.mask[cols], size=x.shape)
        return x * self.mask


class MaskableCSR:
    """Sparse CSR features X with their transpose, and the column-masked copies of both in O(nnz).

    Dropping the non-zeros of masked columns (rather than zeroing them) makes the first layer's
    forward product X·Wᵀ and its weight gradient Xᵀ·G skip them: with ``feat_mask_p`` = 0.3–0.4 that
    is a third fewer row gathers, for ~3.4 ms of compaction per Coauthor CS view (the compiled
    :func:`bgrl_werank.kernels.csr_keep`; ~9 ms with PyTorch operators) against ~30 ms saved
    (docs/notes/sessions-1-10.md). The sums are those of the zeroed matrix term for term, less the zero terms. Indices
    are int32, which ``embedding_bag`` takes as well as int64 and which halves their memory traffic.

    Args:
        x: (N, F) sparse CSR features.
    """

    def __init__(self, x: Tensor) -> None:
        x = torch.sparse_csr_tensor(x.crow_indices().to(torch.int32), x.col_indices().to(torch.int32), x.values(), size=x.shape)
        self.full = SparseOperand.of(x)
        xt = self.full.mat_t
        self.shape = x.shape
        self._crow64 = x.crow_indices().to(torch.int64)
        self._col = x.col_indices()
        self._val = x.values()
        self._col_t = xt.col_indices()
        self._val_t = xt.values()
        self._count_t = xt.crow_indices().to(torch.int64).diff()

    def masked(self, keep: Tensor) -> SparseOperand:
        """X with only the columns where ``keep`` (F,) bool is true, and its transpose."""
        if self._val.dtype == torch.float32 and kernels.available():  # compiled, ~1/3 of the time (docs/notes/sessions-1-10.md)
            return SparseOperand(kernels.csr_keep(self.full.mat, keep, "columns"), kernels.csr_keep(self.full.mat_t, keep, "rows"))
        # nonzero + index_select rather than masked_select: 3 ms vs 12 ms per Coauthor CS direction
        # (masked_select runs on one thread here); the same entries in the same order.
        n, f = self.shape
        sel = keep.index_select(0, self._col)
        cum = torch.cat([sel.new_zeros(1, dtype=torch.int32), sel.cumsum(0, dtype=torch.int32)])
        idx = sel.nonzero().squeeze(1)
        mat = torch.sparse_csr_tensor(cum.index_select(0, self._crow64), self._col.index_select(0, idx), self._val.index_select(0, idx), size=(n, f))
        idx_t = keep.repeat_interleave(self._count_t).nonzero().squeeze(1)
        crow_t = torch.cat([self._count_t.new_zeros(1), (self._count_t * keep).cumsum(0)]).to(torch.int32)
        mat_t = torch.sparse_csr_tensor(crow_t, self._col_t.index_select(0, idx_t), self._val_t.index_select(0, idx_t), size=(f, n))
        return SparseOperand(mat, mat_t)


class ViewBuilder:
    """Builds the augmented views of one graph in O(E) per view, with no sorting and no graph copies.

    Gives the same views as :func:`make_view` for the same generator state (the same random draws in
    the same order: one uniform per edge, then one per feature column), but

    * the normalised adjacency of the kept edges is assembled directly in CSR order from two
      permutations computed once (edges sorted by target and by source), so a view costs a few
      O(E) gathers instead of PyG's coalesce (a sort) — and it comes with its transpose, which the
      backward pass needs;
    * sparse features come back with the masked columns' non-zeros dropped (:class:`MaskableCSR`);
      for dense features the mask is returned, not applied: the encoder multiplies it into the first
      weight.

    Self-loops are handled as ``gcn_norm`` does: each node ends up with exactly one self-loop of
    weight 1 whether or not the input had one, so input self-loops only matter for the random draw.

    Args:
        x: (N, F) features, dense or sparse CSR (sparse features get a cached transpose).
        edge_index: (2, E) edges, source → target.
    """

    def __init__(self, x: Tensor, edge_index: Tensor) -> None:
        n = x.size(0)
        self.num_nodes = n
        self.num_edges = edge_index.size(1)
        self.features = MaskableCSR(x) if x.layout == torch.sparse_csr else x
        src, dst = edge_index[0], edge_index[1]
        not_loop = src != dst
        self._not_loop = None if bool(not_loop.all()) else not_loop
        loops = torch.arange(n, dtype=edge_index.dtype)
        self._src = torch.cat([src[not_loop], loops])
        self._dst = torch.cat([dst[not_loop], loops])
        # CSR order of A (row = target) and of Aᵀ (row = source); stable sorts keep duplicates in order
        self._order_a = torch.sort(self._dst * n + self._src, stable=True).indices
        self._order_t = torch.sort(self._src * n + self._dst, stable=True).indices
        self._ones_loops = torch.ones(n, dtype=torch.bool)

    def adjacency(self, keep: Tensor | None = None) -> SparseOperand:
        """The GCN-normalised adjacency of the kept edges (``keep``: (E,) bool; None keeps all)."""
        # index_select / masked_select / weighted bincount rather than tensor[bool] and tensor[long]:
        # 2.5–4× faster on CPU (a Photo view: ~35 ms → ~10 ms, 1 thread), same results.
        n = self.num_nodes
        if keep is None:
            keep_full = None
        else:
            if self._not_loop is not None:
                keep = keep.masked_select(self._not_loop)
            keep_full = torch.cat([keep, self._ones_loops])
        if keep_full is None:
            deg = torch.bincount(self._dst, minlength=n).to(torch.float32)
        else:
            deg = torch.bincount(self._dst, weights=keep_full.to(torch.float32), minlength=n)
        dis = deg.pow(-0.5)  # every node has its self-loop, so deg ≥ 1

        def csr(order: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
            sel = order if keep_full is None else order.masked_select(keep_full.index_select(0, order))
            r, c = rows.index_select(0, sel), cols.index_select(0, sel)
            w = dis.index_select(0, c) * dis.index_select(0, r)
            crow = torch._convert_indices_from_coo_to_csr(r, n)
            return torch.sparse_csr_tensor(crow, c, w, size=(n, n))

        return SparseOperand(csr(self._order_a, self._dst, self._src), csr(self._order_t, self._src, self._dst))

    def view(self, edge_drop_p: float, feat_mask_p: float, generator: torch.Generator | None = None) -> tuple[Features, SparseOperand]:
        """One augmented view: (features with their column mask, normalised adjacency with its transpose)."""
        _check_p(edge_drop_p, "edge_drop_p")
        _check_p(feat_mask_p, "feat_mask_p")
        keep = None
        if edge_drop_p > 0.0:
            keep = torch.rand(self.num_edges, generator=generator) >= edge_drop_p
        x = self.features
        if isinstance(x, MaskableCSR):
            feats = Features(x.full if feat_mask_p == 0.0 else x.masked(feature_mask(x.shape[1], feat_mask_p, generator) > 0), None)
        else:
            feats = Features(x, feature_mask(x.size(1), feat_mask_p, generator).to(x.dtype) if feat_mask_p > 0.0 else None)
        return feats, self.adjacency(keep)
