"""Two-view self-supervised methods, one module each, behind one contract (:class:`Method`).

    from bgrl_werank import methods, encoders
    method = methods.build("grace", encoders.build("gcn", in_channels, [256, 128]), tau=0.4)

Shipped: ``bgrl``, ``grace``, ``gbt``, ``cca_ssg``, ``vicreg``; :func:`register` adds a user's own
(it then works with ``train.py --set method.name=...``, sweeps and reports).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from torch import nn

from .base import BatchView, Method, loss_rows
from .bgrl import BGRL, MLPPredictor
from .cca_ssg import CCASSG
from .gbt import GBT
from .grace import GRACE, Projection
from .vicreg import VICReg

_REGISTRY: dict[str, Callable[..., Method]] = {"bgrl": BGRL, "grace": GRACE, "gbt": GBT, "cca_ssg": CCASSG, "vicreg": VICReg}


def names() -> list[str]:
    """The method names :func:`build` accepts (shipped first, then registered ones)."""
    return list(_REGISTRY)


def register(name: str, factory: Callable[..., Method]) -> None:
    """Make ``factory(encoder, **kwargs) -> Method`` buildable as ``name`` (also from configs)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"method name must be letters, digits and '_', got {name!r}")
    _REGISTRY[name] = factory


def build(name: str, encoder: nn.Module, **kwargs: Any) -> Method:
    """The method ``name`` around ``encoder``, with its published defaults unless ``kwargs`` say otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](encoder, **kwargs)


def from_config(cfg: Any, encoder: nn.Module) -> Method:
    """The method of a run config: ``cfg.method.name`` with the ``cfg.method.<name>`` section as arguments
    (a registered method without a section gets no arguments)."""
    name = cfg.method.name
    section = getattr(cfg.method, name, None)
    kwargs = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else {}
    return build(name, encoder, **kwargs)


__all__ = ["Method", "BatchView", "loss_rows", "BGRL", "GRACE", "GBT", "CCASSG", "VICReg", "MLPPredictor", "Projection",
           "build", "register", "names", "from_config"]
