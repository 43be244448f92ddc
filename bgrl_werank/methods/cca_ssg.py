"""CCA-SSG (Zhang et al., 2021): invariance between views + decorrelation of each view's features."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..losses import cca_ssg_terms
from .base import Method


class CCASSG(Method):
    """CCA-SSG: :func:`bgrl_werank.losses.cca_ssg_loss` of the encoder's outputs on the two views
    (standardised per dimension inside the loss; no projector, as the reference).

    Logged terms: ``invariance`` and ``decorrelation`` (unweighted); loss = inv + λ·dec.

    Args:
        encoder: the online encoder (the reference: a 2-layer GCN, ReLU between layers, none after the last).
        lambd: decorrelation weight λ (reference, Cora: 1e-3).
    """

    name = "cca_ssg"

    def __init__(self, encoder: nn.Module, lambd: float = 1e-3) -> None:
        super().__init__(encoder)
        self.lambd = lambd

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        return cca_ssg_terms(*self.encode(view1, view2), lambd=self.lambd)
