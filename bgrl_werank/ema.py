"""Exponential moving averages of parameters (the target networks of BGRL and of the toy EMA model)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def cosine_momentum(step: int, total_steps: int, base_momentum: float = 0.99) -> float:
    """EMA momentum at ``step``: 1 − (1 − m₀)(1 + cos(π·step/total))/2, from m₀ at step 0 to 1 at the end.

    BGRL's schedule (Thakoor et al., 2022, as the reference implementation's ``CosineDecayScheduler``
    applied to 1 − m).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    step = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base_momentum) * (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


@torch.no_grad()
def ema_update(target: Iterable[Tensor], online: Iterable[Tensor], momentum: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online, in place, pairwise over the two sequences.

    ``momentum`` is the weight of the *old* (target) value, as in BGRL and BYOL: 1 freezes the
    target, 0 copies the online weights. Buffers (e.g. BatchNorm statistics) are not averaged;
    pass parameters only.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    target, online = list(target), list(online)
    if len(target) != len(online):
        raise ValueError(f"ema_update: {len(target)} target tensors but {len(online)} online ones")
    if not target:
        return
    torch._foreach_mul_(target, momentum)
    torch._foreach_add_(target, online, alpha=1.0 - momentum)
