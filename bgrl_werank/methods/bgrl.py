"""BGRL (Thakoor et al., 2022): predict an EMA target encoder's representation of the other view."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..ema import cosine_momentum, ema_update
from ..losses import bgrl_loss_term
from .base import Method


class MLPPredictor(nn.Module):
    """BGRL's predictor: ``Linear → PReLU(one slope) → Linear`` back to the input size (the reference's)."""

    def __init__(self, in_channels: int, hidden_channels: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.PReLU(1), nn.Linear(hidden_channels, in_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def reset_parameters(self) -> None:
        for m in self.net:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


class BGRL(Method):
    """Online encoder + predictor regress the target encoder's representation of the other view.

    loss = (1 − cos(q₁, sg(y₂))) + (1 − cos(q₂, sg(y₁))), cosines averaged over nodes
    (:func:`bgrl_werank.losses.bgrl_loss`), q = predictor(online(view)), y = target(view). After each
    optimizer step the target follows the online encoder by EMA, θ_t ← m·θ_t + (1 − m)·θ_o, with m
    on BGRL's cosine schedule from ``momentum`` to 1 (:func:`bgrl_werank.ema.cosine_momentum`); m is
    the weight of the old target (BGRL's and BYOL's convention). The target is a copy of the encoder,
    re-initialised (``target_init="reinit"``, as the reference) or equal to it (``"copy"``); its
    parameters never require grad, its BatchNorm statistics are its own.

    Args:
        encoder: the online encoder.
        predictor: the predictor; default :class:`MLPPredictor` with ``predictor_hidden`` units.
        predictor_hidden: hidden size of the default predictor (reference: 512).
        momentum: initial EMA momentum m₀ (reference: 0.99).
        target_init: ``"reinit"`` (default) or ``"copy"``.
    """

    name = "bgrl"

    def __init__(self, encoder: nn.Module, predictor: nn.Module | None = None, predictor_hidden: int = 512,
                 momentum: float = 0.99, target_init: str = "reinit") -> None:
        super().__init__(encoder)
        if target_init not in ("reinit", "copy"):
            raise ValueError(f"target_init must be 'reinit' or 'copy', got {target_init!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.predictor = predictor if predictor is not None else MLPPredictor(_out_channels(encoder), predictor_hidden)
        self.target_encoder = copy.deepcopy(encoder)
        if target_init == "reinit":
            self.target_encoder.reset_parameters()
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)
        self.base_momentum = momentum

    @property
    def online_encoder(self) -> nn.Module:
        return self.encoder

    @property
    def heads(self) -> dict[str, nn.Module]:
        return {"predictor": self.predictor}

    def frozen_modules(self) -> list[nn.Module]:
        return [self.target_encoder]

    def _targets(self, view1: Any, view2: Any) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self.represent(view1, self.target_encoder), self.represent(view2, self.target_encoder)

    def _term(self, view: Any, target: Tensor) -> Tensor:
        """1 − cos(predictor(online(view)), sg(target)), averaged over nodes."""
        return bgrl_loss_term(self.predictor(self.represent(view)), target)

    def loss(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        y1, y2 = self._targets(view1, view2)
        t1, t2 = self._term(view1, y2), self._term(view2, y1)
        return {"loss": t1 + t2, "view1": t1, "view2": t2}

    def backward(self, view1: Any, view2: Any) -> dict[str, Tensor]:
        """Same gradients as ``loss(...)["loss"].backward()``, with half the peak memory: each view's
        term is back-propagated as soon as it is formed, so its online activations are freed before
        the next view's are made. A non-finite term is returned without being back-propagated."""
        y1, y2 = self._targets(view1, view2)
        terms = {}
        for key, view, y in (("view1", view1, y2), ("view2", view2, y1)):
            term = self._term(view, y)
            if not torch.isfinite(term):
                return {"loss": term.detach(), key: term.detach()}
            term.backward()
            terms[key] = term.detach()
        return {"loss": terms["view1"] + terms["view2"], **terms}

    def momentum_at(self, step: int, total_steps: int) -> float:
        return cosine_momentum(step, total_steps, self.base_momentum)

    @torch.no_grad()
    def update_target_network(self, momentum: float) -> None:
        """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter (buffers are not copied)."""
        ema_update(self.target_encoder.parameters(), self.encoder.parameters(), momentum)

    def step_end(self, step: int, total_steps: int) -> dict[str, float]:
        momentum = self.momentum_at(step, total_steps)
        self.update_target_network(momentum)
        return {"momentum": momentum}


def _out_channels(encoder: nn.Module) -> int:
    out = getattr(encoder, "out_channels", None)
    if not isinstance(out, int):
        raise ValueError("the encoder has no integer `out_channels`; give the method its size, e.g. BGRL(enc, predictor=...)")
    return out
