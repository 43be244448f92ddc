"""Rank diagnostics: singular values, covariance spectra, RankMe, thresholded rank counts."""

from __future__ import annotations

import torch
from torch import Tensor


def singular_values(matrix: Tensor) -> Tensor:
    """Singular values of a 2-D matrix, descending, computed in float64.

    Shapes:
        - matrix: (m, n)
        - output: (min(m, n),)
    """
    if matrix.dim() != 2:
        raise ValueError(f"singular_values needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    return torch.linalg.svdvals(matrix.detach().to(torch.float64))


def covariance(z: Tensor) -> Tensor:
    """C = (1/N) Σ_i (z_i − z̄)(z_i − z̄)ᵀ of the rows of ``z`` (N, d), in float64."""
    if z.dim() != 2 or z.size(0) < 1:
        raise ValueError(f"covariance needs an (N, d) matrix with N >= 1, got shape {tuple(z.shape)}")
    z = z.detach().to(torch.float64)
    zc = z - z.mean(0, keepdim=True)
    return zc.T @ zc / z.size(0)


def covariance_spectrum(z: Tensor) -> Tensor:
    """Singular values (= eigenvalues, C being PSD) of :func:`covariance`, descending. Shape (d,)."""
    return torch.linalg.svdvals(covariance(z))


def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., 2023) of an embedding matrix ``z`` (N, d).

    With σ the singular values of ``z``: p_k = σ_k / Σ_j σ_j + ε and RankMe = exp(−Σ_k p_k log p_k).
    It lies in (0, min(N, d)] (up to ε) and equals r for r equal non-zero singular values.
    """
    s = singular_values(z)
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def count_above(values: Tensor, rel_threshold: float) -> int:
    """How many ``values`` exceed ``rel_threshold`` × max(values)."""
    if values.numel() == 0:
        return 0
    return int((values > rel_threshold * values.max()).sum())
