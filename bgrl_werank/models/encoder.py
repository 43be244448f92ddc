"""The GCN encoder of BGRL: each layer is GCNConv → BatchNorm → PReLU."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch_geometric.nn import GCNConv


class GCNEncoder(nn.Module):
    """Stack of ``GCNConv → BatchNorm1d → PReLU`` layers (the BGRL reference encoder).

    The layers run with ``normalize=False`` and expect an adjacency that is already GCN-normalised
    (self-loops added, D^-1/2 (A + I) D^-1/2), as built once per view by
    :func:`bgrl_werank.augment.normalized_adjacency`. Normalising once per view instead of once per
    layer and per forward pass is the reason; the values are PyG's own ``gcn_norm``, so the result is
    the same as ``GCNConv(normalize=True)`` on the edge list (tested).

    Args:
        in_channels: input feature size.
        layer_sizes: output size of each layer, e.g. ``[512, 256]``; the last is the representation size.
        batchnorm_momentum: ``BatchNorm1d`` momentum (default ``0.01``, as the reference).

    Shapes:
        - x: (N, in_channels), dense or sparse CSR
        - adj: (N, N) sparse CSR, the transposed normalised adjacency (row = target node)
        - output: (N, layer_sizes[-1])
    """

    def __init__(self, in_channels: int, layer_sizes: Sequence[int], batchnorm_momentum: float = 0.01) -> None:
        super().__init__()
        if not layer_sizes:
            raise ValueError("GCNEncoder needs at least one layer size")
        sizes = [in_channels, *layer_sizes]
        self.convs = nn.ModuleList(GCNConv(i, o, normalize=False) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(o, momentum=batchnorm_momentum) for o in sizes[1:])
        self.acts = nn.ModuleList(nn.PReLU(o) for o in sizes[1:])
        self.in_channels = in_channels
        self.layer_sizes = list(layer_sizes)

    @property
    def out_channels(self) -> int:
        return self.layer_sizes[-1]

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = act(norm(conv(x, adj)))
        return x

    def reset_parameters(self) -> None:
        for m in (*self.convs, *self.norms, *self.acts):
            m.reset_parameters()
