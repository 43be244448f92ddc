"""Learning-rate schedules (per epoch; one epoch is one full-batch step)."""

from __future__ import annotations

import math


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate: linear warmup from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 (BGRL's)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (1.0 + math.cos(math.pi * progress)) / 2.0


def learning_rate(schedule: str, step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """``optim.schedule``: ``warmup_cosine`` (BGRL) or ``constant`` (GRACE, CCA-SSG, G-BT's references)."""
    if schedule == "constant":
        return base_lr
    if schedule == "warmup_cosine":
        return warmup_cosine_lr(step, total_steps, warmup_steps, base_lr)
    raise ValueError(f"unknown schedule {schedule!r}; use warmup_cosine or constant")
