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
    n, d = matrix.shape
    if n * d > TALL_ENTRIES and n >= 4 * d:
        # A tall matrix too large to copy to float64 (10⁷ node embeddings): σ_k = sqrt(λ_k(MᵀM)),
        # with MᵀM accumulated in float64 over row chunks. The same values in exact arithmetic; in
        # float64 the σ_k below ~1e-8 σ_1 are lost to rounding, which leaves RankMe unchanged to ~1e-7.
        eig = torch.linalg.eigvalsh(_gram(matrix.detach()))
        return eig.clamp_min(0).sqrt().flip(0)
    return torch.linalg.svdvals(matrix.detach().to(torch.float64))


# Above this many entries a tall matrix is not copied to float64 whole: singular_values and covariance
# accumulate its Gram matrix over CHUNK_ROWS-row chunks instead (2²⁴ entries: 128 MiB in float64).
TALL_ENTRIES = 1 << 24
CHUNK_ROWS = 1 << 16


def _gram(m: Tensor, shift: Tensor | None = None) -> Tensor:
    """Σ_i (m_i − shift)ᵀ(m_i − shift) in float64, over row chunks of ``m``."""
    out = torch.zeros(m.shape[1], m.shape[1], dtype=torch.float64, device=m.device)
    for a in range(0, m.shape[0], CHUNK_ROWS):
        block = m[a:a + CHUNK_ROWS].to(torch.float64)
        if shift is not None:
            block = block - shift
        out += block.T @ block
    return out


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
    z = z.detach()
    if z.numel() > TALL_ENTRIES:  # the same sums over row chunks, never a whole float64 copy
        mean = sum(z[a:a + CHUNK_ROWS].to(torch.float64).sum(0) for a in range(0, z.shape[0], CHUNK_ROWS)) / z.shape[0]
        return _gram(z, mean.unsqueeze(0)) / z.shape[0]
    zc = z.to(torch.float64)
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
    if not all_finite(t):
        raise ValueError(f"{name} contains NaN/inf")


def all_finite(t: Tensor) -> bool:
    """``torch.isfinite(t).all()`` over row chunks: whole, it makes an ``abs`` copy of ``t`` and two
    masks (430 MB of temporaries for 10⁶ × 64 float32)."""
    return all(bool(torch.isfinite(t[a:a + CHUNK_ROWS]).all()) for a in range(0, max(1, t.shape[0]), CHUNK_ROWS))
