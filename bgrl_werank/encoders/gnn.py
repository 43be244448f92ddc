"""Graph encoders made of PyTorch Geometric's convolutions: ``conv → norm → activation`` per layer.

:class:`GNNEncoder` is the BGRL encoder block (GCNConv → BatchNorm → PReLU in every layer) with the
convolution, normalisation and activation chosen by name. It runs on an edge list, normalising in
each layer as PyG does. The project's hand-optimised GCN (``GCNEncoder``, which takes a pre-normalised
sparse adjacency instead of an edge list) has the same parameter names as ``gcn`` here, so state dicts
move between the two (tests/test_encoders.py loads one into the other and compares outputs).

Why not PyG's ``BasicGNN`` (``torch_geometric.nn.models.GCN``/``GraphSAGE``/``GAT``/``GIN``)? Read in
the installed ``torch_geometric/nn/models/basic_gnn.py`` (2.8):

- Without ``jk``, the last layer gets neither normalisation nor activation: ``forward`` applies
  ``norm``/``act`` only ``if i < self.num_layers - 1 or self.jk_mode is not None``, and
  ``self.norms[-1]`` is an ``Identity``. BGRL's representation is the output of the last
  BatchNorm → PReLU. Turning ``jk`` on to get them appends an extra ``Linear`` readout (``self.lin``).
- There is one activation module, ``self.act = activation_resolver(act)``, called after every layer,
  so ``act="prelu"`` shares a single slope across all layers (and stores it as ``act.weight``); BGRL
  learns one PReLU per layer.
- The norms are deep copies of one layer built for ``hidden_channels`` and all hidden layers have
  that one width, so per-layer sizes such as ``[512, 256, 128]`` cannot be expressed.
- Its ``norm="batch_norm"`` is PyG's ``BatchNorm`` wrapper, whose state lives under ``module.``
  (``norms.0.module.weight``), not the ``norms.0.weight`` of the checkpoints of this project.

So this module keeps PyG's convolution classes and writes the (short) layer loop itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.resolver import activation_resolver

from .sparse_input import conv_sparse_input

CONVS = ("gcn", "sage", "gat", "gin")
NORMS = ("batch", "layer", "none")
ACTIVATIONS = ("prelu", "relu", "elu")
PRELU_MODES = ("shared", "channel")

_CONV_CLASSES = {"gcn": GCNConv, "sage": SAGEConv, "gat": GATConv, "gin": GINConv}
# Keyword arguments the encoder sets itself and a caller may not override: GAT's heads are always
# concatenated (so that a layer's output width is its layer size), GIN's ``nn`` is the encoder's MLP.
_RESERVED = {"gat": ("concat",), "gin": ("nn",)}
_DEFAULTS = {
    "gcn": {"normalize": True, "cached": False},
    "sage": {"aggr": "mean"},
    "gat": {"heads": 4},
    "gin": {"train_eps": False},
}


def _choice(kind: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


class GNNEncoder(nn.Module):
    """A stack of ``conv → norm → activation`` layers, all three applied on every layer.

    Args:
        conv: ``"gcn"`` (``GCNConv``, normalising the edge list with self-loops in every pass,
            ``cached=False``), ``"sage"`` (``SAGEConv``, mean aggregation), ``"gat"`` (``GATConv``,
            ``heads`` heads (default 4) concatenated, each of width ``size // heads``) or ``"gin"``
            (``GINConv`` around ``Linear(in, out) → ReLU → Linear(out, out)``, fixed ``eps``).
        in_channels: input feature size; ``-1`` infers it at the first forward pass (the first
            layer's weight stays lazily uninitialised until then).
        layer_sizes: output size of each layer, e.g. ``[512, 256]``; the last is the representation size.
        norm: ``"batch"`` (``nn.BatchNorm1d``), ``"layer"`` (``nn.LayerNorm`` over each node's
            channels) or ``"none"`` (``nn.Identity``).
        activation: ``"prelu"``, ``"relu"`` or ``"elu"``.
        batchnorm_momentum: ``BatchNorm1d`` momentum in PyTorch's convention, the weight of the NEW
            batch: running ← (1 − m)·running + m·batch. Default ``0.99``, what the BGRL reference
            passes through PyG's ``BatchNorm`` (which hands it to PyTorch unchanged). Only used with
            ``norm="batch"``.
        prelu: ``"shared"`` (default): one slope per layer, as the reference's ``nn.PReLU()``;
            ``"channel"``: one slope per output channel. Only used with ``activation="prelu"``.
        last_activation: ``True`` (default, BGRL/GRACE): norm and activation after the last layer
            too. ``False``: the last layer's norm and activation are ``nn.Identity`` (CCA-SSG's
            encoder ends with the bare convolution); the lists keep one entry per layer.
        **conv_kwargs: passed to every layer's convolution (e.g. ``heads=8`` or ``dropout=0.1`` for
            ``gat``, ``train_eps=True`` for ``gin``, ``aggr="max"`` for ``sage``).

    Submodules are three ``ModuleList``s, ``convs``, ``norms`` and ``acts``, with one entry per layer
    (``nn.Identity`` where a layer has no norm or activation), so for ``gcn`` with batch norm and PReLU the state
    dict keys are those of :class:`bgrl_werank.encoders.fast_gcn.FastGCNEncoder`.

    Sparse features: ``x`` may be a ``torch.sparse_csr`` tensor. The first layer then starts with
    the sparse × dense product ``x·Wᵀ`` and never makes ``x`` dense (for every built-in
    convolution with its default options; SAGE and GIN with a linear aggregation): the same values
    and gradients as ``x.to_dense()`` up to summation order. How each layer is rearranged:
    :mod:`bgrl_werank.encoders.sparse_input`.

    Shapes:
        - x: (N, in_channels) float, dense or sparse CSR
        - edge_index: (2, E) long, row 0 = source, row 1 = target
        - output: (N, layer_sizes[-1])
    """

    def __init__(self, conv: str, in_channels: int, layer_sizes: Sequence[int], norm: str = "batch",
                 activation: str = "prelu", batchnorm_momentum: float = 0.99, prelu: str = "shared",
                 last_activation: bool = True, **conv_kwargs) -> None:
        super().__init__()
        conv = _choice("encoder", conv, CONVS)
        norm = _choice("norm", norm, NORMS)
        activation = _choice("activation", activation, ACTIVATIONS)
        prelu = _choice("prelu mode", prelu, PRELU_MODES)
        sizes = _check_sizes(in_channels, layer_sizes)
        if norm == "batch" and not (isinstance(batchnorm_momentum, (int, float)) and 0.0 <= batchnorm_momentum <= 1.0):
            raise ValueError(f"batchnorm_momentum must be a number in [0, 1], got {batchnorm_momentum!r}")
        if not isinstance(last_activation, bool):
            raise ValueError(f"last_activation must be True or False, got {last_activation!r}")
        kwargs = {**_DEFAULTS[conv], **_check_conv_kwargs(conv, conv_kwargs)}

        self.conv = conv
        self.in_channels = in_channels
        self.layer_sizes = list(layer_sizes)
        self.convs = nn.ModuleList(_make_conv(conv, i, o, kwargs) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(_make_norm(norm, o, batchnorm_momentum) for o in sizes[1:])
        self.acts = nn.ModuleList(_make_activation(activation, o, prelu) for o in sizes[1:])
        if not last_activation:
            self.norms[-1], self.acts[-1] = nn.Identity(), nn.Identity()
        self.last_activation = last_activation

    @property
    def out_channels(self) -> int:
        return self.layer_sizes[-1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, (conv, norm, act) in enumerate(zip(self.convs, self.norms, self.acts)):
            if i == 0 and x.layout == torch.sparse_csr:
                h = conv_sparse_input(conv, x, edge_index)  # x·Wᵀ sparse × dense, never x dense
            else:
                h = conv(x, edge_index)
            x = act(norm(h))
        return x

    def reset_parameters(self) -> None:
        for m in (*self.convs, *self.norms, *self.acts):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"conv={self.conv!r}, in_channels={self.in_channels}, layer_sizes={self.layer_sizes}"


def _check_sizes(in_channels: int, layer_sizes: Sequence[int]) -> list[int]:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or not (in_channels > 0 or in_channels == -1):
        raise ValueError(f"in_channels must be a positive int (or -1 to infer it), got {in_channels!r}")
    sizes = list(layer_sizes) if isinstance(layer_sizes, Sequence) and not isinstance(layer_sizes, str) else None
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"layer_sizes must be a non-empty list of positive ints, got {layer_sizes!r}")
    return [in_channels, *sizes]


def _accepted_kwargs(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` accepts: its own, and ``MessagePassing``'s if it forwards ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names |= _accepted_kwargs(MessagePassing)
    return names - {"self", "in_channels", "out_channels"}


def _check_conv_kwargs(conv: str, conv_kwargs: dict) -> dict:
    cls = _CONV_CLASSES[conv]
    reserved = _RESERVED.get(conv, ())
    accepted = sorted(_accepted_kwargs(cls) - set(reserved))
    for key in conv_kwargs:
        if key in reserved:
            raise ValueError(f"the {conv!r} encoder sets {cls.__name__}'s {key!r} itself; it cannot be passed")
        if key not in accepted:
            raise ValueError(f"{cls.__name__} (encoder {conv!r}) does not accept {key!r}; it accepts {', '.join(accepted)}")
    if conv == "gat":
        heads = conv_kwargs.get("heads", _DEFAULTS["gat"]["heads"])
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ValueError(f"gat heads must be a positive int, got {heads!r}")
    return dict(conv_kwargs)


def _make_conv(conv: str, in_channels: int, out_channels: int, kwargs: dict) -> MessagePassing:
    if conv == "gat":
        heads = kwargs["heads"]
        if out_channels % heads:
            raise ValueError(f"gat layer size {out_channels} is not divisible by heads={heads}")
        return GATConv(in_channels, out_channels // heads, concat=True, **kwargs)
    if conv == "gin":
        # A plain nn.Sequential rather than torch_geometric.nn.MLP: MLP puts a BatchNorm (its default
        # norm="batch_norm") and an activation between its linears, stored under lins.*/norms.*.module.*,
        # while this layer's own norm and activation already follow the convolution. The Sequential is
        # exactly Linear → ReLU → Linear, with the plain keys nn.0.* and nn.2.*.
        first = nn.LazyLinear(out_channels) if in_channels == -1 else nn.Linear(in_channels, out_channels)
        return GINConv(nn.Sequential(first, nn.ReLU(), nn.Linear(out_channels, out_channels)), **kwargs)
    return _CONV_CLASSES[conv](in_channels, out_channels, **kwargs)


def _make_norm(norm: str, channels: int, momentum: float) -> nn.Module:
    # PyG's normalization_resolver does not fit: "batchnorm" gives its BatchNorm wrapper (state under
    # ``module.``) and "layernorm" its LayerNorm, which by default (mode="graph") normalises over all
    # nodes and channels together rather than over each node's channels.
    if norm == "batch":
        return nn.BatchNorm1d(channels, momentum=momentum)
    if norm == "layer":
        return nn.LayerNorm(channels)
    return nn.Identity()


def _make_activation(activation: str, channels: int, prelu: str) -> nn.Module:
    # activation_resolver returns the stock torch modules (nn.PReLU, nn.ReLU, nn.ELU).
    if activation == "prelu":
        return activation_resolver("prelu", num_parameters=1 if prelu == "shared" else channels)
    return activation_resolver(activation)


def named_weight_matrices(module: nn.Module) -> list[tuple[str, Tensor]]:
    """The 2-D weight matrices of a module's linear maps with their dotted parameter names.

    The ``weight`` of every ``nn.Linear`` and every PyG ``torch_geometric.nn.dense.linear.Linear``, in
    the order :meth:`nn.Module.named_modules` visits them (registration order): the same tensors, in
    the same order, as :func:`bgrl_werank.losses.encoder_weights`. Attention vectors (GAT's
    ``att_src``/``att_dst``), biases, norm and PReLU parameters are not included.

    Raises:
        ValueError: a linear map is still lazily uninitialised (run a forward pass first).
    """
    from torch_geometric.nn.dense.linear import Linear as PygLinear

    out = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, PygLinear)):
            pname = f"{name}.weight" if name else "weight"
            if isinstance(m.weight, nn.parameter.UninitializedParameter):
                raise ValueError(f"named_weight_matrices: {pname} is still lazily uninitialised; run a forward pass first")
            out.append((pname, m.weight))
    return out
