"""Evaluation of frozen representations: the linear probe and rank diagnostics."""

from .rank import count_above, covariance, covariance_spectrum, rankme, singular_values

__all__ = [
    "count_above",
    "covariance",
    "covariance_spectrum",
    "rankme",
    "singular_values",
]
