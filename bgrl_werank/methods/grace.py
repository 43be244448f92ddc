"""GRACE (Zhu et al., 2020): InfoNCE between two views' projected node embeddings."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..losses import grace_loss
from .base import Method
from .bgrl import _out_channels


class Projection(nn.Module):
    """GRACE's projection head: ``Linear → ELU → Linear`` back to the representation size (the reference's)."""

    def __init__(self, channels: int, hidden_channels: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, hidden_channels), nn.ELU(), nn.Linear(hidden_channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GRACE(Method):
    """GRACE: for node i, the other view's embedding of i is the positive and every other node of both
    views a negative; loss = :func:`bgrl_werank.losses.grace_loss` of the projected embeddings.

    The loss is exact and memory-bounded (chunked; see ``grace_loss``), so it runs on Coauthor
    Physics (34 493 nodes) on a CPU; ``num_negatives`` switches to sampled negatives (an approximation).

    Args:
        encoder: the online encoder.
        tau: temperature τ (reference, Cora: 0.4).
        projection_hidden: hidden size of the projection head (reference, Cora: 128).
        chunk_size: rows per block of the chunked loss (None: automatic).
        num_negatives: None (all negatives, exact) or k sampled negatives per anchor.
    """

    name = "grace"

    def __init__(self, encoder: nn.Module, tau: float = 0.4, projection_hidden: int = 128,
                 chunk_size: int | None = None, num_negatives: int | None = None) -> None:
        super().__init__(encoder)
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.projector = Projection(_out_channels(encoder), projection_hidden)
        self.tau, self.chunk_size, self.num_negatives = tau, chunk_size, num_negatives
        self.generator: torch.Generator | None = None  # for sampled negatives; the trainer may set it

    @property
    def heads(self) -> dict[str, nn.Module]:
        return {"projector": self.projector}

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        z1, z2 = self.encode(view1, view2)
        loss = grace_loss(self.projector(z1), self.projector(z2), tau=self.tau, chunk_size=self.chunk_size, num_negatives=self.num_negatives,
                          generator=self.generator)
        return {"loss": loss}
