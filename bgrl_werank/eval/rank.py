"""Rank diagnostics of embeddings: singular values, covariance spectrum, RankMe.

Dimensional collapse shows as a spectrum whose tail falls to zero; these functions measure it.
All computations run in float64 and return float64 tensors (or Python numbers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def singular_values(matrix: Tensor) -> Tensor:
    """Singular values of a matrix, in descending order.

    Args:
        matrix: any real matrix.

    Returns:
        The min(N, d) singular values σ_1 ≥ σ_2 ≥ … ≥ 0, float64.

    Shapes:
        - matrix: (N, d) -> (min(N, d),)
    """
    _check_matrix(matrix, "matrix")
    return torch.linalg.svdvals(matrix.detach().to(torch.float64))


def covariance(z: Tensor) -> Tensor:
    """Population covariance of the rows of ``z``: (1/N) Σ_i (z_i − z̄)(z_i − z̄)ᵀ.

    Args:
        z: N embeddings of dimension d, one per row.

    Returns:
        The (d, d) covariance matrix, float64 (1/N, not 1/(N − 1)).

    Shapes:
        - z: (N, d) -> (d, d)
    """
    _check_matrix(z, "z")
    zc = z.detach().to(torch.float64)
    zc = zc - zc.mean(0, keepdim=True)
    return zc.T @ zc / z.shape[0]


def covariance_spectrum(z: Tensor) -> Tensor:
    """Singular values of :func:`covariance` (its eigenvalues, being PSD), in descending order.

    Shapes:
        - z: (N, d) -> (d,)
    """
    return singular_values(covariance(z))


def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., 2023): the exponential of the entropy of the normalised spectrum.

    With σ the singular values of ``z`` itself (not centred),

    .. math::

        p_k = \\frac{\\sigma_k}{\\sum_j \\sigma_j} + \\varepsilon, \\qquad
        \\mathrm{RankMe}(z) = \\exp\\Big(-\\sum_k p_k \\log p_k\\Big).

    It lies in [1, min(N, d)] up to ε terms: ≈ r for r equal non-zero singular values, ≈ min(N, d)
    for an isotropic sample. An all-zero ``z`` has no spectrum to normalise; it returns 0.0.

    Args:
        z: N embeddings of dimension d, one per row.
        eps: the ε of the formula (default 1e-7, the paper's value).

    Returns:
        RankMe as a Python float.

    Shapes:
        - z: (N, d)

    Examples:
        >>> round(rankme(torch.eye(4)), 4)
        4.0
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    sigma = singular_values(z)
    total = sigma.sum()
    if total == 0:
        return 0.0
    p = sigma / total + eps
    return math.exp(float(-(p * p.log()).sum()))


def count_above(values: Tensor, rel_threshold: float) -> int:
    """Number of entries strictly greater than ``rel_threshold · max(values)``.

    Typical use: ``count_above(singular_values(z), 1e-3)``, a thresholded numerical rank.

    Args:
        values: a non-empty 1-D tensor (e.g. a spectrum).
        rel_threshold: the threshold as a fraction of the largest value.

    Shapes:
        - values: (n,)
    """
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"values must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    v = values.detach().to(torch.float64)
    return int((v > rel_threshold * v.max()).sum())


def _check_matrix(t: Tensor, name: str) -> None:
    if t.dim() != 2 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor (N, d), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN/inf")
