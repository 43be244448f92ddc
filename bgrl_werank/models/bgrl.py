"""BGRL: an online encoder + predictor learning from an EMA target encoder."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from .encoder import GCNEncoder
from .predictor import MLPPredictor


def cosine_momentum(step: int, total_steps: int, base_momentum: float = 0.99) -> float:
    """EMA momentum at ``step``: 1 − (1 − m₀)(1 + cos(π·step/total))/2, from m₀ at step 0 to 1 at the end."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    step = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base_momentum) * (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate: linear warmup from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to 0."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (1.0 + math.cos(math.pi * progress)) / 2.0


class BGRL(nn.Module):
    """Online encoder and predictor, with a target encoder updated by EMA (never by gradients).

    Built by injection: ``BGRL(encoder, predictor)``. The target is a deep copy of the encoder,
    re-initialised (``target_init="reinit"``, as the reference BGRL) or kept equal to the online
    weights (``"copy"``); its parameters have ``requires_grad=False`` and are not returned by
    :meth:`trainable_parameters`.

    Args:
        encoder: the online encoder, e.g. :class:`GCNEncoder`.
        predictor: the predictor, e.g. :class:`MLPPredictor`.
        target_init: ``"reinit"`` (default) or ``"copy"``.
    """

    def __init__(self, encoder: nn.Module, predictor: nn.Module, target_init: str = "reinit") -> None:
        super().__init__()
        if target_init not in ("reinit", "copy"):
            raise ValueError(f"target_init must be 'reinit' or 'copy', got {target_init!r}")
        self.online_encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder)
        if target_init == "reinit":
            self.target_encoder.reset_parameters()
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates: the online encoder's and the predictor's."""
        return [*self.online_encoder.parameters(), *self.predictor.parameters()]

    @torch.no_grad()
    def update_target_network(self, momentum: float) -> None:
        """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter (buffers are not copied)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        online = list(self.online_encoder.parameters())
        target = list(self.target_encoder.parameters())
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)

    def forward(self, x1: Tensor, adj1: Tensor, x2: Tensor, adj2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Predictions of both views by the online network and target representations of both views.

        Returns:
            ``(q1, q2, y1, y2)``: online predictions of views 1 and 2, and target representations of
            views 1 and 2 (computed without gradients).
        """
        q1 = self.predictor(self.online_encoder(x1, adj1))
        q2 = self.predictor(self.online_encoder(x2, adj2))
        with torch.no_grad():
            y1 = self.target_encoder(x1, adj1)
            y2 = self.target_encoder(x2, adj2)
        return q1, q2, y1, y2


def build_bgrl(
    in_channels: int,
    layer_sizes: list[int],
    predictor_hidden: int = 512,
    batchnorm_momentum: float = 0.99,
    target_init: str = "reinit",
    prelu: str = "shared",
) -> BGRL:
    """A BGRL model from plain arguments (never the whole config); see :class:`GCNEncoder` for the
    BatchNorm momentum's convention (PyTorch's: the weight of the new batch) and ``prelu``."""
    encoder = GCNEncoder(in_channels, layer_sizes, batchnorm_momentum, prelu)
    predictor = MLPPredictor(encoder.out_channels, predictor_hidden)
    return BGRL(encoder, predictor, target_init)
