"""Encoder (GCN), predictor (MLP) and the BGRL wrapper (online/target networks, EMA)."""

from .batchnorm import reestimate_batchnorm
from .bgrl import BGRL, build_bgrl, cosine_momentum, warmup_cosine_lr
from .encoder import GCNEncoder
from .predictor import MLPPredictor

__all__ = ["BGRL", "build_bgrl", "GCNEncoder", "MLPPredictor", "cosine_momentum", "warmup_cosine_lr", "reestimate_batchnorm"]
