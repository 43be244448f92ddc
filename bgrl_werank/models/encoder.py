"""Moved: the fast GCN encoder is :mod:`bgrl_werank.encoders.fast_gcn` (kept importable here)."""

from ..encoders.fast_gcn import FastGCNEncoder as GCNEncoder, prelu_slopes, store_feature_major

__all__ = ["GCNEncoder", "prelu_slopes", "store_feature_major"]
