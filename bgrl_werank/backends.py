"""Where a run computes and with which implementation of its encoder — chosen here, in one place.

``device``: ``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``cuda:N``.

``backend``:

* ``plain`` — stock PyTorch + PyG on any device: the encoder from :func:`bgrl_werank.encoders.build`,
  views as PyG ``Data`` (the features with masked columns — sparse CSR features stay sparse for the
  built-in encoders — and the kept edge list), the full graph as ``Data(x, edge_index)``. This is the reference every other backend is tested against.
* ``fast`` — the hand-optimised CPU path of the ``gcn`` encoder with BatchNorm + PReLU on every
  layer (BGRL's): sparse first layer, views built in O(E) with their normalised adjacency
  (:class:`bgrl_werank.augment.ViewBuilder`), closed-form gradients, oneDNN products and the
  optional compiled kernels (:mod:`bgrl_werank.encoders.fast_gcn`, :mod:`bgrl_werank.ops`). Its
  views carry the adjacency in ``edge_index`` (PyG's ``adj_t`` convention), which only its encoder
  reads; the method code above is the same. It also computes the heads' ``nn.Linear`` / ``nn.PReLU``
  with the same kernels (same parameters and state dicts: :func:`FastBackend.prepare`).
* ``auto`` — ``fast`` where it applies (CPU, ``gcn``, ``batch`` norm, ``prelu``), else ``plain``.

Both backends draw a view's random numbers from the run's CPU generator in the same order (one
uniform per edge, then one per feature column), so the same seed gives the same views on either
backend and on any device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from .augment import ViewBuilder, _check_p, normalized_adjacency


class BackendError(ValueError):
    """A device or backend that cannot run here; the one-line message says what to use instead."""


def resolve_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for a config's ``device``; a CUDA device this machine lacks is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if name != "cuda" and not name[5:].isdigit():
            raise BackendError(f"device must be auto, cpu, cuda or cuda:N with N a device index, got {name!r}")
        if not torch.cuda.is_available():
            raise BackendError(f"device={name} but this machine has no CUDA device (torch {torch.__version__}); "
                               f"use --set device=cpu or device=auto")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise BackendError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s): "
                               f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise BackendError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def fast_unavailable(model: Any, device: torch.device) -> str | None:
    """Why the fast backend cannot run this encoder on ``device`` (None when it can)."""
    if device.type != "cpu":
        return f"it runs on CPU only (device is {device})"
    if model.encoder != "gcn":
        return f"it implements the gcn encoder only (model.encoder is {model.encoder})"
    if model.norm != "batch" or model.activation != "prelu" or not model.last_activation:
        return "it implements GCN → BatchNorm → PReLU on every layer only (model.norm=batch, model.activation=prelu, model.last_activation=true)"
    return None


def resolve_backend(cfg: Any, device: torch.device | None = None) -> "Backend":
    """The backend of a run config (``cfg.backend``, ``cfg.model``) on ``device``."""
    device = resolve_device(cfg.device) if device is None else device
    why_not = fast_unavailable(cfg.model, device)
    if cfg.backend == "fast" and why_not:
        raise BackendError(f"backend=fast cannot run this run: {why_not}; use --set backend=plain or backend=auto")
    if cfg.backend == "plain" or (cfg.backend == "auto" and why_not):
        return PlainBackend(device)
    if cfg.backend in ("fast", "auto"):
        return FastBackend(device)
    raise BackendError(f"backend must be auto, fast or plain, got {cfg.backend!r}")


class Backend:
    """How a run's encoder is implemented and what its views look like."""

    name = "backend"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def build_encoder(self, model: Any, in_channels: int) -> nn.Module:
        raise NotImplementedError

    def prepare(self, method: nn.Module) -> nn.Module:
        """The method, moved to the device (and, for ``fast``, its heads on the fast kernels)."""
        return method.to(self.device)

    def view_maker(self, graph: Any) -> "ViewMaker":
        raise NotImplementedError

    def full_graph(self, graph: Any) -> Data:
        """The un-augmented graph as the encoder reads it (for the probe and diagnostics)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device})"


class ViewMaker:
    """``view(edge_drop_p, feat_mask_p, generator) -> Data``: one augmented view of one graph."""

    def view(self, edge_drop_p: float, feat_mask_p: float, generator: torch.Generator | None = None) -> Data:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ plain
def _model_kwargs(model: Any) -> dict:
    kwargs = dict(norm=model.norm, activation=model.activation, batchnorm_momentum=model.batchnorm_momentum,
                  prelu=model.prelu, last_activation=model.last_activation)
    if model.encoder == "gat":
        kwargs["heads"] = model.heads
    return kwargs


# Encoders that read sparse CSR features as they are: every built-in one starts its first layer with
# the sparse × dense product X·Wᵀ (GCN and GAT project first; SAGE and GIN are rearranged so that
# they do, bgrl_werank/encoders/sparse_input.py). Sparse bag-of-words features then cost O(nnz)
# instead of O(N·F) in the first layer: Coauthor Physics' 34 493 × 8 415 features are 0.4 %
# non-zero (1.2 GB dense). Same values and gradients as dense features (tests/test_sparse_input.py).
# A registered encoder gets dense features (it may not accept CSR).
SPARSE_INPUT_ENCODERS = frozenset({"gcn", "sage", "gat", "gin"})


class PlainBackend(Backend):
    """Stock PyTorch + PyG, any device (see the module docstring).

    Args:
        device: where to compute.
        sparse_features: keep sparse CSR features sparse (default: for :data:`SPARSE_INPUT_ENCODERS`,
            decided when the encoder is built); otherwise they are made dense.
    """

    name = "plain"

    def __init__(self, device: torch.device, sparse_features: bool | None = None) -> None:
        super().__init__(device)
        self.sparse_features = sparse_features

    def build_encoder(self, model: Any, in_channels: int) -> nn.Module:
        from . import encoders

        if self.sparse_features is None:
            self.sparse_features = model.encoder in SPARSE_INPUT_ENCODERS
        return encoders.build(model.encoder, in_channels, list(model.layer_sizes), **_model_kwargs(model)).to(self.device)

    def _features(self, x: Tensor) -> Tensor:
        keep_sparse = bool(self.sparse_features) and x.layout == torch.sparse_csr
        return (x if keep_sparse else _dense(x)).to(self.device)

    def view_maker(self, graph: Any) -> "PlainViews":
        return PlainViews(self._features(graph.x), graph.edge_index, self.device)

    def full_graph(self, graph: Any) -> Data:
        return Data(x=self._features(graph.x), edge_index=graph.edge_index.to(self.device))


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if x.layout != torch.strided else x


class PlainViews(ViewMaker):
    """Views as the BGRL and GRACE references make them: each directed edge dropped with probability
    ``edge_drop_p``, each feature column zeroed with probability ``feat_mask_p`` (one mask for all nodes).
    The random numbers come from the CPU ``generator`` (edges first), whatever the device."""

    def __init__(self, x: Tensor, edge_index: Tensor, device: torch.device) -> None:
        self.x = x.to(device)  # dense, or sparse CSR (masked through its stored values)
        self.edge_index = edge_index.to(device)
        self.device = device

    def view(self, edge_drop_p: float, feat_mask_p: float, generator: torch.Generator | None = None) -> Data:
        _check_p(edge_drop_p, "edge_drop_p")
        _check_p(feat_mask_p, "feat_mask_p")
        edge_index, x = self.edge_index, self.x
        if edge_drop_p > 0.0:
            keep = torch.rand(edge_index.size(1), generator=generator) >= edge_drop_p
            edge_index = edge_index[:, keep.to(self.device)]
        if feat_mask_p > 0.0:
            mask = (torch.rand(x.size(1), generator=generator) >= feat_mask_p).to(x.dtype).to(self.device)
            if x.layout == torch.sparse_csr:
                cols = x.col_indices()
                x = torch.sparse_csr_tensor(x.crow_indices(), cols, x.values() * mask[cols], size=x.shape)
            else:
                x = x * mask
        return Data(x=x, edge_index=edge_index)


# ------------------------------------------------------------------------------------------- fast
class FastBackend(Backend):
    """The CPU fast path of BGRL's GCN encoder (see the module docstring)."""

    name = "fast"

    def build_encoder(self, model: Any, in_channels: int) -> nn.Module:
        from .encoders.fast_gcn import FastGCNEncoder

        return FastGCNEncoder(in_channels, list(model.layer_sizes), model.batchnorm_momentum, model.prelu)

    def prepare(self, method: nn.Module) -> nn.Module:
        """Heads' ``nn.Linear`` and ``nn.PReLU`` computed by the fast kernels: the classes become
        :class:`~bgrl_werank.ops.FastLinear` / :class:`~bgrl_werank.ops.FastPReLU`, subclasses with
        the same parameters and state dicts (values tested equal to the stock modules')."""
        from .ops import FastLinear, FastPReLU

        for module in method.modules():
            if type(module) is nn.Linear:
                module.__class__ = FastLinear
            elif type(module) is nn.PReLU:
                module.__class__ = FastPReLU
        return method

    def view_maker(self, graph: Any) -> "FastViews":
        return FastViews(graph.x, graph.edge_index)

    def full_graph(self, graph: Any) -> Data:
        return Data(x=graph.x, edge_index=normalized_adjacency(graph.edge_index, graph.x.size(0)))


class FastViews(ViewMaker):
    """:class:`~bgrl_werank.augment.ViewBuilder`'s views wrapped as ``Data(x=Features, edge_index=adjacency)``."""

    def __init__(self, x: Tensor, edge_index: Tensor) -> None:
        self.builder = ViewBuilder(x, edge_index)

    def view(self, edge_drop_p: float, feat_mask_p: float, generator: torch.Generator | None = None) -> Data:
        x, adj = self.builder.view(edge_drop_p, feat_mask_p, generator)
        return _RawView(x, adj)


class _RawView:
    """A view for the fast encoder: ``x`` (:class:`~bgrl_werank.augment.Features`) and ``edge_index``
    (the normalised adjacency with its transpose). Attribute access like PyG ``Data``, without its
    per-attribute bookkeeping (which would inspect the non-tensor values on every step)."""

    __slots__ = ("x", "edge_index")

    def __init__(self, x: Any, edge_index: Any) -> None:
        self.x, self.edge_index = x, edge_index
