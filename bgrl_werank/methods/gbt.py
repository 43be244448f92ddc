"""Graph Barlow Twins (Bielak et al., 2022): the two views' cross-correlation driven to the identity."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..losses import barlow_twins_terms
from .base import Method


class GBT(Method):
    """G-BT: :func:`bgrl_werank.losses.barlow_twins_loss` of the encoder's outputs on the two views
    (no projector, as the reference), with the off-diagonal weight ``lambd`` (None: 1/D).

    Logged terms: ``on_diagonal`` Σ(1 − C_ii)², ``off_diagonal`` Σ_{i≠j} C_ij² (unweighted).
    """

    name = "gbt"

    def __init__(self, encoder: nn.Module, lambd: float | None = None) -> None:
        super().__init__(encoder)
        self.lambd = lambd

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        return barlow_twins_terms(*self.encode(view1, view2), lambd=self.lambd)
