"""Where the model pieces used to live; kept importable. Methods are in :mod:`bgrl_werank.methods`,
encoders in :mod:`bgrl_werank.encoders`; this package keeps the BatchNorm re-estimation."""

from ..ema import cosine_momentum
from ..schedules import warmup_cosine_lr
from .batchnorm import reestimate_batchnorm

__all__ = ["cosine_momentum", "warmup_cosine_lr", "reestimate_batchnorm"]
