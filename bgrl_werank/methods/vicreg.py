"""VICReg (Bardes et al., 2022) on node embeddings: invariance, variance hinge, covariance."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..losses import vicreg_terms
from .base import Method


class VICReg(Method):
    """VICReg: :func:`bgrl_werank.losses.vicreg_loss` of the encoder's outputs on the two views
    (no expander: the representation itself is regularised, as in the WERank paper's toy models).

    Logged terms: ``invariance``, ``variance``, ``covariance`` (unweighted).

    Args:
        encoder: the online encoder.
        sim_coeff, std_coeff, cov_coeff: the three weights (VICReg paper: 25, 25, 1).
    """

    name = "vicreg"

    def __init__(self, encoder: nn.Module, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0) -> None:
        super().__init__(encoder)
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        return vicreg_terms(*self.encode(view1, view2), sim_coeff=self.sim_coeff, std_coeff=self.std_coeff, cov_coeff=self.cov_coeff)
