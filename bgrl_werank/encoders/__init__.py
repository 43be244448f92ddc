"""Graph encoders by name: ``build("gcn" | "sage" | "gat" | "gin", in_channels, layer_sizes, ...)``.

Every encoder is an ``nn.Module`` with ``forward(x, edge_index) -> Tensor`` (x: dense (N, F) float,
edge_index: (2, E) long; the built-in ones also take sparse CSR ``x`` without densifying it, see
:mod:`bgrl_werank.encoders.sparse_input`), the attributes ``in_channels``, ``layer_sizes`` and ``out_channels``
(= ``layer_sizes[-1]``), and ``reset_parameters()``. The built-in ones are :class:`GNNEncoder`;
:func:`register` adds others under a name of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import nn

from .gnn import ACTIVATIONS, NORMS, GNNEncoder, named_weight_matrices

NAMES = ("gcn", "sage", "gat", "gin")

Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {name: partial(GNNEncoder, name) for name in NAMES}


def available() -> tuple[str, ...]:
    """All names :func:`build` accepts: the built-in :data:`NAMES`, then registered ones in order."""
    return tuple(_REGISTRY)


def register(name: str, factory: Factory, *, replace: bool = False) -> Factory:
    """Make ``build(name, ...)`` call ``factory(in_channels, layer_sizes, **kwargs)``.

    ``kwargs`` are everything ``build`` was given after the layer sizes: ``norm``, ``activation``,
    ``batchnorm_momentum``, ``prelu``, ``last_activation`` (always, with their defaults) and any extra keywords, so a
    factory should take ``**kwargs`` if it ignores some. Re-registering a name needs ``replace=True``.
    Returns ``factory``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an encoder name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"the factory for encoder {name!r} is not callable: {factory!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"encoder {name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = factory
    return factory


def build(name: str, in_channels: int, layer_sizes: Sequence[int], *, norm: str = "batch",
          activation: str = "prelu", batchnorm_momentum: float = 0.99, prelu: str = "shared",
          last_activation: bool = True, **conv_kwargs) -> nn.Module:
    """The encoder called ``name``; see :class:`GNNEncoder` for the options of the built-in ones.

    Raises:
        ValueError: ``name``, ``norm``, ``activation`` or ``prelu`` is not one of the choices, a
            keyword is not accepted by the convolution, or a size does not fit (one-line messages).
    """
    factory = _REGISTRY.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(_REGISTRY)}")
    return factory(in_channels, layer_sizes, norm=norm, activation=activation,
                   batchnorm_momentum=batchnorm_momentum, prelu=prelu, last_activation=last_activation,
                   **conv_kwargs)


__all__ = ["NAMES", "NORMS", "ACTIVATIONS", "GNNEncoder", "available", "build", "named_weight_matrices", "register"]
