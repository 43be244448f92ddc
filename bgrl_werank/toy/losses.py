"""The two SSL objectives of the controlled experiments that the graph pipeline does not have.

The EMA (BYOL-like) model reuses :func:`bgrl_werank.losses.bgrl_loss`; WERank is
:func:`bgrl_werank.losses.werank_penalty`. Both are shared with the graph pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _off_diagonal(m: Tensor) -> Tensor:
    return m - torch.diag(torch.diagonal(m))


def vicreg_loss(z1: Tensor, z2: Tensor, invariance: float = 10.0, variance: float = 10.0,
                covariance: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, dict[str, float]]:
    """VICReg (Bardes et al., 2022) on two batches of embeddings.

    .. math::

        \\mathcal{L} = \\lambda_{inv} \\frac{1}{Nd}\\lVert Z_1 - Z_2\\rVert_F^2
          + \\lambda_{var} \\tfrac12 \\sum_{b=1}^{2} \\frac1d \\sum_j \\max(0, 1 - \\sqrt{\\mathrm{Var}(Z_b)_j + \\epsilon})
          + \\lambda_{cov} \\sum_{b=1}^{2} \\frac1d \\sum_{i \\ne j} C(Z_b)_{ij}^2

    with Var and C the unbiased (N − 1) per-dimension variance and covariance, as in the reference
    implementation.

    Args:
        z1, z2: embeddings of the two views.
        invariance, variance, covariance: the three coefficients (the paper: 10, 10, 1).
        eps: added to the variance under the square root.

    Returns:
        ``(loss, stats)`` with the three unweighted terms in ``stats``.

    Shapes:
        - z1, z2: (N, d)
        - loss: ()
    """
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    var_terms = []
    cov_terms = []
    for z in (z1, z2):
        zc = z - z.mean(dim=0)
        std = torch.sqrt(zc.var(dim=0) + eps)
        var_terms.append(F.relu(1.0 - std).mean())
        c = zc.T @ zc / (n - 1)
        cov_terms.append(_off_diagonal(c).pow(2).sum() / d)
    var = (var_terms[0] + var_terms[1]) / 2
    cov = cov_terms[0] + cov_terms[1]
    loss = invariance * inv + variance * var + covariance * cov
    return loss, {"invariance": float(inv.detach()), "variance": float(var.detach()), "covariance": float(cov.detach())}


def info_nce_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Symmetric InfoNCE / NT-Xent (SimCLR) over the 2N embeddings of a batch.

    Each of the 2N embeddings is L2-normalised; its positive is the other view of the same sample
    and its negatives are the remaining 2N − 2 embeddings:

    .. math::

        \\ell_i = -\\log \\frac{\\exp(s_{i,p(i)}/\\tau)}{\\sum_{j \\ne i} \\exp(s_{ij}/\\tau)},
        \\qquad \\mathcal{L} = \\frac{1}{2N} \\sum_{i=1}^{2N} \\ell_i

    Args:
        z1, z2: embeddings of the two views (row i of each is the same sample).
        temperature: τ > 0.

    Returns:
        A scalar tensor.

    Shapes:
        - z1, z2: (N, d)
        - output: ()
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)
