"""The fast CPU backend of the ``gcn`` encoder: GCNConv → BatchNorm → PReLU per layer, hand-optimised.

Only :mod:`bgrl_werank.backends` builds it (``backend: fast``, or ``auto`` on CPU for this layer
type); it computes what ``bgrl_werank.encoders.build("gcn")`` computes (tests/test_fast_path.py holds
values, gradients and training trajectories to that plain encoder) and has the same state dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from ..augment import Features
from ..ops import FastPReLU, SparseOperand, batch_norm_prelu, linear, sparse_linear, sparse_matmul


class FastGCNEncoder(nn.Module):
    """Stack of ``GCNConv → BatchNorm1d → PReLU`` layers (the BGRL reference encoder).

    The layers run with ``normalize=False`` and expect an adjacency that is already GCN-normalised
    (self-loops added, D^-1/2 (A + I) D^-1/2), as built once per view by
    :func:`bgrl_werank.augment.normalized_adjacency`. Normalising once per view instead of once per
    layer and per forward pass is the reason; the values are PyG's own ``gcn_norm``, so the result is
    the same as ``GCNConv(normalize=True)`` on the edge list (tested).

    Args:
        in_channels: input feature size.
        layer_sizes: output size of each layer, e.g. ``[512, 256]``; the last is the representation size.
        batchnorm_momentum: ``BatchNorm1d`` momentum in PyTorch's convention, the weight of the new
            batch: running ← (1 − m)·running + m·batch. Default ``0.99``, the value the BGRL reference
            passes (through PyG's ``BatchNorm``, which hands it to PyTorch unchanged), so the eval-mode
            statistics are essentially those of the last training view. Not TensorFlow's convention,
            where 0.99 would be the weight of the old statistics.
        prelu: ``"shared"`` (default): one PReLU slope per layer, as the reference's ``nn.PReLU()``;
            ``"channel"``: one slope per output channel.

    The forward pass computes each ``GCNConv`` as PyG defines it — Â·(X·Wᵀ) + b — from the layer's own
    parameters, through :func:`bgrl_werank.ops.sparse_matmul` (which reuses the transposes cached in a
    :class:`~bgrl_werank.ops.SparseOperand` for the backward pass) and applies a view's feature mask to
    the first weight's columns (see :class:`~bgrl_werank.augment.Features`). ``tests/test_fast_path.py``
    checks values and gradients against plain ``GCNConv(normalize=True)`` on edge lists.

    In training mode each layer's BatchNorm and PReLU run as one compiled kernel where one can be
    built (:func:`bgrl_werank.ops.batch_norm_prelu`; the modules keep their parameters and state).

    The first layer's weight keeps its (out, in) shape but is stored feature-major (see
    :func:`store_feature_major`): the sparse first layer reads it as the row-contiguous Wᵀ, and its
    gradients, which come out as (X̃ᵀ·G)ᵀ, then add up in place without a transposing copy.

    Shapes:
        - x: (N, in_channels), dense or sparse CSR, or a :class:`~bgrl_werank.augment.Features`
        - adj: (N, N) sparse CSR (or a :class:`~bgrl_werank.ops.SparseOperand`), the normalised
          adjacency with row = target node
        - output: (N, layer_sizes[-1])
    """

    def __init__(self, in_channels: int, layer_sizes: Sequence[int], batchnorm_momentum: float = 0.99,
                 prelu: str = "shared") -> None:
        super().__init__()
        if not layer_sizes:
            raise ValueError("FastGCNEncoder needs at least one layer size")
        sizes = [in_channels, *layer_sizes]
        self.convs = nn.ModuleList(GCNConv(i, o, normalize=False) for i, o in zip(sizes[:-1], sizes[1:]))
        store_feature_major(self.convs[0].lin)
        self.norms = nn.ModuleList(nn.BatchNorm1d(o, momentum=batchnorm_momentum) for o in sizes[1:])
        self.acts = nn.ModuleList(FastPReLU(prelu_slopes(prelu, o)) for o in sizes[1:])
        self.in_channels = in_channels
        self.layer_sizes = list(layer_sizes)

    @property
    def out_channels(self) -> int:
        return self.layer_sizes[-1]

    def forward(self, x: Tensor | Features, adj: Tensor | SparseOperand) -> Tensor:
        mask = None
        if isinstance(x, Features):
            x, mask = x.x, x.mask
        for i, (conv, norm, act) in enumerate(zip(self.convs, self.norms, self.acts)):
            # GCNConv's bias goes straight into the BatchNorm, which cancels it in training mode;
            # BatchNorm and PReLU run as one compiled kernel where it is available
            x = batch_norm_prelu(_gcn_conv(conv, x, adj, mask if i == 0 else None), conv.bias, norm, act)
        return x

    def reset_parameters(self) -> None:
        # In-place random fills follow memory order, so the feature-major first weight is drawn
        # into a row-major stand-in and copied over: the same values as an (out, in)-stored weight
        # from the same seed (the plain implementation's, and this project's earlier versions').
        lin = self.convs[0].lin
        stored = lin.weight
        lin.weight = nn.Parameter(torch.empty(stored.shape, dtype=stored.dtype, device=stored.device))
        try:
            for m in (*self.convs, *self.norms, *self.acts):
                m.reset_parameters()
            with torch.no_grad():
                stored.copy_(lin.weight)
        finally:
            lin.weight = stored


def prelu_slopes(mode: str, channels: int) -> int:
    """How many slopes a PReLU over ``channels`` has: 1 for ``"shared"``, ``channels`` for ``"channel"``."""
    if mode not in ("shared", "channel"):
        raise ValueError(f"prelu must be 'shared' or 'channel', got {mode!r}")
    return 1 if mode == "shared" else channels


def store_feature_major(lin: nn.Module) -> None:
    """Store ``lin.weight`` (out, in) as the transpose of a contiguous (in, out) tensor; same values.

    The weight of the layer that reads the features is used as Wᵀ by the sparse first layer (each
    row of X·Wᵀ sums rows of Wᵀ), and its gradient from there, Xᵀ·G, is (in, out) row-major too. In
    the default (out, in) layout each step paid for making Wᵀ once per network and for AccumulateGrad
    turning each view's gradient back into (out, in): on Coauthor CS (512 × 6805) 3.8 ms per
    transpose, 4.5 ms for the first view's gradient and 6.7 ms for adding the second's, ~19 ms a
    step. Stored this way, all of these are plain contiguous passes or nothing. The parameter is an
    ordinary (out, in) tensor to everything else (state dicts, optimizers, the EMA update keep
    their strides); the products that see it (:mod:`bgrl_werank.ops`, WERank) work in either layout.
    """
    weight = lin.weight
    if weight.dim() == 2 and not weight.t().is_contiguous():
        lin.weight = nn.Parameter(weight.detach().t().contiguous().t(), requires_grad=weight.requires_grad)


def _gcn_conv(conv: GCNConv, x: Tensor | SparseOperand, adj: Tensor | SparseOperand, mask: Tensor | None) -> Tensor:
    """``conv``'s output before its bias, Â·(X·diag(mask)·Wᵀ), computed from its parameters."""
    weight = conv.lin.weight if mask is None else conv.lin.weight * mask
    if isinstance(x, SparseOperand):
        h = sparse_linear(x, weight)
    elif x.layout == torch.sparse_csr:
        h = sparse_matmul(x, weight.t())
    else:
        h = linear(x, weight)
    return sparse_matmul(adj, h)
