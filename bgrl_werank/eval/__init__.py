"""Evaluation of frozen representations: the linear probe and rank diagnostics."""

from .probe import DEFAULT_C_GRID, ProbeResult, fit_logistic_regression, linear_probe
from .rank import count_above, covariance, covariance_spectrum, rankme, singular_values

__all__ = [
    "DEFAULT_C_GRID",
    "ProbeResult",
    "fit_logistic_regression",
    "linear_probe",
    "count_above",
    "covariance",
    "covariance_spectrum",
    "rankme",
    "singular_values",
]
